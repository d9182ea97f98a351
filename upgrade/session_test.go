package upgrade

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func kindStrings(ks []planner.StepKind) []string {
	var out []string
	for _, k := range ks {
		out = append(out, string(k))
	}
	return out
}

// lockHeld reports whether the rig's upgrade lock is held by a session.
func lockHeld(r *runRig) bool {
	_, held := r.sim.LockHolder(DefaultLockKey)
	return held
}

// The loop of the package doc, on a cluster two hops from the target
// (1.10.12 -> 1.12.9 -> 1.13.9): one snapshot per hop, the lock held at
// every moment the loop can look, and one lock taken for the whole
// upgrade (every other session was made to move the lock, and says so).
func TestASessionLoopTakesTwoHopsWithOneSnapshotPerHopAndTheLockHeldThroughout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRigAt(t, "1.10.12", 3, 2)
		ctx := t.Context()
		s, err := Open(ctx, r.cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close(ctx)
		if !lockHeld(r) {
			t.Fatal("the lock is not held after Open")
		}
		var kinds []planner.StepKind
		for i := 0; ; i++ {
			if i > 30 {
				t.Fatalf("no end after %d steps: %v", i, kinds)
			}
			step, err := s.Next(ctx)
			if err != nil {
				t.Fatalf("Next after %v: %v", kinds, err)
			}
			if !lockHeld(r) {
				t.Fatalf("the lock is not held after Next (steps so far %v)", kinds)
			}
			if step.Kind == planner.StepDone {
				break
			}
			rec, err := s.Execute(ctx, step)
			if err != nil {
				t.Fatalf("Execute(%s): %v", step, err)
			}
			if rec.Ended.IsZero() {
				t.Errorf("step %s has no end time: its gate did not pass", step)
			}
			if !lockHeld(r) {
				t.Fatalf("the lock is not held after %s", step)
			}
			kinds = append(kinds, step.Kind)
		}
		if !slices.Equal(r.snapshots, []string{"1.10.12", "1.12.9"}) {
			t.Errorf("snapshots taken on %v, want one per hop: 1.10.12, 1.12.9", r.snapshots)
		}
		for _, n := range []string{"s1", "s2", "s3", "c1", "c2"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s, want 1.13.9", n, v)
			}
		}
		moves := 0
		for _, e := range r.events {
			if e.Kind == EventLockMoved && e.Err == nil {
				moves++
			}
		}
		if n := r.sim.Calls("/v1/session/create"); n != 1+moves {
			t.Errorf("%d sessions created, want 1 for the lock plus one per lock move (%d): the lock was taken again", n, moves)
		}
		if n := countKind(r.events, EventLocked); n != 1 {
			t.Errorf("%d locked events, want 1", n)
		}
		res := s.Result()
		if len(res.Steps) != len(kinds) || len(res.Touched.Nodes()) != 5 {
			t.Errorf("Result: %d steps, touched %v; want %d steps and every node touched", len(res.Steps), res.Touched.Nodes(), len(kinds))
		}
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if held := r.sim.HeldLocks(); len(held) != 0 || len(r.sim.Sessions()) != 0 {
			t.Errorf("after Close: locks %v, sessions %v; want none", held, r.sim.Sessions())
		}
		if _, ok := r.sim.KV("consul-upgrade/backup"); ok {
			t.Error("the backup record is still there after the session reached the target")
		}
	})
}

func countKind(evs []Event, k EventKind) int {
	n := 0
	for _, e := range evs {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func TestCloseReleasesTheLockOnceEvenAfterTheContextEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		ctx, cancel := context.WithCancel(t.Context())
		s, err := Open(ctx, r.cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		cancel()
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close after the context ended: %v", err)
		}
		if held := r.sim.HeldLocks(); len(held) != 0 || len(r.sim.Sessions()) != 0 {
			t.Errorf("after Close: locks %v, sessions %v; want none", held, r.sim.Sessions())
		}
		if err := s.Close(t.Context()); err != nil {
			t.Errorf("second Close: %v, want nil", err)
		}
		if n := countKind(r.events, EventUnlocked); n != 1 {
			t.Errorf("%d unlocked events, want 1", n)
		}
		calls := r.sim.Calls("/v1/agent/members")
		if _, err := s.Next(t.Context()); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("Next after Close: %v, want a refusal saying the session is closed", err)
		}
		if _, err := s.Execute(t.Context(), planner.Step{Kind: planner.StepSnapshot}); err == nil {
			t.Error("Execute after Close was accepted")
		}
		if r.sim.Calls("/v1/agent/members") != calls || len(r.tr.swapped()) != 0 {
			t.Error("a closed session observed or touched the cluster")
		}
	})
}

