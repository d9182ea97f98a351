package ssh

import (
	"errors"
	"fmt"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// PhaseConnect is the phase of a *transport.SwapError raised while
// connecting to a host (dial, handshake, host key, authentication), before
// anything on the host is touched.
const PhaseConnect transport.Phase = "connect"

// UnreachableError reports a host the transport could not reach: no TCP
// connection, no SSH handshake, a host key known_hosts does not trust, or a
// refused login. Nothing was run on the host. It wraps
// transport.ErrUnreachable and the cause (a *HostKeyError for a key, a
// net.Error for a connection, ...). A pre-flight check (CheckArtifact)
// returns it before anything is stopped.
type UnreachableError struct {
	Node string
	Addr string // the address dialled, host:port
	User string
	// Stage is where it failed: "connect" (TCP), "handshake" (the SSH
	// protocol, before the host key), "host key" or "login" (the host
	// key was trusted; authentication failed or the host hung up).
	Stage string
	Err   error
}

func (e *UnreachableError) Error() string {
	var fix string
	switch e.Stage {
	case "connect":
		fix = "check that sshd listens there and that the address is the host's (the catalog's address, or Addr/Port in the inventory)"
	case "handshake":
		fix = "check that an SSH server answers on that port (DialTimeout bounds the handshake)"
	case "host key":
		fix = "" // the *HostKeyError says what to do
	case "login":
		fix = fmt.Sprintf("check that %s's authorized_keys on the host lists the key given (KeyFile, WithKeyFile or the agent's keys)", e.User)
	}
	s := fmt.Sprintf("node %s: host %s cannot be reached as %s (%s): %v", e.Node, e.Addr, e.User, e.Stage, e.Err)
	if fix != "" {
		s += "; " + fix
	}
	return s
}

// Unwrap returns transport.ErrUnreachable and the cause.
func (e *UnreachableError) Unwrap() []error { return []error{transport.ErrUnreachable, e.Err} }

// ErrHostKey is wrapped by every *HostKeyError.
var ErrHostKey = errors.New("host key not trusted")

// HostKeyError reports a host whose key is not in known_hosts (Known is
// empty) or differs from the key known_hosts lists for it. Nothing was sent
// to the host: authentication happens after the host key check.
type HostKeyError struct {
	Host        string   // the address dialled, host:port
	KeyType     string   // e.g. ssh-ed25519
	Fingerprint string   // SHA256 fingerprint of the presented key
	Known       []string // fingerprints known_hosts lists for Host ("" entries omitted)
	Revoked     bool     // the presented key is marked @revoked
	Files       []string // the known_hosts files consulted
}

func (e *HostKeyError) Error() string {
	files := strings.Join(e.Files, ", ")
	switch {
	case e.Revoked:
		return fmt.Sprintf("host %s presented %s key %s, which known_hosts (%s) marks @revoked; the host must get a new key", e.Host, e.KeyType, e.Fingerprint, files)
	case len(e.Known) == 0:
		return fmt.Sprintf("host %s presented %s key %s, which is not in known_hosts (%s); check the fingerprint out of band (ssh-keygen -lf on the host) and add the key (ssh-keyscan), or pass InsecureIgnoreHostKey for a throwaway host", e.Host, e.KeyType, e.Fingerprint, files)
	default:
		return fmt.Sprintf("host %s presented %s key %s, but known_hosts (%s) lists %s for it; the host key changed or someone is in the middle: verify the new key out of band before replacing the entry", e.Host, e.KeyType, e.Fingerprint, files, strings.Join(e.Known, ", "))
	}
}

// Unwrap returns ErrHostKey.
func (e *HostKeyError) Unwrap() error { return ErrHostKey }

// ChecksumError reports a staged binary whose SHA-256 on the remote host is
// not the expected one. The staged file was removed; nothing was installed
// and the agent was not stopped. It wraps transport.ErrArtifact.
type ChecksumError struct {
	Node    string
	Version string
	Want    string // hex
	Got     string // hex, as sha256sum computed it on the host
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("node %s: consul %s staged with sha256 %s, want %s; nothing installed, the agent keeps running; check the artifact source (a truncated download or a wrong checksum)", e.Node, e.Version, e.Got, e.Want)
}

// Unwrap returns transport.ErrArtifact.
func (e *ChecksumError) Unwrap() error { return transport.ErrArtifact }

// CommandError reports a remote command that failed, timed out or was cut
// by the end of the context. Err is the cause: an exit status, or
// context.DeadlineExceeded / context.Canceled (errors.Is works).
type CommandError struct {
	Node    string
	Step    string // what the command was for: stop, start, check, version, stage...
	Command string // the quoted command line run on the host
	Exit    int    // exit status, -1 when there is none
	Output  string // the command's stderr and stdout, bounded
	Err     error
}

func (e *CommandError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: %s command %s", e.Node, e.Step, e.Command)
	if e.Exit >= 0 {
		fmt.Fprintf(&b, " exited %d", e.Exit)
	} else {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if out := strings.TrimSpace(e.Output); out != "" {
		fmt.Fprintf(&b, ": %s", out)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *CommandError) Unwrap() error { return e.Err }
