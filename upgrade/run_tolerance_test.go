package upgrade

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// The first follower's gate passes, then its agent dies and autopilot's
// dead-server cleanup removes it (seen on real 1.15.4 -> 1.16.1 agents:
// autopilot reported the dead server healthy for several seconds, long
// enough for its gate to pass). The next plan sees two healthy voters, one
// of them a follower still on the old version; stopping it would leave the
// leader alone without a quorum. The planner refuses that cluster
// (no-spare-voter) and the run halts, nothing more stopped.
func TestRunHaltsWhenAServerIsLostMidRunAndTwoVotersAreLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
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
		var h *StepRefusedError
		var re *planner.RefusedError
		if !errors.As(err, &h) || !errors.As(err, &re) || len(re.Findings) != 1 || re.Findings[0].Rule != planner.PrecheckNoSpareVoter {
			t.Fatalf("err = %v, want a *StepRefusedError wrapping a refusal by %s", err, planner.PrecheckNoSpareVoter)
		}
		if swaps := r.tr.swapped(); len(swaps) != 1 || swaps[0].Node != dead {
			t.Errorf("server swaps %v, want only %s's: no server stopped while the tolerance was 0", swaps, dead)
		}
	})
}

// The same, with no-spare-voter waived: the planner lets the two voters
// through, but the waiver accepts a cluster that began without a spare,
// not one that lost a server during the run (its baseline tolerance was
// 1). The stop check reads the current Raft configuration and halts the
// run before it stops a second server, with a *QuorumError, nothing
// stopped.
func TestRunDoesNotStopAServerWhoseStopWouldLoseTheQuorum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Policy.Waive = []planner.RuleID{planner.PrecheckNoSpareVoter}
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
		var h *StepRefusedError
		var refused *QuorumError
		if !errors.As(err, &h) || !errors.As(err, &refused) || refused.Rollback {
			t.Fatalf("err = %v, want a *StepRefusedError wrapping a *QuorumError of a swap's stop", err)
		}
		if refused.Node != h.Step.Node || refused.Voters != 2 || refused.Quorum != 2 || len(refused.Up) != 1 || refused.Up[0] != r.sim.Leader() {
			t.Errorf("refusal %+v, want %s refused with only the leader %s up of 2 voters (quorum 2)", refused, h.Step.Node, r.sim.Leader())
		}
		if h.Step.Kind != planner.StepSwapServer || h.Step.Node == dead {
			t.Errorf("halted at %s %s, want the swap of a server after %s", h.Step.Kind, h.Step.Node, dead)
		}
		if swaps := r.tr.swapped(); len(swaps) != 1 || swaps[0].Node != dead {
			t.Errorf("server swaps %v, want only %s's: no server stopped while the tolerance was 0", swaps, dead)
		}
		if want := "server " + h.Step.Node + " not stopped to be swapped"; !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %q", err, want)
		}
	})
}