// A run that died between stopping a server and starting it leaves a swap
// record; Open finishes that swap (under the lock, before anything is
// decided), and the loop goes on from there.
func TestOpenFinishesTheSwapADeadRunLeftBeforeTheFirstNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		victim := dieOnFirstServerSwap(t, r)
		if _, err := Run(t.Context(), r.cfg); err == nil {
			t.Fatal("the first run did not halt on the server it left down")
		}
		if rec := readSwapRecord(t, r); rec == nil || rec.Node != *victim {
			t.Fatalf("swap record %+v after the dead run, want %s's", rec, *victim)
		}
		first := len(r.tr.swapped())
		s, err := Open(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close(t.Context())
		res := s.Result()
		if len(res.Steps) != 1 || res.Steps[0].Step.Node != *victim || r.sim.Version(*victim) != "1.13.9" {
			t.Fatalf("after Open: steps %v, %s on %s; want the swap of %s finished", res.Steps, *victim, r.sim.Version(*victim), *victim)
		}
		if readSwapRecord(t, r) != nil {
			t.Error("the swap record is still there after Open finished the swap")
		}
		for {
			step, err := s.Next(t.Context())
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if step.Kind == planner.StepDone {
				break
			}
			if step.Node == *victim {
				t.Fatalf("Next chose %s again: %s", *victim, step)
			}
			if _, err := s.Execute(t.Context(), step); err != nil {
				t.Fatalf("Execute(%s): %v", step, err)
			}
		}
		count := map[string]int{}
		for _, sw := range r.tr.swapped()[first:] {
			count[sw.Node]++
		}
		for _, n := range []string{"s1", "s2", "s3", "c1"} {
			if count[n] != 1 || r.sim.Version(n) != "1.13.9" {
				t.Errorf("%s swapped %d times by the session, runs %s; want once, 1.13.9", n, count[n], r.sim.Version(n))
			}
		}
	})
}

