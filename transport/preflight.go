package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ArtifactChecker can tell, before anything is stopped, whether a node can
// get the consul binary of a version: the pre-flight check a run makes for
// every node and every version it will swap the node to (and, when it may
// roll back, the version the node runs now). CheckArtifact touches nothing:
// it does not stop, install or start anything.
//
// It returns nil when the binary was verified (present and answering
// `version` with that version, or a mirror entry that the host reaches,
// as the transport's doc says), an *ArtifactError (wrapping ErrArtifact)
// when the check found that the node cannot get it, an error wrapping
// ErrNotChecked when the transport has no way to tell (the caller reports
// the node as not verified, not as fine), and an error wrapping
// ErrUnknownNode or ErrInvalidRequest for a node or version it refuses, as
// Swap would, and an error wrapping ErrUnreachable when the node's host
// cannot be reached (its address and the reason in the message). Any other
// error (ctx ended) means the check could not be made.
type ArtifactChecker interface {
	CheckArtifact(ctx context.Context, node string, role Role, version string) error
}

// RollbackChecker is a Rollbacker that can say up front, without IO,
// whether it is able to roll back at all (a transport that needs a
// rollback command it was not given is not). upgrade.Config.Validate calls
// it when a run asks for rollbacks.
type RollbackChecker interface {
	// CanRollback returns nil, or why Rollback would fail whatever the
	// node, naming the setting that is missing.
	CanRollback() error
}

// ErrNotChecked is wrapped by CheckArtifact's error when the transport
// cannot verify the binary (it was given no way to look).
var ErrNotChecked = errors.New("artifact not checked")

// ArtifactError reports a node that cannot get the binary of a version, as
// found by CheckArtifact. It wraps ErrArtifact (and Err when set).
type ArtifactError struct {
	Node    string
	Version string
	// Checked says what was looked at, e.g. "binary
	// /srv/consul/consul-1.13.9 (present, executable, answering `version`
	// with 1.13.9)".
	Checked string
	// Problem says what was found, e.g. "does not exist".
	Problem string
	// Fix says what to do, e.g. "build it with scripts/build-consul.sh
	// 1.13.9".
	Fix string
	// Err is the underlying error, if any.
	Err error
}

func (e *ArtifactError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s cannot get consul %s: checked %s: %s", e.Node, e.Version, e.Checked, e.Problem)
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Unwrap returns ErrArtifact and Err.
func (e *ArtifactError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrArtifact, e.Err}
	}
	return []error{ErrArtifact}
}

// ValidateCheck checks the arguments of CheckArtifact as Swap checks a
// request: a valid node name, role server or client ("" allowed: the
// transport knows the node's role) and a canonical version. Its error
// wraps ErrInvalidRequest.
func ValidateCheck(node string, role Role, version string) error {
	if err := ValidateNode(node); err != nil {
		return err
	}
	if role != "" && role != RoleServer && role != RoleClient {
		return fmt.Errorf("%w: role %q is not %q or %q", ErrInvalidRequest, role, RoleServer, RoleClient)
	}
	return ValidateVersion(version)
}
