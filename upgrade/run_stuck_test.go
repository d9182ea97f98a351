package upgrade

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// Leadership is handed to s2 and its gate passes, then s1 wins an election
// back: the planner asks for the same transfer again and the run halts,
// refused before it acts, saying that s1 leads again (found by the property test, seed 1476: the
// message blamed the transport's install, which a transfer has none of).
func TestRunHaltsOnATransferWhoseOldLeaderWonLeadershipBackAndSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		for _, n := range r.sim.Nodes() {
			mustDo(t, r.sim.Swap(n.Name, "1.15.4", true))
		}
		time.Sleep(consultest.DefaultRestartDelay)
		mustDo(t, r.sim.SetLeader("s1"))
		r.cfg.Target = "1.16.1"
		r.cfg.OnEvent = func(e Event) {
			r.events = append(r.events, e)
			if e.Kind == EventStepDone && e.Step.Kind == planner.StepTransferLeader {
				mustDo(t, r.sim.SetLeader(e.Step.Node)) // the old leader wins an election
			}
		}
		_, err := Run(t.Context(), r.cfg)
		// The repeated transfer is refused before it acts: a
		// *StepRefusedError (nothing of that step touched) wrapping the
		// *StuckError.
		var refused *StepRefusedError
		var stuck *StuckError
		if !errors.As(err, &refused) || !errors.As(err, &stuck) || stuck.Step.Kind != planner.StepTransferLeader {
			t.Fatalf("err = %v, want a *StepRefusedError wrapping a *StuckError on the transfer", err)
		}
		msg := stuck.Error()
		if !strings.Contains(msg, "s1 leads again") || strings.Contains(msg, "transport really installs") {
			t.Errorf("message %q should say that s1 leads again, not blame the transport's install", msg)
		}
	})
}
