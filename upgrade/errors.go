package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// ErrGateTimeout is wrapped by a *GateError whose conditions did not hold
// within the gate's timeout.
var ErrGateTimeout = errors.New("gate timed out")

// GateError reports a gate condition that did not hold in time (or could not
// be evaluated at all).
type GateError struct {
	Step planner.Step
	// Node is the node the failing condition is about. For a cluster-wide
	// condition (leader-known, failure-tolerance) it is the step's server
	// (swapped, added or retired; a transfer's new leader), and "" on a
	// client wave.
	Node      string
	Condition planner.GateCheck
	// Detail is the last observed value against the wanted one.
	Detail string
	// Timeout is the gate's time bound.
	Timeout time.Duration
	// Era is the API era whose checks the gate applied last ("" when it
	// could not observe one).
	Era Era
	// Err is ErrGateTimeout (possibly joined with the last API error), the
	// context's error, ErrElectionStorm, ErrAgentGone (the node's host says
	// its agent is not running), or the reason the gate could not be
	// evaluated.
	Err error
}

func (e *GateError) Error() string {
	var how string
	switch {
	case errors.Is(e.Err, ErrGateTimeout):
		how = fmt.Sprintf("did not hold within %s", e.Timeout)
	case errors.Is(e.Err, context.Canceled), errors.Is(e.Err, context.DeadlineExceeded):
		how = "did not hold before the context ended"
	case errors.Is(e.Err, ErrElectionStorm):
		how = "failed"
	case errors.Is(e.Err, ErrAgentGone):
		how = "cannot hold: the agent exited after its swap"
	default:
		how = "cannot be checked"
	}
	msg := fmt.Sprintf("gate after %s: %s %s", stepString(e.Step), e.Condition, how)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Era != "" {
		msg += " [" + e.Era.Checks() + "]"
	}
	if e.Err != nil && e.Err != ErrGateTimeout {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg
}

func (e *GateError) Unwrap() error { return e.Err }

// HaltError stops a run at a step that acted and then failed: the step
// touched at least one node (stopped it, or may have; started, provisioned
// or retired it; asked for a leadership transfer), and its act or its gate
// failed. A step that failed before it touched anything is a
// *StepRefusedError instead. Nothing after the step was touched.
// RolledBack reports whether the failed node was put back on its old
// binary and the cluster was seen healthy again. Touched is what the run
// touched, this step included (never empty).
type HaltError struct {
	Step       planner.Step
	Err        error
	Touched    Touched
	RolledBack bool
	// RolledBackNodes are the nodes put back on their old binary.
	RolledBackNodes []string
	// RollbackErr is set when a rollback was attempted and failed.
	RollbackErr error
}

func (e *HaltError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upgrade halted at %s: %v", stepString(e.Step), e.Err)
	var refused *QuorumError
	switch {
	case e.RolledBack:
		fmt.Fprintf(&b, "; rolled back %s to the previous binary and the cluster is healthy again", strings.Join(e.RolledBackNodes, ", "))
	case errors.As(e.RollbackErr, &refused):
		fmt.Fprintf(&b, "; not rolled back: %v", e.RollbackErr)
	case e.RollbackErr != nil:
		fmt.Fprintf(&b, "; rollback failed: %v; inspect the node by hand before resuming", e.RollbackErr)
	}
	if len(e.Touched) > 0 {
		fmt.Fprintf(&b, " [touched by this run: %s]", e.Touched.Summary())
	}
	return b.String()
}

func (e *HaltError) Unwrap() error { return e.Err }

// StuckError reports that the planner chose the same step again right after
// it acted and its gate passed: the observed cluster does not move (or
// moved back: a leadership transfer whose old leader won an election
// since), so repeating the step would loop forever.
type StuckError struct {
	Step planner.Step
}

func (e *StuckError) Error() string {
	if e.Step.Kind == planner.StepTransferLeader {
		return fmt.Sprintf("%s was chosen again after it succeeded: %s leads again (it won an election after leadership was handed to %s and the gate passed); run again to hand leadership over again, and if %s keeps winning, find out why before going on", stepString(e.Step), e.Step.Node, e.Step.Target, e.Step.Node)
	}
	return fmt.Sprintf("%s was chosen again after it succeeded: the observed cluster did not change (check that the transport really installs %s and that the agent reports it in its serf build tag)", stepString(e.Step), e.Step.To)
}

// ConfigError is one problem Config.Validate found.
type ConfigError struct {
	Field   string
	Value   string
	Problem string
	Err     error // the underlying error, if any (a *planner.VersionError for Target)
}

func (e *ConfigError) Unwrap() error { return e.Err }

func (e *ConfigError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("config %s = %s: %s", e.Field, e.Value, e.Problem)
	}
	return fmt.Sprintf("config %s: %s", e.Field, e.Problem)
}

// stepString renders a step for messages: "swap-server s2 -> 1.13.9" (see
// planner.Step.String).
func stepString(s planner.Step) string { return s.String() }