// Execute acts only on the step the Session decides now; anything else is
// refused before anything is touched, and the Session goes on.
func TestExecuteRefusesAStaleOrForeignStepTouchingNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		ctx := t.Context()
		s, err := Open(ctx, r.cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close(ctx)
		step, err := s.Next(ctx)
		if err != nil || step.Kind != planner.StepSnapshot {
			t.Fatalf("Next = %v, %v; want the snapshot", step, err)
		}
		if _, err := s.Execute(ctx, step); err != nil {
			t.Fatalf("Execute(%s): %v", step, err)
		}
		step, err = s.Next(ctx)
		if err != nil || step.Kind != planner.StepSwapServer {
			t.Fatalf("Next = %v, %v; want a server swap", step, err)
		}
		weak := step
		weak.Gate = []planner.GateCheck{planner.GateLeaderKnown}
		stopped := step
		stopped.StopMode = planner.StopLeave
		refusals := map[string]planner.Step{
			"a server the cluster does not have":     {Kind: planner.StepSwapServer, Node: "s9", From: "1.12.9", To: "1.13.9"},
			"the decided step with a weaker gate":    weak,
			"the decided step with another stop":     stopped,
			"another server than the decided one":    otherServer(t, step),
			"a snapshot again, already taken":        {Kind: planner.StepSnapshot, Nodes: []string{"s1"}, From: "1.12.9", To: "1.13.9"},
			"a step to another version than decided": func() planner.Step { s := step; s.To = "1.14.8"; return s }(),
		}
		for name, bad := range refusals {
			_, err := s.Execute(ctx, bad)
			var pd *PlanDivergedError
			if !errors.As(err, &pd) || !sameStep(pd.Got, step) {
				t.Errorf("%s: Execute = %v, want a *PlanDivergedError naming %s as the step the cluster needs", name, err, step)
				continue
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "the step given to Execute ("+bad.String()+") is not the one the cluster needs now ("+step.String()+"): ") || !strings.HasSuffix(msg, "; it was not touched: ask Next for the step") {
				t.Errorf("%s: message %q should name both steps and say what to do", name, msg)
			}
		}
		if n := len(r.tr.swapped()); n != 0 {
			t.Fatalf("refused steps swapped %d node(s)", n)
		}
		if !lockHeld(r) {
			t.Fatal("a refused step gave the lock back")
		}

		// Stale: the decided server was swapped by hand meanwhile, and the
		// step is executed after a while; the Session observes again.
		mustDo(t, r.sim.Swap(step.Node, "1.13.9", true))
		time.Sleep(2 * approvalReobserve)
		_, err = s.Execute(ctx, step)
		var pd *PlanDivergedError
		if !errors.As(err, &pd) || pd.Got.Node == step.Node || pd.Got.Kind != planner.StepSwapServer {
			t.Fatalf("stale Execute = %v, want a *PlanDivergedError naming the next server", err)
		}
		if n := len(r.tr.swapped()); n != 0 {
			t.Fatalf("a stale step swapped %d node(s)", n)
		}

		// An embedder's own decision of the same cluster is accepted.
		c, err := Discover(ctx, r.cfg.Consul)
		if err != nil {
			t.Fatal(err)
		}
		c.SnapshotVersion = "1.12.9"
		own, err := planner.Next(c, "1.13.9", planner.Policy{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Execute(ctx, own); err != nil {
			t.Fatalf("Execute(planner.Next's %s): %v", own, err)
		}
		if sw := r.tr.swapped(); len(sw) != 1 || sw[0].Node != own.Node {
			t.Errorf("swaps %+v, want only %s", sw, own.Node)
		}
		for {
			step, err := s.Next(ctx)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if step.Kind == planner.StepDone {
				break
			}
			if _, err := s.Execute(ctx, step); err != nil {
				t.Fatalf("Execute(%s): %v", step, err)
			}
		}
		if len(r.snapshots) != 1 {
			t.Errorf("%d snapshots, want 1", len(r.snapshots))
		}
	})
}

// otherServer is a swap of a server other than step's.
func otherServer(t *testing.T, step planner.Step) planner.Step {
	t.Helper()
	for _, n := range []string{"s1", "s2", "s3"} {
		if n != step.Node {
			o := step
			o.Node = n
			return o
		}
	}
	t.Fatal("no other server")
	return step
}

// A run cancelled while a swapped server is gated halts with what it
// touched, rolls that server back anyway, and ends the Session; Close
// then gives the lock back although the context has ended.
func TestCancellingMidStepHaltsRollsBackAndCloseStillReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		r.cfg.Rollback = true
		ctx, cancel := context.WithCancel(t.Context())
		on := r.cfg.OnEvent
		r.cfg.OnEvent = func(e Event) {
			on(e)
			if e.Kind == EventGateWaiting && e.Step.Kind == planner.StepSwapServer {
				cancel()
			}
		}
		s, err := Open(ctx, r.cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		var step planner.Step
		for {
			if step, err = s.Next(ctx); err != nil {
				t.Fatalf("Next: %v", err)
			}
			if step.Kind == planner.StepSwapServer {
				f.ComeBackUnhealthy(step.Node)
			}
			if _, err = s.Execute(ctx, step); err != nil {
				break
			}
		}
		var h *HaltError
		if !errors.As(err, &h) || !errors.Is(err, context.Canceled) || h.Step.Node != step.Node {
			t.Fatalf("Execute = %v, want a *HaltError of %s wrapping context.Canceled", err, step)
		}
		if len(h.Touched) != 1 || h.Touched[0].Node != step.Node || !h.Touched[0].Stopped || h.Touched[0].Gated {
			t.Errorf("touched %+v, want %s stopped and not gated", h.Touched, step.Node)
		}
		if !h.RolledBack {
			t.Errorf("%s not rolled back after the cancel: %v", step.Node, h.RollbackErr)
		}
		if _, err := s.Next(t.Context()); !errors.Is(err, context.Canceled) || !errors.As(err, &h) {
			t.Errorf("Next after the halt = %v, want the ended session's halt", err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if held := r.sim.HeldLocks(); len(held) != 0 {
			t.Errorf("locks %v held after Close", held)
		}
	})
}

