// Package transport is the node-swap contract: how a planned step becomes a
// changed node. It is one small interface, grown by optional interfaces for
// abilities that not every transport has; callers probe for those by type
// assertion.
//
// The contract every Transport keeps (transporttest.Run checks it):
//
//   - Swap is idempotent: swapping a node that already runs req.To on a
//     healthy agent succeeds without stopping it again. Versions are
//     compared with planner.SameVersion, which ignores build metadata:
//     an agent reporting 1.10.12+ent runs 1.10.12.
//   - Swap honours ctx: when ctx ends it stops waiting and returns an error
//     that wraps ctx.Err().
//   - Swap returns typed errors: *SwapError naming the node and the phase
//     (validate, stage, stop, start, verify), wrapping a sentinel where one
//     fits (ErrUnknownNode, ErrInvalidRequest, ErrArtifact). A request it
//     refuses (bad node name, bad version) touches nothing.
//   - Swap returns once the agent process on the new version has been
//     started; it does not wait for cluster health (that is the caller's
//     gate).
//   - Swap tells req.Progress (when set) what it did to the node as it
//     does it: PhaseStop once the old agent no longer runs, then
//     PhaseStart once the agent on req.To has been started; nothing for a
//     swap that stops nothing (refused, or the node already on req.To).
//     A caller learns from it how far a failed swap got, with the
//     SwapError's Phase.
//
// The package imports only the standard library and planner, which is pure
// (no IO): for the one type they share, StopMode, and for the one version
// parser of the module (ValidateVersion, planner.SameVersion).
package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// Role is a node's role in the cluster.
type Role string

const (
	RoleServer Role = "server"
	RoleClient Role = "client"
)

// StopMode is how the old agent is stopped: the planner's type itself, so
// a planned step's StopMode goes into a SwapRequest as it is. A request
// must name a mode (ValidateRequest refuses planner.StopDefault, ""): the
// planner resolves the default per role and version before the swap.
type StopMode = planner.StopMode

// The stop modes a SwapRequest may carry (planner.StopKill and so on).
const (
	StopKill      = planner.StopKill      // SIGKILL: the agent does not leave
	StopTerminate = planner.StopTerminate // SIGTERM: servers >= 0.7 do not leave
	StopLeave     = planner.StopLeave     // graceful leave, then stop
)

// SwapRequest asks for one node to be moved to another Consul version.
type SwapRequest struct {
	Node     string
	Role     Role
	From     string // the version expected to run now ("" if unknown)
	To       string // the version to run after the swap
	StopMode StopMode
	// Artifact optionally names the binary for To (a path or URL the
	// transport understands); "" lets the transport resolve it.
	Artifact string
	// Progress, if not nil, is told what the swap does to the node, as it
	// does it: PhaseStop once the old agent has been stopped (its process
	// no longer runs), then PhaseStart once the agent on To has been
	// started (its start phase passed; the transport may still verify its
	// version). Each phase is reported at most once, in that order, from
	// the goroutine that called Swap, before Swap returns. A swap that
	// stops nothing (refused, or the node already on To) reports nothing;
	// a swap that fails after stopping the node has reported PhaseStop. A
	// transport whose one command both stops and starts the node (exec)
	// reports both once that command has succeeded. Progress must not
	// block for long and must not call the transport. It is not part of
	// the request's JSON form.
	Progress func(Phase) `json:"-"`
}

// Report tells req.Progress (if set) that the swap reached phase: a
// helper for transports.
func (req SwapRequest) Report(phase Phase) {
	if req.Progress != nil {
		req.Progress(phase)
	}
}

// Transport swaps nodes.
type Transport interface {
	Swap(ctx context.Context, req SwapRequest) error
}

// Rollbacker can put a node back on the binary it ran before its last swap.
type Rollbacker interface {
	Rollback(ctx context.Context, node string) error
}

// VersionReporter can tell which version a node's agent runs now, from the
// host's point of view (the binary the running process was started from).
type VersionReporter interface {
	RunningVersion(ctx context.Context, node string) (string, error)
}

// Provisioner can add a new server host running a version (for the replace
// strategy) and retire an old one.
type Provisioner interface {
	Provision(ctx context.Context, role Role, version string) (node string, err error)
	Retire(ctx context.Context, node string) error
}

// Sentinels wrapped by *SwapError.
var (
	ErrUnknownNode    = errors.New("unknown node")
	ErrInvalidRequest = errors.New("invalid swap request")
	ErrArtifact       = errors.New("artifact unavailable or corrupt")
	ErrNotRunning     = errors.New("agent did not come up")
	// ErrUnreachable: the node's host could not be reached (no
	// connection, no handshake, an untrusted host key, a refused login),
	// so nothing was done on it. A pre-flight check (ArtifactChecker)
	// returns it too, naming the host and the reason.
	ErrUnreachable = errors.New("host unreachable")
)

// Phase is where a swap failed.
type Phase string

const (
	PhaseValidate Phase = "validate"
	PhaseStage    Phase = "stage"
	PhaseStop     Phase = "stop"
	PhaseStart    Phase = "start"
	PhaseVerify   Phase = "verify"
	PhaseRollback Phase = "rollback"
)

// SwapError is the error a transport returns for a failed swap.
type SwapError struct {
	Node  string
	Phase Phase
	To    string
	Err   error
}

func (e *SwapError) Error() string {
	return fmt.Sprintf("swap %s to %s: %s: %v", e.Node, e.To, e.Phase, e.Err)
}

func (e *SwapError) Unwrap() error { return e.Err }
