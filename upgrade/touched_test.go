package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// haltTouched returns the record a halt carries, failing the test when err
// is not a *HaltError or its record differs from the Result's.
func haltTouched(t *testing.T, res *Result, err error) Touched {
	t.Helper()
	var h *HaltError
	if !errors.As(err, &h) {
		t.Fatalf("err = %v (%T), want a *HaltError", err, err)
	}
	if !reflect.DeepEqual(h.Touched, res.Touched) {
		t.Errorf("HaltError.Touched %+v differs from Result.Touched %+v", h.Touched, res.Touched)
	}
	if got, ok := TouchedBy(err); !ok || !reflect.DeepEqual(got, res.Touched) {
		t.Errorf("TouchedBy = %+v, %v; want the halt's record", got, ok)
	}
	return h.Touched
}

// failEveryServerNext makes the first server swap fail with err (whichever
// server the planner takes first).
func failEveryServerNext(f *transporttest.Fake, err func(node string) error) {
	for _, n := range []string{"s1", "s2", "s3"} {
		f.FailNext(n, err(n))
	}
}

func TestTheRecordOfACompletedRunNamesEveryNodeStoppedStartedAndGatedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		withFake(r)
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		var nodes []string
		for _, tc := range res.Touched {
			nodes = append(nodes, tc.Node)
			if !tc.Stopped || tc.StopUncertain || !tc.Started || !tc.Gated || tc.Err != "" || tc.Rollback != nil || tc.To != "1.13.9" {
				t.Errorf("touch %+v, want stopped, started on 1.13.9 and gated, nothing uncertain", tc)
			}
		}
		if strings.Join(nodes[:3], ",") != "s2,s3,s1" || len(nodes) != 5 {
			t.Errorf("touched %v, want s2, s3, s1 (the leader last), then the 2 clients", nodes)
		}
		for i, tc := range res.Touched[:3] {
			if tc.Index != i+1 || tc.Role != transport.RoleServer || tc.Step != planner.StepSwapServer || tc.From != "1.12.9" {
				t.Errorf("touch %+v, want server swap 1.12.9 -> 1.13.9 at index %d (after the snapshot)", tc, i+1)
			}
		}
		if d := res.Touched.Down(); len(d) != 0 {
			t.Errorf("Down() = %v after a completed run", d)
		}
		// Each swap's stop and start are events between the step's start
		// and its end.
		var seq []string
		for _, e := range r.events {
			switch e.Kind {
			case EventStepStarted, EventStepDone:
				if e.Step.Kind == planner.StepSwapServer {
					seq = append(seq, string(e.Kind)+" "+e.Step.Node)
				}
			case EventNodeStopped, EventNodeStarted:
				if e.Node == "" || e.Detail == "" {
					t.Errorf("event %+v names no node or says nothing", e)
				}
				if e.Step.Kind == planner.StepSwapServer {
					seq = append(seq, string(e.Kind)+" "+e.Node)
				}
			}
		}
		want := []string{}
		for _, n := range []string{"s2", "s3", "s1"} {
			want = append(want, "step-started "+n, "node-stopped "+n, "node-started "+n, "step-done "+n)
		}
		if !slices.Equal(seq, want) {
			t.Errorf("events\n %v\nwant\n %v", seq, want)
		}
	})
}

func TestASwapThatFailsAtTheStopIsRecordedAsMaybeStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		failEveryServerNext(f, func(n string) error {
			return &transport.SwapError{Node: n, Phase: transport.PhaseStop, To: "1.13.9", Err: errors.New("systemctl stop timed out")}
		})
		res, err := Run(t.Context(), r.cfg)
		touched := haltTouched(t, res, err)
		if len(touched) != 1 {
			t.Fatalf("touched %+v, want the one server whose stop failed", touched)
		}
		tc := touched[0]
		if !tc.Stopped || !tc.StopUncertain || tc.Started || tc.Gated || !strings.Contains(tc.Err, "systemctl stop timed out") {
			t.Errorf("touch %+v, want maybe stopped, not started, not gated, with the error", tc)
		}
		if !strings.Contains(tc.String(), "may have been stopped") || !strings.Contains(err.Error(), "touched by this run: "+tc.Node) {
			t.Errorf("touch says %q and the halt %q; want the uncertain stop said", tc, err)
		}
	})
}

