package upgrade

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// The first follower's gate passes, then its agent dies and autopilot's
// dead-server cleanup removes it (seen on real 1.15.4 -> 1.16.1 agents:
// autopilot reported the dead server healthy for several seconds, long
// enough for its gate to pass). The next plan sees two healthy voters, one
// of them a follower still on the old version; stopping it would leave the
// leader alone without a quorum. The run must wait for the failure
// tolerance to come back before it stops a server, and halt when it does
// not, with nothing stopped.
func TestRunDoesNotStopAServerWhileTheFailureToleranceIsBelowItsStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.GateTimeout = 30 * time.Second
		var dead string
		r.cfg.OnEvent = func(e Event) {
			r.events = append(r.events, e)
			if dead == "" && e.Kind == EventStepDone && e.Step.Kind == planner.StepSwapServer {
				dead = e.Step.Node
				mustDo(t, r.sim.RemoveServer(dead))
			}
		}
		_, err := Run(t.Context(), r.cfg)
		if dead == "" {
			t.Fatal("no server swap passed its gate: the fault was never injected")
		}
		var h *HaltError
		var ge *GateError
		if !errors.As(err, &h) || !errors.As(err, &ge) || ge.Condition != planner.GateFailureTolerance || !errors.Is(err, ErrGateTimeout) {
			t.Fatalf("err = %v, want a *HaltError wrapping a *GateError on failure-tolerance that timed out", err)
		}
		if h.Step.Kind != planner.StepSwapServer || h.Step.Node == dead {
			t.Errorf("halted at %s %s, want the swap of a server after %s", h.Step.Kind, h.Step.Node, dead)
		}
		if swaps := r.tr.swapped(); len(swaps) != 1 || swaps[0].Node != dead {
			t.Errorf("server swaps %v, want only %s's: no server stopped while the tolerance was 0", swaps, dead)
		}
		if want := h.Step.Node + " not stopped"; !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %q", err, want)
		}
	})
}
