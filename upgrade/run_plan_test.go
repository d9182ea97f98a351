package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// approvedPlan is the dry run's plan of the rig's cluster, through JSON and
// back, as a reviewed plan file would be.
func approvedPlan(t *testing.T, r *runRig) *planner.UpgradePlan {
	t.Helper()
	cfg := r.cfg
	cfg.DryRun = true
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	b, err := res.Plan.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var p planner.UpgradePlan
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func serverSwaps(tr *fakeTransport) []string {
	var out []string
	for _, s := range tr.swapped() {
		if s.Role == transport.RoleServer {
			out = append(out, s.Node)
		}
	}
	return out
}

func TestRunWithAnApprovedPlanCarriesOutItsStepsAndReachesTheTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		p := approvedPlan(t, r)
		r.cfg.Plan, r.cfg.Target = p, "" // the plan's target
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if len(res.Steps) != len(p.Steps) {
			t.Fatalf("%d steps done, the plan has %d", len(res.Steps), len(p.Steps))
		}
		for i, rec := range res.Steps {
			if !sameStep(rec.Step, p.Steps[i]) {
				t.Errorf("step %d done is %s, the plan's is %s", i, rec.Step, p.Steps[i])
			}
		}
		for _, n := range []string{"s1", "s2", "s3", "c1", "c2"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s, want 1.13.9", n, v)
			}
		}
	})
}

// Leadership moves after the review, with no step of the plan done: the
// plan was reviewed with s1 leading (swapped last), and it is stale. It is
// refused before anything is touched, the snapshot included.
func TestRunWithAnApprovedPlanRefusesItBeforeAnyStepOnceTheLeaderMovedWithoutIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		p := approvedPlan(t, r) // snapshot, s2, s3, then the leader s1
		if p.Steps[1].Node != "s2" {
			t.Fatalf("plan %v: want s2 swapped first", p.Steps)
		}
		mustDo(t, r.sim.SetLeader("s2"))
		r.cfg.Plan = p
		res, err := Run(t.Context(), r.cfg)
		var se *planner.StalePlanError
		if !errors.As(err, &se) {
			t.Fatalf("err = %v, want a *planner.StalePlanError", err)
		}
		if len(se.Diffs) != 1 || se.Diffs[0].Item != "leader" || se.Diffs[0].Recorded != "s1" || !strings.HasPrefix(se.Diffs[0].Observed, "s2") || se.Done != 0 {
			t.Errorf("stale %+v, want only the leader, s1 recorded, s2 observed, no step done", se)
		}
		if len(r.tr.swapped()) != 0 || len(r.snapshots) != 0 || len(res.Steps) != 0 {
			t.Errorf("a stale plan touched the cluster: swaps %v, snapshots %v, steps %v", r.tr.swapped(), r.snapshots, res.Steps)
		}
		if held := r.sim.HeldLocks(); len(held) != 0 {
			t.Errorf("locks %v still held after the refusal", held)
		}
	})
}

// The leader moves after the snapshot step of the plan (not a step that
// moves it): the plan is refused before its next step, with the snapshot
// the only step done.
func TestRunWithAnApprovedPlanHaltsBeforeTouchingAServerOnceTheLeaderMovedWithoutIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		p := approvedPlan(t, r) // snapshot, s2, s3, then the leader s1
		r.cfg.Plan = p
		r.cfg.OnEvent = func(e Event) {
			r.events = append(r.events, e)
			if e.Kind == EventStepDone && e.Step.Kind == planner.StepSnapshot {
				mustDo(t, r.sim.SetLeader("s2"))
			}
		}
		res, err := Run(t.Context(), r.cfg)
		var h *StepRefusedError
		var se *planner.StalePlanError
		if !errors.As(err, &h) || !errors.As(err, &se) {
			t.Fatalf("err = %v, want a *StepRefusedError wrapping a *planner.StalePlanError", err)
		}
		if se.Done != 1 || len(se.Diffs) != 1 || se.Diffs[0].Item != "leader" {
			t.Errorf("stale %+v, want the leader named, with the snapshot done", se)
		}
		if s := serverSwaps(r.tr); len(s) != 0 {
			t.Errorf("servers swapped %v, want none: the stale plan halts before the step", s)
		}
		if len(res.Steps) != 1 || res.Steps[0].Step.Kind != planner.StepSnapshot {
			t.Errorf("steps done %v, want only the plan's snapshot", res.Steps)
		}
		if held := r.sim.HeldLocks(); len(held) != 0 {
			t.Errorf("locks %v still held after the halt", held)
		}
	})
}