func TestASwapWhoseNewAgentNeverStartsLeavesTheNodeStoppedInTheRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		f.Broken("1.13.9")
		res, err := Run(t.Context(), r.cfg)
		touched := haltTouched(t, res, err)
		if len(touched) != 1 {
			t.Fatalf("touched %+v, want the one server swapped", touched)
		}
		tc := touched[0]
		if !tc.Stopped || tc.StopUncertain || tc.Started || tc.Gated || tc.Err == "" {
			t.Errorf("touch %+v, want stopped (for sure), not started, not gated, with the error", tc)
		}
		if d := touched.Down(); !slices.Equal(d, []string{tc.Node}) {
			t.Errorf("Down() = %v, want [%s]", d, tc.Node)
		}
		if n, _ := f.Node(tc.Node); n.Running {
			t.Errorf("the fake runs %s, the record says it is down", tc.Node)
		}
	})
}

func TestASwapWhoseGateFailsIsRecordedStartedButNotGated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		for _, n := range []string{"s1", "s2", "s3"} {
			f.ComeBackOld(n)
		}
		res, err := Run(t.Context(), r.cfg)
		touched := haltTouched(t, res, err)
		if len(touched) != 1 {
			t.Fatalf("touched %+v, want the one server swapped", touched)
		}
		tc := touched[0]
		if !tc.Stopped || !tc.Started || tc.Gated || !strings.Contains(tc.Err, string(planner.GateVersion)) {
			t.Errorf("touch %+v, want stopped, started, not gated, failed on the version gate", tc)
		}
		if len(touched.Down()) != 0 {
			t.Errorf("Down() = %v for a node that runs", touched.Down())
		}
	})
}

func TestARolledBackSwapIsRecordedWithItsRollback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		f.Broken("1.13.9")
		r.cfg.Rollback = true
		res, err := Run(t.Context(), r.cfg)
		touched := haltTouched(t, res, err)
		if len(touched) != 1 || touched[0].Rollback == nil || touched[0].Rollback.Result != RollbackDone {
			t.Fatalf("touched %+v, want one server with its rollback done", touched)
		}
		if !touched[0].Stopped || touched[0].Started || len(touched.Down()) != 0 {
			t.Errorf("touch %+v (down %v): want stopped, never started on 1.13.9, and not down (rolled back)", touched[0], touched.Down())
		}
		if !strings.Contains(touched.String(), "rolled back, and the cluster is healthy again") {
			t.Errorf("record says %q", touched)
		}
	})
}

