// Package ssh is a transport.Transport that swaps Consul agents on remote
// hosts over SSH (golang.org/x/crypto/ssh).
//
// For each swap it connects to the node's host, authenticating with a key
// (WithKeyFile, WithKey, WithSigner) or the user's SSH agent (WithAgent),
// and verifying the host key against known_hosts (the user's
// ~/.ssh/known_hosts unless WithKnownHosts names others; an unknown or
// changed key fails with a *HostKeyError naming the host and the
// fingerprint). Only InsecureIgnoreHostKey turns verification off.
//
// A swap, in order:
//
//  1. validate the request (transport.ValidateRequest) and find the host —
//     before any connection;
//  2. if the agent already runs the target version, return (idempotent);
//  3. stage the binary: stream it (from req.Artifact, a local file, or the
//     Resolver) into a temporary file next to Host.BinaryPath, check its
//     SHA-256 on the remote side, check that it reports the target version,
//     make it executable, keep the current binary as <BinaryPath>.prev (a
//     hard link) and rename the new one over BinaryPath. The running agent
//     keeps its old inode. A wrong checksum installs nothing and stops
//     nothing (*ChecksumError, wrapping transport.ErrArtifact).
//     With WithFetch the host downloads the binary itself from the mirror
//     (transport.FetchScript: curl or wget, then sha256sum) into that
//     temporary file instead, so the orchestrator sends a few kilobytes of
//     commands per swap rather than the binary; a mismatch, a failed
//     download or a host with neither curl nor wget is a
//     *transport.FetchError and, again, installs and stops nothing;
//  4. stop the agent with Host.StopCmd (default: systemctl kill -s SIGKILL
//     consul for stop mode kill, SIGTERM for terminate, SIGINT for leave)
//     and wait until Host.CheckCmd says it is down;
//  5. start it with Host.StartCmd (default: systemctl start consul), or let
//     the supervisor restart it (Host.SupervisorRestarts), wait until
//     CheckCmd says it runs, and check that Host.VersionCmd (default:
//     <BinaryPath> version) reports the target version.
//
// Every remote command is an argv template (text/template over Vars) whose
// elements are quoted with Quote after rendering: no value is ever
// interpolated into a shell command unquoted. Each runs under a remote
// `timeout -s KILL` and a local deadline (Host.CommandTimeout), so a hung
// command is cut on both sides. The remote login shell must be a POSIX
// shell, and the host needs coreutils (or busybox): timeout, mktemp, dd,
// sha256sum, chmod, ln, mv, rm, test (and curl or wget for WithFetch).
//
// # Fleets
//
// A Fleet gives the hosts of a whole cluster by rule instead of host by
// host: Defaults for every node (user, port, binary path, service manager,
// key file, timeouts), Groups that override them for the nodes their Match
// selects (role, datacenter, node meta), and Nodes entries for single
// nodes. A node's own entry wins over the groups, a later group over an
// earlier one, the groups over the defaults; the address is the catalog's
// unless a rule sets Addr. Resolve takes the nodes the catalog lists (Node:
// name, address, role, datacenter, node meta) and returns the hosts New
// takes, or a *FleetError listing every problem at once (the node, the
// rule, the field, the fix); Validate checks the rules alone, before the
// catalog is read. The CLI's ssh inventory takes a "fleet" instead of
// "hosts" and lists the nodes from the serf members and the catalog.
//
// A host that cannot be reached (no connection, no SSH handshake, an
// untrusted host key, a refused login) is an *UnreachableError naming the
// node, the address dialled and the stage, wrapping
// transport.ErrUnreachable; CheckArtifact returns it, so upgrade's
// pre-flight names every such host and refuses the run before the first
// stop.
//
// With Service ServiceSystemd the agent is the systemd unit Host.Unit: the
// stop signals the unit's main process (systemctl kill --kill-who=main) and
// waits until it is gone; the start is systemctl start, then ActiveState
// active (and, unless the unit is Type=notify, one main PID for
// UnitSettle). A unit that ends failed, or is not active within
// StartTimeout, is a *UnitError with its state and the tail of journalctl
// -u, wrapping transport.ErrNotRunning.
package ssh
