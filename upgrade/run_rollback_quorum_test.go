package upgrade

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// A second server dies while the first follower's swap is gated: the gate
// times out on failure tolerance, and rolling the swapped server back would
// stop it while it and the leader are the only voters up. The run halts
// without the rollback, with a *QuorumError naming what is up.
func TestRunDoesNotRollBackAServerWhenTheOthersWouldLoseTheirQuorum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Rollback = true
		r.cfg.GateTimeout = 30 * time.Second
		var victim, swapped string
		r.cfg.OnEvent = func(e Event) {
			r.events = append(r.events, e)
			if victim == "" && e.Kind == EventGateWaiting && e.Step.Kind == planner.StepSwapServer && e.Condition == planner.GateStable {
				swapped = e.Step.Node
				for _, n := range []string{"s1", "s2", "s3"} {
					if n != swapped && n != r.sim.Leader() {
						victim = n
						break
					}
				}
				mustDo(t, r.sim.Swap(victim, "1.12.9", false)) // down, and it stays down
			}
		}
		_, err := Run(t.Context(), r.cfg)
		if victim == "" {
			t.Fatal("no gate waited on stable: the second server was never stopped")
		}
		var h *HaltError
		var ge *GateError
		var refused *QuorumError
		if !errors.As(err, &h) || !errors.As(err, &ge) || ge.Condition != planner.GateFailureTolerance {
			t.Fatalf("err = %v, want a *HaltError on the failure-tolerance gate", err)
		}
		if !errors.As(h.RollbackErr, &refused) || !refused.Rollback {
			t.Fatalf("rollback error %v, want a *QuorumError of a rollback", h.RollbackErr)
		}
		if refused.Node != swapped || refused.Voters != 3 || refused.Quorum != 2 || len(refused.Up) != 1 || refused.Up[0] != r.sim.Leader() {
			t.Errorf("refusal %+v, want %s refused with only the leader %s up of 3 voters (quorum 2)", refused, swapped, r.sim.Leader())
		}
		if len(h.Touched) != 1 || h.Touched[0].Node != swapped || h.Touched[0].Rollback == nil || h.Touched[0].Rollback.Result != RollbackRefused {
			t.Errorf("touched %+v, want %s with its rollback refused", h.Touched, swapped)
		}
		if len(r.tr.rollbacks) != 0 || h.RolledBack {
			t.Errorf("rolled back %v while %s was down", r.tr.rollbacks, victim)
		}
		if swaps := len(r.tr.swapped()); swaps != 1 {
			t.Errorf("%d server swaps, want only the gated one", swaps)
		}
		for _, want := range []string{"not rolled back: rollback of server " + swapped + " refused", "1 of 3 voters up", "quorum of 2", "bring the down servers back first"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not say %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "rollback failed") {
			t.Errorf("message %q calls the refusal a failed rollback", err)
		}
		if n, _ := r.sim.Node(swapped); !n.Up || n.Version != "1.13.9" {
			t.Errorf("%s is %+v, want it left running on 1.13.9", swapped, n)
		}
		if !slices.Contains(r.kinds(), EventRolledBack) {
			t.Errorf("events %v: want the refusal reported as a rolled-back event with its error", r.kinds())
		}
	})
}