func TestARunRefusedOrHaltedBeforeActingHasAnEmptyRecord(t *testing.T) {
	cases := []struct {
		name  string
		setup func(r *runRig, f *transporttest.Fake) (cleanup func())
	}{
		{"a refused plan (a downgrade)", func(r *runRig, f *transporttest.Fake) func() { r.cfg.Target = "1.11.0"; return nil }},
		{"a transport that cannot stage the binary (refused before the stop), with rollback asked for", func(r *runRig, f *transporttest.Fake) func() {
			r.cfg.Rollback = true
			failEveryServerNext(f, func(n string) error {
				return &transport.SwapError{Node: n, Phase: transport.PhaseStage, To: "1.13.9", Err: transport.ErrArtifact}
			})
			return nil
		}},
		{"an approved plan the cluster diverged from", func(r *runRig, f *transporttest.Fake) func() {
			plan, err := planner.Plan(mustDiscover(t, r), "1.13.9", planner.Policy{})
			mustDo(t, err)
			mustDo(t, r.sim.SetLeader("s2"))
			r.cfg.Plan = plan
			return nil
		}},
		{"an upgrade lock held by another run", func(r *runRig, f *transporttest.Fake) func() {
			lock, err := r.cfg.Consul.(Locker).Lock(t.Context(), DefaultLockKey, LockHolder{Holder: "another operator", Target: "1.13.9", Since: time.Now()})
			mustDo(t, err)
			return func() { lock.Release(context.WithoutCancel(t.Context())) }
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRunRig(t, 3, 0)
				f := withFake(r)
				if cleanup := c.setup(r, f); cleanup != nil {
					defer cleanup()
				}
				res, err := Run(t.Context(), r.cfg)
				if err == nil {
					t.Fatal("Run succeeded")
				}
				if len(res.Touched) != 0 {
					t.Errorf("touched %+v by a run that %v", res.Touched, err)
				}
				if got, _ := TouchedBy(err); len(got) != 0 {
					t.Errorf("the error carries %+v", got)
				}
				for _, call := range f.Calls() {
					if call.TouchesState() || call.Op == transporttest.OpRollback {
						t.Errorf("the transport did %s %s", call.Op, call.Node)
					}
				}
				if strings.Contains(err.Error(), "touched by this run") {
					t.Errorf("the error %q claims a touch", err)
				}
			})
		})
	}
}

func TestALockLostBetweenStepsHaltsWithTheRecordOfTheStepsBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0, consultest.WithRestartDelay(10*time.Second))
		f := withFake(r)
		on := r.cfg.OnEvent
		r.cfg.OnEvent = func(e Event) {
			on(e)
			if e.Kind == EventStepDone && e.Step.Node == "s2" { // after the first server swap
				for _, id := range r.sim.Sessions() {
					r.sim.InvalidateSession(id)
				}
			}
		}
		res, err := Run(t.Context(), r.cfg)
		if !errors.Is(err, ErrLockLost) {
			t.Fatalf("err = %v, want ErrLockLost", err)
		}
		var h *StepRefusedError
		if !errors.As(err, &h) {
			t.Fatalf("err = %v (%T), want a *StepRefusedError: nothing of the next step was touched", err, err)
		}
		if got, ok := TouchedBy(err); !ok || !reflect.DeepEqual(got, res.Touched) || !reflect.DeepEqual(h.Touched, res.Touched) {
			t.Errorf("TouchedBy = %+v, %v, StepRefusedError.Touched %+v; want the Result's record %+v", got, ok, h.Touched, res.Touched)
		}
		touched := h.Touched
		// The run notices the loss at its next renewal: the record holds
		// exactly the swaps made until then, each gated, and not the step
		// it halted before.
		swapped := swapsOf(f)
		if !slices.Equal(touched.Nodes(), swapped) || len(swapped) == 0 || len(swapped) == 3 {
			t.Fatalf("touched %v, the transport swapped %v; want the same, some but not all servers", touched.Nodes(), swapped)
		}
		for _, tc := range touched {
			if !tc.Gated {
				t.Errorf("touch %+v not gated", tc)
			}
		}
		if slices.Contains(swapped, h.Step.Node) {
			t.Errorf("halted at %s, which was swapped", h.Step)
		}
		if !strings.Contains(err.Error(), "touched by this run: s2 (swap-server 1.12.9 -> 1.13.9): stopped, started on 1.13.9, gate passed") {
			t.Errorf("halt %q does not say what was touched", err)
		}
	})
}

func TestAnAbortAfterAStepCarriesTheRecordOfThatStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		withFake(r)
		r.cfg.Policy.NoSnapshot = true
		asked := 0
		r.cfg.BeforeStep = func(ctx context.Context, s StepInfo) (StepDecision, error) {
			if asked++; asked == 1 {
				return Approve, nil
			}
			return Abort, nil
		}
		res, err := Run(t.Context(), r.cfg)
		var a *AbortedError
		if !errors.As(err, &a) {
			t.Fatalf("err = %v, want an *AbortedError", err)
		}
		if len(a.Touched) != 1 || a.Touched[0].Node != "s2" || !reflect.DeepEqual(a.Touched, res.Touched) {
			t.Errorf("AbortedError.Touched %+v, Result.Touched %+v; want both [s2]", a.Touched, res.Touched)
		}
	})
}