func TestRunWithAnApprovedPlanRefusesAtTheStartAnAgentOnAVersionThePlanDoesNotContain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		p := approvedPlan(t, r)
		other := newRunRig(t, 3, 0)
		mustDo(t, other.sim.Swap("s3", "1.12.3", true))
		time.Sleep(consultest.DefaultRestartDelay + time.Second) // s3 is back, healthy, on 1.12.3
		other.cfg.Plan = p
		_, err := Run(t.Context(), other.cfg)
		// The plan's basis says s3 runs 1.12.9: the plan is stale.
		var se *planner.StalePlanError
		if !errors.As(err, &se) || len(se.Diffs) != 1 || se.Diffs[0].String() != "version of s3: recorded 1.12.9, observed 1.12.3" {
			t.Fatalf("err = %v, want a *planner.StalePlanError naming only s3's version", err)
		}
		if len(other.tr.swapped()) != 0 || len(other.snapshots) != 0 || len(other.sim.Sessions()) != 0 {
			t.Errorf("a refused run touched the cluster: swaps %v, snapshots %v, sessions %v", other.tr.swapped(), other.snapshots, other.sim.Sessions())
		}

		// A plan edited by hand so that its basis agrees with s3 on
		// 1.12.3, while its path does not contain 1.12.3: the path check
		// refuses it.
		for i, sv := range p.Basis.Datacenters[0].Servers {
			if sv.Name == "s3" {
				p.Basis.Datacenters[0].Servers[i].Version = "1.12.3"
			}
		}
		_, err = Run(t.Context(), other.cfg)
		var pd *PlanDivergedError
		if !errors.As(err, &pd) || pd.Index != -1 || pd.Node != "s3" {
			t.Fatalf("err = %v, want a *PlanDivergedError at the start naming s3", err)
		}
		if !strings.Contains(err.Error(), "server s3 runs 1.12.3, a version the plan's path (1.12.9 -> 1.13.9) does not contain") {
			t.Errorf("error %q should name s3's version and the plan's path", err)
		}
		if len(other.tr.swapped()) != 0 || len(other.snapshots) != 0 || len(other.sim.Sessions()) != 0 {
			t.Errorf("a refused run touched the cluster: swaps %v, snapshots %v, sessions %v", other.tr.swapped(), other.snapshots, other.sim.Sessions())
		}
	})
}

// A plan with steps in a datacenter the run does not observe is refused at
// the start: the run would otherwise end done with those steps untouched.
func TestRunWithAnApprovedPlanRefusesAStepInADatacenterItDoesNotObserve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		p := approvedPlan(t, r)
		extra := p.Steps[len(p.Steps)-1]
		extra.Datacenter, extra.Node = "dc9", "dc9-s1"
		p.Steps = append(p.Steps, extra)
		r.cfg.Plan = p
		_, err := Run(t.Context(), r.cfg)
		var pd *PlanDivergedError
		if !errors.As(err, &pd) || pd.Index != -1 || pd.Node != "dc9-s1" {
			t.Fatalf("err = %v, want a *PlanDivergedError at the start naming dc9-s1", err)
		}
		if !strings.Contains(err.Error(), "in datacenter dc9, which this run does not observe (it observes dc1)") || !strings.Contains(err.Error(), "-dc dc9=ADDRESS") {
			t.Errorf("error %q should name dc9, the observed datacenters and the fix", err)
		}
		if len(r.tr.swapped()) != 0 || len(r.snapshots) != 0 || len(r.sim.Sessions()) != 0 {
			t.Errorf("a refused run touched the cluster: swaps %v, snapshots %v, sessions %v", r.tr.swapped(), r.snapshots, r.sim.Sessions())
		}
	})
}

func TestConfigRefusesATargetThatIsNotThePlans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Plan = approvedPlan(t, r)
		r.cfg.Target = "1.14.0"
		_, err := Run(t.Context(), r.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "Target" || !strings.Contains(ce.Problem, "plan's target 1.13.9") {
			t.Fatalf("err = %v, want a ConfigError on Target naming the plan's", err)
		}
	})
}

// A run stepped one step at a time with an approved plan resumes each time
// at the plan's next step not yet done, and ends on the target.
func TestRunWithAnApprovedPlanResumesOneStepAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		p := approvedPlan(t, r)
		r.cfg.Plan, r.cfg.MaxSteps = p, 1
		var done []string
		for run := 0; run < 20; run++ {
			res, err := Run(t.Context(), r.cfg)
			if err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
			for _, rec := range res.Steps {
				done = append(done, rec.Step.String())
			}
			if !res.Stopped {
				break
			}
			if len(res.Steps) != 1 {
				t.Fatalf("run %d did %d steps, want 1", run, len(res.Steps))
			}
		}
		for _, n := range []string{"s1", "s2", "s3", "c1", "c2"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s, want 1.13.9", n, v)
			}
		}
		var want []string
		for _, s := range p.Steps {
			want = append(want, s.String())
		}
		if strings.Join(done, "; ") != strings.Join(want, "; ") {
			t.Errorf("steps done over the runs:\n%s\nwant the plan's:\n%s", strings.Join(done, "\n"), strings.Join(want, "\n"))
		}
	})
}

