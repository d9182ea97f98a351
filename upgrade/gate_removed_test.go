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

func TestTheRemovedGateWaitsUntilTheRetiredServerHasLeftTheRaftConfiguration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(4, 0, "1.12.9")
		c := inProcessConsul(t, s)
		step := planner.Step{Kind: planner.StepRetireServer, Node: "s2", From: "1.12.9", To: "1.13.9",
			Gate: []planner.GateCheck{planner.GateLeaderKnown, planner.GateRemoved}}
		go func() {
			time.Sleep(30 * time.Second)
			mustDo(t, s.RemoveServer("s2"))
		}()
		start := time.Now()
		var w waitLog
		if err := awaitGate(t.Context(), c, step, base3, w.opt(5*time.Minute)); err != nil {
			t.Fatalf("Gate: %v", err)
		}
		if waited := time.Since(start); waited < 30*time.Second || waited > 30*time.Second+2*DefaultGateMaxInterval {
			t.Errorf("gate passed after %s, want just after the server left at 30s", waited)
		}
		if len(w.conds) != 1 || w.conds[0] != planner.GateRemoved || !strings.Contains(w.details[0], "s2 is still alive in serf") {
			t.Errorf("waiting reasons %v (%q), want removed: s2 still alive", w.conds, w.details)
		}
	})
}

func TestTheRemovedGateTimesOutNamingAServerThatNeverLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.12.9")
		step := planner.Step{Kind: planner.StepRetireServer, Node: "s3", Gate: []planner.GateCheck{planner.GateRemoved}}
		err := awaitGate(t.Context(), inProcessConsul(t, s), step, base3, gateOptions{Timeout: time.Minute})
		var ge *GateError
		if !errors.As(err, &ge) || ge.Condition != planner.GateRemoved || ge.Node != "s3" || !errors.Is(err, ErrGateTimeout) {
			t.Fatalf("err = %v, want a timeout of the removed gate naming s3", err)
		}
	})
}
