package upgrade

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// untouched fails the test when the rig's cluster was touched: a swap, a
// snapshot, a session (the lock) or a swap record.
func untouched(t *testing.T, r *runRig, res *Result) {
	t.Helper()
	if len(r.tr.swapped()) != 0 || len(r.snapshots) != 0 || len(r.sim.Sessions()) != 0 || (res != nil && len(res.Steps) != 0) {
		t.Errorf("a refused run touched the cluster: swaps %v, snapshots %v, sessions %v, steps %v", r.tr.swapped(), r.snapshots, r.sim.Sessions(), res.Steps)
	}
	if _, found, _ := r.cfg.Consul.(KVStore).KVGet(t.Context(), swapRecordKey("")); found {
		t.Error("a refused run left a swap record")
	}
}

// staleError returns the *planner.StalePlanError of err, failing the test
// when it has none.
func staleError(t *testing.T, err error) *planner.StalePlanError {
	t.Helper()
	var se *planner.StalePlanError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a *planner.StalePlanError", err)
	}
	return se
}

func diffTexts(se *planner.StalePlanError) []string {
	out := make([]string, len(se.Diffs))
	for i, d := range se.Diffs {
		out[i] = d.String()
	}
	return out
}

// The reported scenario: a plan saved on a healthy 3-server cluster; s3 is
// killed and autopilot removes it; the next apply -step must refuse the
// plan before its first step (the snapshot), naming s3 missing and the
// failure tolerance dropped, and touch nothing.
func TestRunWithAPlanSavedBeforeAServerWasKilledAndRemovedRefusesItBeforeItsFirstStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		p := approvedPlan(t, r)
		mustDo(t, r.sim.Kill("s3"))
		mustDo(t, r.sim.RemoveDeadServer("s3"))
		r.cfg.Plan, r.cfg.MaxSteps = p, 1
		res, err := Run(t.Context(), r.cfg)
		se := staleError(t, err)
		got := strings.Join(diffTexts(se), "\n")
		for _, want := range []string{
			"server s3: recorded a healthy voter on 1.12.9, observed missing: s3 (1.12.9, left in serf, not in the Raft configuration)",
			"voters of dc1: recorded 3 (s1, s2, s3), observed 2 (s1, s2)",
			"failure tolerance of dc1: recorded 1, observed 0",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("diffs lack %q:\n%s", want, got)
			}
		}
		if se.Done != 0 || se.Total != len(p.Steps) {
			t.Errorf("stale %d of %d done, want 0 of %d", se.Done, se.Total, len(p.Steps))
		}
		untouched(t, r, res)
		if k := r.kinds(); len(k) == 0 || k[len(k)-1] != EventHalted {
			t.Errorf("events %v: want the refusal reported as halted", k)
		}
	})
}

// Killed, and not yet removed by autopilot: the plan is stale too (s3 no
// longer healthy, the tolerance down to 0).
func TestRunWithAPlanSavedBeforeAServerWasKilledRefusesItWhileTheServerIsStillAVoter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		p := approvedPlan(t, r)
		mustDo(t, r.sim.Kill("s3"))
		r.cfg.Plan = p
		res, err := Run(t.Context(), r.cfg)
		got := strings.Join(diffTexts(staleError(t, err)), "\n")
		for _, want := range []string{"health of s3: recorded healthy, observed not healthy", "failure tolerance of dc1: recorded 1, observed 0"} {
			if !strings.Contains(got, want) {
				t.Errorf("diffs lack %q:\n%s", want, got)
			}
		}
		untouched(t, r, res)
	})
}

func TestRunWithAPlanSavedBeforeAServerJoinedRefusesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		p := approvedPlan(t, r)
		mustDo(t, r.sim.AddServer("s4", "1.12.9"))
		r.cfg.Plan = p
		res, err := Run(t.Context(), r.cfg)
		got := strings.Join(diffTexts(staleError(t, err)), "\n")
		if !strings.Contains(got, "server s4: recorded not in the cluster, observed a ") {
			t.Errorf("diffs do not name the new server s4:\n%s", got)
		}
		untouched(t, r, res)
	})
}

// The failure tolerance drops without a server leaving: s2 stays a voter,
// but autopilot no longer calls it healthy.
func TestRunWithAPlanWhoseClusterLostItsFailureToleranceRefusesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		p := approvedPlan(t, r)
		mustDo(t, r.sim.SetNeverHealthy("s2", true))
		r.cfg.Plan = p
		res, err := Run(t.Context(), r.cfg)
		got := strings.Join(diffTexts(staleError(t, err)), "\n")
		if !strings.Contains(got, "failure tolerance of dc1: recorded 1, observed 0") || !strings.Contains(got, "health of s2: recorded healthy, observed not healthy") {
			t.Errorf("diffs:\n%s\nwant s2's health and the failure tolerance 1 -> 0", got)
		}
		untouched(t, r, res)
	})
}

// A plan applied one step per run, as `apply -step` does: each run checks
// the basis against the cluster its earlier runs moved along the plan,
// the leader's swap (which moves the leader) included, and every step
// passes.
func TestRunWithAnApprovedPlanAppliedAStepPerRunKeepsItsBasisToTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		p := approvedPlan(t, r)
		r.cfg.Plan, r.cfg.MaxSteps = p, 1
		for i := range p.Steps {
			res, err := Run(t.Context(), r.cfg)
			if err != nil {
				t.Fatalf("run %d: %v", i+1, err)
			}
			if len(res.Steps) != 1 || !sameStep(res.Steps[0].Step, p.Steps[i]) {
				t.Fatalf("run %d did %v, want step %d of the plan (%s)", i+1, res.Steps, i+1, p.Steps[i])
			}
		}
		if l := r.sim.Leader(); l == "s1" || l == "" {
			t.Errorf("leader %q: the plan swapped the leader s1 last, so another leads", l)
		}
		for _, n := range []string{"s1", "s2", "s3", "c1", "c2"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s, want 1.13.9", n, v)
			}
		}
	})
}

func TestRunWithAPlanThatRecordsNoBasisRefusesItAsUncheckable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		p := approvedPlan(t, r)
		p.Basis = nil // saved before plans recorded their basis
		r.cfg.Plan = p
		res, err := Run(t.Context(), r.cfg)
		if se := staleError(t, err); !se.NoBasis {
			t.Errorf("stale %+v, want NoBasis", se)
		}
		untouched(t, r, res)
	})
}