func TestBeforeStepIsAskedBeforeEachStepWithItsIndexAndTotal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		var infos []StepInfo
		r.cfg.BeforeStep = func(ctx context.Context, s StepInfo) (StepDecision, error) {
			infos = append(infos, s)
			return Approve, nil
		}
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if len(infos) != len(res.Steps) {
			t.Fatalf("asked %d times for %d steps", len(infos), len(res.Steps))
		}
		for i, in := range infos {
			if in.Index != i || in.Total != len(res.Steps) || !sameStep(in.Step, res.Steps[i].Step) {
				t.Errorf("ask %d: %+v, want index %d of %d for %s", i, in, i, len(res.Steps), res.Steps[i].Step)
			}
		}
		// Events about a step carry its place too.
		for _, e := range r.events {
			if e.Kind == EventStepStarted && (e.Total != len(res.Steps) || !sameStep(e.Step, res.Steps[e.Index].Step)) {
				t.Errorf("step-started event %d of %d for %s does not place its step", e.Index, e.Total, e.Step)
			}
		}
	})
}

func TestBeforeStepSkipEndsTheRunCleanlyBeforeTheStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.BeforeStep = func(ctx context.Context, s StepInfo) (StepDecision, error) {
			if s.Index == 2 {
				return StopHere, nil
			}
			return Approve, nil
		}
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("err = %v, want nil: skip ends the run cleanly", err)
		}
		if !res.Stopped || len(res.Steps) != 2 || len(res.Remaining) != 2 || res.Remaining[0].Node != "s3" {
			t.Errorf("stopped %v after %d steps, remaining %v; want stopped after 2 with s3 and s1 left", res.Stopped, len(res.Steps), res.Remaining)
		}
		if s := serverSwaps(r.tr); len(s) != 1 || s[0] != "s2" {
			t.Errorf("servers swapped %v, want only s2", s)
		}
		if held := r.sim.HeldLocks(); len(held) != 0 {
			t.Errorf("locks %v still held", held)
		}
	})
}

func TestBeforeStepAbortAndErrorsEndTheRunWithAnAbortedError(t *testing.T) {
	hookErr := errors.New("operator said no")
	for _, tc := range []struct {
		name string
		dec  StepDecision
		err  error
	}{{"abort", Abort, nil}, {"error", Approve, hookErr}, {"unknown decision", StepDecision(7), nil}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRunRig(t, 3, 0)
				r.cfg.BeforeStep = func(ctx context.Context, s StepInfo) (StepDecision, error) {
					if s.Step.Kind == planner.StepSwapServer {
						return tc.dec, tc.err
					}
					return Approve, nil
				}
				res, err := Run(t.Context(), r.cfg)
				var ae *AbortedError
				if !errors.As(err, &ae) || ae.Index != 1 || ae.Step.Node != "s2" {
					t.Fatalf("err = %v, want an *AbortedError before step 1 (s2)", err)
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Errorf("err = %v does not wrap the hook's error", err)
				}
				if res.Stopped || len(res.Steps) != 1 || len(serverSwaps(r.tr)) != 0 {
					t.Errorf("stopped %v, steps %d, swaps %v: want only the snapshot done", res.Stopped, len(res.Steps), serverSwaps(r.tr))
				}
			})
		})
	}
}

// An approval that takes a while is followed by a fresh look at the
// cluster: a step that is no longer the one to do is asked about again.
func TestBeforeStepThatTakesAWhileIsAskedAgainWhenTheClusterMoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0, consultest.WithStabilizationTime(0))
		var asked []string
		r.cfg.BeforeStep = func(ctx context.Context, s StepInfo) (StepDecision, error) {
			asked = append(asked, s.Step.String())
			if s.Step.Kind == planner.StepSwapServer && s.Step.Node == "s2" && len(asked) == 2 {
				mustDo(t, r.sim.SetLeader("s2")) // meanwhile, leadership moves to s2
				sleepCtx(ctx, 2*approvalReobserve)
			}
			return Approve, nil
		}
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if len(asked) < 3 || asked[2] == asked[1] {
			t.Fatalf("asked %v: want the step after the slow approval decided again", asked)
		}
		if s := serverSwaps(r.tr); len(s) != 3 || s[2] != "s2" {
			t.Errorf("servers swapped %v, want the new leader s2 last", s)
		}
	})
}

func TestConfigRefusesAnUnknownWaiver(t *testing.T) {
	cfg := Config{Consul: NewConsul(nil), Target: "1.13.9", DryRun: true, Policy: planner.Policy{Waive: []planner.RuleID{"server-unhealty"}}}
	err := cfg.Validate()
	var ce *ConfigError
	var we *planner.WaiverError
	if !errors.As(err, &ce) || ce.Field != "Policy.Waive" || !errors.As(err, &we) || we.Suggest["server-unhealty"] != planner.PrecheckServerUnhealthy {
		t.Fatalf("err = %v, want a ConfigError on Policy.Waive wrapping a *planner.WaiverError that suggests %s", err, planner.PrecheckServerUnhealthy)
	}
}