func TestTheRecordRoundTripsThroughJSON(t *testing.T) {
	in := Touched{
		{Node: "s2", Role: transport.RoleServer, Step: planner.StepSwapServer, Index: 1, From: "1.12.9", To: "1.13.9", Stopped: true, Started: true, Err: "gate failed",
			Rollback: &RollbackOutcome{Result: RollbackFailed, Err: "no Rollback command"}},
		{Node: "s3", Role: transport.RoleServer, Step: planner.StepTransferLeader, Index: 2, Target: "s1", Gated: true},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"node":"s2"`, `"stopped":true`, `"started":true`, `"gated":false`, `"rollback":{"result":"failed","error":"no Rollback command"}`, `"target":"s1"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
	var out Touched
	if err := json.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(in, out) {
		t.Errorf("round trip: %+v, %v; want %+v", out, err, in)
	}
	if got := (Touched{}).String(); got != "nothing was touched" {
		t.Errorf("empty record says %q", got)
	}
}

func TestASnapshotSavedToADirectoryNamesItsFileInTheRecordAndTheEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		withFake(r)
		dir := t.TempDir()
		r.cfg.Snapshot = SnapshotDir(dir)
		r.cfg.MaxSteps = 1
		res, err := Run(t.Context(), r.cfg)
		if err != nil || len(res.Steps) != 1 || res.Steps[0].Snapshot == nil {
			t.Fatalf("Run: %v, steps %+v; want the snapshot step", err, res.Steps)
		}
		path := res.Steps[0].Snapshot.Path
		if filepath.Dir(path) != dir || !strings.HasPrefix(filepath.Base(path), "consul-dc1-1.12.9-") {
			t.Fatalf("Snapshot.Path = %q, want a consul-dc1-1.12.9-*.snap file in %s", path, dir)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("the recorded file: %v", err)
		}
		if res.Steps[0].Snapshots["dc1"].Path != path {
			t.Errorf("Snapshots[dc1].Path = %q, want %q", res.Steps[0].Snapshots["dc1"].Path, path)
		}
		said := false
		for _, e := range r.events {
			said = said || (e.Kind == EventSnapshotSaved && strings.HasSuffix(e.Detail, "saved to "+path))
		}
		if !said {
			t.Errorf("no snapshot-saved event names %s", path)
		}
		if len(res.Touched) != 0 {
			t.Errorf("a snapshot step touched %+v", res.Touched)
		}
	})
}

// Case (a) of a swap record, the node not yet healthy when the run starts:
// its gate waits until it is, and the run decides from the cluster after
// that gate (it decided from the one seen before it, where the node was
// unhealthy, and was refused right after the gate passed). The run only
// gated the node: it is not in the touch record.
func TestARunDecidesFromTheClusterAfterTheGateOfARecordedSwapFoundDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		putSwapRecord(t, r, "s2", "1.13.9")
		mustDo(t, r.sim.Swap("s2", "1.13.9", true))
		time.Sleep(time.Minute)
		mustDo(t, r.sim.SetNeverHealthy("s2", true))
		go func() {
			time.Sleep(20 * time.Second) // healthy a while into the gate
			mustDo(t, r.sim.SetNeverHealthy("s2", false))
		}()
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		for _, n := range []string{"s1", "s2", "s3"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s", n, v)
			}
		}
		if nodes := res.Touched.Nodes(); slices.Contains(nodes, "s2") || len(nodes) != 2 {
			t.Errorf("touched %v, want s1 and s3 (s2 was only gated)", nodes)
		}
	})
}