// The renewal notices a lost lock only every few seconds: a lock lost
// during the last step must not let the run report done. The old runner
// reported done here.
func TestALockLostDuringTheLastStepIsReportedNotDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		inner := r.tr.onSwap
		r.tr.onSwap = func(node, version string, ok bool) {
			inner(node, version, ok)
			if node == "s1" { // the leader, swapped last
				for _, id := range r.sim.Sessions() {
					r.sim.InvalidateSession(id)
				}
			}
		}
		res, err := Run(t.Context(), r.cfg)
		if !errors.Is(err, ErrLockLost) {
			t.Fatalf("Run = %v, want ErrLockLost", err)
		}
		if k := r.kinds(); slices.Contains(k, EventDone) || k[len(k)-1] != EventHalted {
			t.Errorf("events %v: want a halt, not done", k)
		}
		if v := r.sim.Version("s1"); v != "1.13.9" || len(res.Touched) != 3 {
			t.Errorf("s1 on %s, touched %v: want the three servers swapped", v, res.Touched.Nodes())
		}
		if got, ok := TouchedBy(err); !ok || len(got) != 3 {
			t.Errorf("TouchedBy = %v, %v; want the three servers", got, ok)
		}
	})
}

func TestASessionSeesItsLockLostBeforeItReportsDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 1, 0)
		r.cfg.Policy.NoSnapshot = true
		s, err := Open(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close(t.Context())
		step, err := s.Next(t.Context())
		if err != nil || step.Kind != planner.StepSwapServer {
			t.Fatalf("Next = %v, %v; want the swap of the only server", step, err)
		}
		if _, err := s.Execute(t.Context(), step); err != nil {
			t.Fatalf("Execute: %v", err)
		}
		for _, id := range r.sim.Sessions() {
			r.sim.InvalidateSession(id)
		}
		if step, err := s.Next(t.Context()); !errors.Is(err, ErrLockLost) {
			t.Fatalf("Next = %v, %v; want ErrLockLost, not done", step, err)
		}
	})
}

func TestOpenRefusesRunsOwnSettingsTouchingNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		cfg := r.cfg
		cfg.MaxSteps = 1
		cfg.DryRun = true
		cfg.BeforeStep = func(context.Context, StepInfo) (StepDecision, error) { return Approve, nil }
		s, err := Open(t.Context(), cfg)
		if s != nil || err == nil {
			t.Fatalf("Open = %v, %v; want a refusal", s, err)
		}
		for _, field := range []string{"BeforeStep", "MaxSteps", "DryRun"} {
			if !strings.Contains(err.Error(), "config "+field) {
				t.Errorf("Open's error %q does not name %s", err, field)
			}
		}
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("Open's error is not a *ConfigError: %T", err)
		}
		if len(r.sim.Sessions()) != 0 || r.sim.Calls("/v1/agent/members") != 0 {
			t.Error("a refused Open touched or observed the cluster")
		}
	})
}

// A refused plan is refused by Open, which then holds nothing.
func TestOpenRefusesARefusedPlanHavingOnlyRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0, consultest.WithStableSince(time.Now()))
		mustDo(t, r.sim.SetVoter("s3", false))
		s, err := Open(t.Context(), r.cfg)
		var refused *planner.RefusedError
		if s != nil || !errors.As(err, &refused) {
			t.Fatalf("Open = %v, %v; want a *planner.RefusedError", s, err)
		}
		if n := r.sim.Calls("/v1/session/create"); n != 0 {
			t.Errorf("a refused Open created %d session(s)", n)
		}
	})
}

// validateFails refuses every swap in phase validate: the transport
// touched nothing.
type validateFails struct{ *fakeTransport }

func (v validateFails) Swap(_ context.Context, req transport.SwapRequest) error {
	return &transport.SwapError{Node: req.Node, Phase: transport.PhaseValidate, To: req.To, Err: errors.New("no such host in the inventory")}
}

