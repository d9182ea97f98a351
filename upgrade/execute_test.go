package upgrade

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// An embedder's own loop: Discover, planner.Next, ExecuteStep, until done.
func TestExecuteStepDrivenByTheCallersOwnLoopReachesTheTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		r.cfg.ClientConcurrency = 1
		var kinds []planner.StepKind
		for i := 0; ; i++ {
			if i > 20 {
				t.Fatalf("no end after %d steps: %v", i, kinds)
			}
			c, err := Discover(t.Context(), r.cfg.Consul)
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := ReadBackupRecord(t.Context(), r.cfg.Consul, ""); err != nil {
				t.Fatal(err)
			} else if rec != nil {
				c.SnapshotVersion = rec.Version
			}
			step, err := planner.Next(c, "1.13.9", r.cfg.Policy)
			if err != nil {
				t.Fatal(err)
			}
			if step.Kind == planner.StepDone {
				break
			}
			rec, err := ExecuteStep(t.Context(), r.cfg, step)
			if err != nil {
				t.Fatalf("ExecuteStep(%s): %v", step, err)
			}
			if step.Kind == planner.StepSnapshot && (rec.Snapshot == nil || rec.Snapshot.ID == "") {
				t.Errorf("snapshot step recorded %+v, want the verified snapshot", rec)
			}
			if rec.Ended.IsZero() {
				t.Errorf("step %s has no end time: the gate did not pass", step)
			}
			kinds = append(kinds, step.Kind)
		}
		want := []planner.StepKind{planner.StepSnapshot, planner.StepSwapServer, planner.StepSwapServer, planner.StepSwapServer, planner.StepSwapClients, planner.StepSwapClients}
		if strings.Join(kindStrings(kinds), " ") != strings.Join(kindStrings(want), " ") {
			t.Errorf("steps %v, want %v (one snapshot, recorded for the later decisions)", kinds, want)
		}
		for _, n := range []string{"s1", "s2", "s3", "c1", "c2"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s, want 1.13.9", n, v)
			}
		}
		if held := r.sim.HeldLocks(); len(held) != 0 {
			t.Errorf("locks %v held after the steps", held)
		}
	})
}

func TestExecuteStepHaltsAndRollsBackAFailedSwapAsRunDoes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Rollback = true
		r.tr.failNext["s2"] = errors.New("disk full")
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", From: "1.12.9", To: "1.13.9", StopMode: planner.StopKill,
			Gate: []planner.GateCheck{planner.GateLeaderKnown, planner.GateVersion, planner.GateVoter}}
		_, err := ExecuteStep(t.Context(), r.cfg, step)
		var h *HaltError
		if !errors.As(err, &h) || !h.RolledBack || len(r.tr.rollbacks) != 1 || r.tr.rollbacks[0] != "s2" {
			t.Fatalf("err = %v, rollbacks %v: want a halt with s2 rolled back", err, r.tr.rollbacks)
		}
		if s := r.tr.swapped(); len(s) != 1 || s[0].StopMode != transport.StopKill || s[0].Role != transport.RoleServer {
			t.Errorf("swaps %+v, want one server swap with the step's stop mode", s)
		}
	})
}

func TestExecuteStepRefusesAServerTheClusterDoesNotHave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		_, err := ExecuteStep(t.Context(), r.cfg, planner.Step{Kind: planner.StepSwapServer, Node: "s9", To: "1.13.9"})
		if err == nil || !strings.Contains(err.Error(), `server "s9" of swap-server s9 -> 1.13.9 is not in the cluster (servers: s1, s2, s3)`) {
			t.Fatalf("err = %v, want a refusal naming s9 and the servers", err)
		}
		var refused *StepRefusedError
		if !errors.As(err, &refused) {
			t.Errorf("err is %T, want a *StepRefusedError (nothing touched)", err)
		}
		if len(r.tr.swapped()) != 0 || len(r.sim.Sessions()) != 0 {
			t.Errorf("a refused step touched the cluster")
		}
		if _, err := ExecuteStep(t.Context(), r.cfg, planner.Step{Kind: planner.StepDone}); err == nil {
			t.Errorf("a done step was accepted")
		}
	})
}
