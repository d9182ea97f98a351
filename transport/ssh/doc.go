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
package ssh