// The error contract: a step that failed before it touched anything is a
// *StepRefusedError (fix the cause, run again); one that touched a node is
// a *HaltError whose record names the node (look at it first).
func TestARefusalBeforeActingAndAFailureAfterActingAreDistinctErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Transport = validateFails{r.tr}
		_, err := Run(t.Context(), r.cfg)
		var sr *StepRefusedError
		var h *HaltError
		if !errors.As(err, &sr) || errors.As(err, &h) || sr.Step.Kind != planner.StepSwapServer {
			t.Fatalf("a swap refused in phase validate: err = %v (%T), want a *StepRefusedError of the server swap and no *HaltError", err, err)
		}
		if got, ok := TouchedBy(err); !ok || len(got) != 0 {
			t.Errorf("TouchedBy = %v, %v; want an empty record", got, ok)
		}
		if !strings.Contains(err.Error(), "nothing of that step was touched") {
			t.Errorf("message %q does not say nothing was touched", err)
		}

		r = newRunRig(t, 3, 0)
		r.tr.failNext["*"] = errors.New("disk full") // in phase start: stopped, not started
		_, err = Run(t.Context(), r.cfg)
		if !errors.As(err, &h) || errors.As(err, &sr) {
			t.Fatalf("a swap that failed in phase start: err = %v (%T), want a *HaltError and no *StepRefusedError", err, err)
		}
		if got, ok := TouchedBy(err); !ok || len(got) != 1 || got[0].Node != h.Step.Node || !got[0].Stopped || got[0].Started {
			t.Errorf("TouchedBy = %+v, %v; want %s stopped and not started", got, ok, h.Step.Node)
		}
	})
}

// A ServerAPI that wraps its Consul the usual Go way loses EraReader, which
// the gates of the era before 0.7 read each server's state through: the
// first server swap is refused before it touches anything, naming the fix.
func TestAServerAPIWithoutEraReaderIsRefusedBeforeAPre07ServerIsSwapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 1, "0.4.1", consultest.WithEra(consultest.Era04), consultest.WithStableSince(time.Now().Add(-time.Hour)))
		tr := newFakeTransport(func(node, version string, ok bool) { mustDo(t, sim.Swap(node, version, ok)) })
		servers := simServers(t, sim)
		_, err := Run(t.Context(), Config{
			Consul: inProcessConsul(t, sim), Transport: tr, Target: "0.5.2",
			Snapshot: SnapshotDir(t.TempDir()),
			ServerAPI: func(node, addr string) (Consul, error) {
				c, err := servers(node, addr)
				return struct{ Consul }{c}, err // a wrapper keeps Consul's 9 methods only
			},
			GateTimeout: time.Minute,
		})
		var sr *StepRefusedError
		var ce *ConfigError
		if !errors.As(err, &sr) || !errors.As(err, &ce) || ce.Field != "ServerAPI" || sr.Step.Kind != planner.StepSwapServer {
			t.Fatalf("Run = %v, want a *StepRefusedError of the first server swap wrapping a *ConfigError on ServerAPI", err)
		}
		if !strings.Contains(err.Error(), "does not implement upgrade.EraReader") || !strings.Contains(err.Error(), "upgrade.Intercept") {
			t.Errorf("message %q should name the missing EraReader and the fix", err)
		}
		if n := len(tr.swapped()); n != 0 {
			t.Errorf("%d node(s) swapped, want none", n)
		}
	})
}

// A Locker of the embedder's own returns a Lock it made: giving it back
// must not panic (it used to call a nil release).
func TestALockMadeOutsideThePackageReleasesWithoutPanicking(t *testing.T) {
	l := &Lock{Key: "k"}
	if err := l.Release(t.Context()); err != nil {
		t.Errorf("Release = %v, want nil", err)
	}
}

// An embedder may decide the first step itself (planner.Next of Discover's
// cluster) and Execute it without asking Next: the Session then does not
// hand out that step again.
func TestAStepExecutedWithoutNextIsNotHandedOutAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Policy.NoSnapshot = true
		s, err := Open(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close(t.Context())
		c, err := Discover(t.Context(), r.cfg.Consul)
		mustDo(t, err)
		first, err := planner.Next(c, "1.13.9", r.cfg.Policy)
		mustDo(t, err)
		if _, err := s.Execute(t.Context(), first); err != nil {
			t.Fatalf("Execute(%s): %v", first, err)
		}
		next, err := s.Next(t.Context())
		if err != nil || sameStep(next, first) {
			t.Fatalf("Next = %s, %v; want the step after %s", next, err, first)
		}
	})
}
