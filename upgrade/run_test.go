package upgrade

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// runRig is a simulated cluster, a fake transport wired to it, and a config
// that records events and snapshots.
type runRig struct {
	sim       *consultest.Cluster
	tr        *fakeTransport
	cfg       Config
	events    []Event
	snapshots []string // versions snapshots were taken on
}

// newRunRig builds the rig on a cluster of 1.12.9 agents that has been
// stable for an hour and serves a valid snapshot; opts come on top.
func newRunRig(t *testing.T, servers, clients int, opts ...consultest.Option) *runRig {
	return newRunRigAt(t, "1.12.9", servers, clients, opts...)
}

// newRunRigAt is newRunRig on agents of version, aiming at 1.13.9.
func newRunRigAt(t *testing.T, version string, servers, clients int, opts ...consultest.Option) *runRig {
	opts = append([]consultest.Option{
		consultest.WithStableSince(time.Now().Add(-time.Hour)),
		consultest.WithSnapshot(makeSnapshot(t, snapshotFiles{})),
	}, opts...)
	r := &runRig{sim: consultest.NewCluster(servers, clients, version, opts...)}
	r.tr = newFakeTransport(func(node, version string, ok bool) {
		if err := r.sim.Swap(node, version, ok); err != nil {
			t.Error(err)
		}
	})
	r.cfg = Config{
		Consul:    inProcessConsul(t, r.sim),
		Transport: r.tr,
		Target:    "1.13.9",
		Snapshot: func(_ context.Context, _, v string) (SnapshotSink, error) {
			r.snapshots = append(r.snapshots, v)
			return &memSink{}, nil
		},
		OnEvent:     func(e Event) { r.events = append(r.events, e) },
		GateTimeout: time.Minute,
	}
	return r
}

func (r *runRig) kinds() []EventKind {
	var out []EventKind
	for _, e := range r.events {
		if e.Kind != EventGateWaiting {
			out = append(out, e.Kind)
		}
	}
	return out
}

func TestRunTakesThreeServersAndTheirClientsToTheTargetWithTheLeaderLast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		for _, n := range []string{"s1", "s2", "s3", "c1", "c2"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s after the run, want 1.13.9", n, v)
			}
		}
		var servers []string
		for _, s := range r.tr.swapped() {
			if s.Role == transport.RoleServer {
				servers = append(servers, s.Node)
				if s.From != "1.12.9" || s.To != "1.13.9" {
					t.Errorf("swap %+v, want 1.12.9 -> 1.13.9", s)
				}
			}
		}
		if len(servers) != 3 || servers[2] != "s1" {
			t.Errorf("servers swapped in order %v, want the leader s1 last", servers)
		}
		if len(r.snapshots) != 1 || r.snapshots[0] != "1.12.9" {
			t.Errorf("snapshots taken on %v, want one, on 1.12.9", r.snapshots)
		}
		if res.Baseline.FailureTolerance != 1 || res.Baseline.ServerStabilizationTime != 3*time.Second {
			t.Errorf("baseline = %+v, want tolerance 1 and the simulated 3s stabilization", res.Baseline)
		}
		if len(res.Steps) < 5 || res.Steps[0].Step.Kind != planner.StepSnapshot || res.Steps[0].Snapshot == nil {
			t.Errorf("steps = %+v, want a verified snapshot first and then at least 3 server swaps and a client wave", res.Steps)
		}
		for _, s := range res.Cluster.Servers {
			if s.Version != "1.13.9" {
				t.Errorf("final cluster server %+v not on the target", s)
			}
		}
	})
}

func TestRunReportsEventsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		k := r.kinds()
		if len(k) < 8 || k[0] != EventRunStarted || k[1] != EventLocked || k[2] != EventPreflight || k[3] != EventPreflight || k[4] != EventPreflight || k[len(k)-3] != EventAutopilotRestored || k[len(k)-2] != EventUnlocked || k[len(k)-1] != EventDone {
			t.Fatalf("events %v should start with run-started, locked, preflight (binaries, agent configuration, the leader's log) and end with autopilot-restored, unlocked, done", k)
		}
		// Between them: step-started, [lock-moved], [autopilot-pinned
		// before the first server stop], [snapshot-saved, backup-record],
		// step-done, per step.
		steps, pinned := 0, 0
		for i := 5; i < len(k)-3; {
			if k[i] != EventStepStarted {
				t.Fatalf("event %d is %s, want step-started (events %v)", i, k[i], k)
			}
			i++
			if k[i] == EventLockMoved {
				i++
			}
			if k[i] == EventAutopilotPinned {
				i++
				pinned++
			}
			if k[i] == EventSnapshotSaved {
				i++
				if k[i] != EventBackupRecord {
					t.Fatalf("event %d is %s, want backup-record after the snapshot (events %v)", i, k[i], k)
				}
				i++
			}
			if k[i] != EventStepDone {
				t.Fatalf("event %d is %s, want step-done (events %v)", i, k[i], k)
			}
			i++
			steps++
		}
		if steps != len(res.Steps) || pinned != 1 {
			t.Errorf("%d step-started/step-done pairs, %d steps in the result, %d autopilot-pinned (want 1)", steps, len(res.Steps), pinned)
		}
		var last time.Time
		waited := false
		for _, e := range r.events {
			if e.Time.Before(last) {
				t.Errorf("event %s at %s is earlier than the one before it", e.Kind, e.Time)
			}
			last = e.Time
			if e.Kind == EventGateWaiting {
				waited = true
				if e.Condition == "" || e.Detail == "" {
					t.Errorf("gate-waiting event without condition or detail: %+v", e)
				}
			}
		}
		if !waited {
			t.Errorf("no gate-waiting event although each restarted server is unhealthy for 2s")
		}
	})
}

func TestRunRefusedPlanTouchesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		r.cfg.Policy.Rules = []planner.Rule{{
			ID: "change-freeze", Kind: planner.KindPrecheck, Severity: planner.Blocking, Scope: planner.ScopeCluster,
			Summary: "no upgrades during the change freeze", Hint: "wait until the freeze ends", URL: "https://example.com/freeze",
		}}
		_, err := Run(t.Context(), r.cfg)
		var refused *planner.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("err = %v, want *planner.RefusedError", err)
		}
		if n := len(r.tr.swapped()); n != 0 {
			t.Errorf("the transport saw %d swap(s), want none", n)
		}
		if n := r.sim.Calls("/v1/snapshot"); n != 0 || len(r.snapshots) != 0 {
			t.Errorf("a refused plan took %d snapshot(s)", n)
		}
		if k := r.kinds(); !slices.Equal(k, []EventKind{EventRunStarted, EventHalted}) {
			t.Errorf("events %v, want run-started, halted", k)
		}
	})
}

func TestRunHaltsOnAFailedSwapAndTouchesNothingElse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.tr.failNext["*"] = transport.ErrNotRunning
		_, err := Run(t.Context(), r.cfg)
		var h *HaltError
		if !errors.As(err, &h) || h.RolledBack {
			t.Fatalf("err = %v, want a *HaltError without rollback", err)
		}
		if !errors.Is(err, transport.ErrNotRunning) {
			t.Errorf("err %v does not wrap the transport's error", err)
		}
		if swaps := r.tr.swapped(); len(swaps) != 1 || swaps[0].Node != h.Step.Node {
			t.Errorf("swaps = %+v, want only the failed one (%s)", swaps, h.Step.Node)
		}
		if len(r.tr.rollbacks) != 0 {
			t.Errorf("rolled back %v without Config.Rollback", r.tr.rollbacks)
		}
		if k := r.kinds(); k[len(k)-1] != EventHalted {
			t.Errorf("last event %s, want halted", k[len(k)-1])
		}
	})
}

func TestRunWithRollbackPutsTheFailedServerBackAndWaitsUntilItIsHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Rollback = true
		r.tr.failNext["*"] = transport.ErrNotRunning
		_, err := Run(t.Context(), r.cfg)
		var h *HaltError
		if !errors.As(err, &h) {
			t.Fatalf("err = %v, want *HaltError", err)
		}
		if !h.RolledBack || !slices.Equal(h.RolledBackNodes, []string{h.Step.Node}) {
			t.Fatalf("HaltError %+v, want %s rolled back", h, h.Step.Node)
		}
		if !slices.Equal(r.tr.rollbacks, []string{h.Step.Node}) {
			t.Errorf("rollbacks = %v, want only %s", r.tr.rollbacks, h.Step.Node)
		}
		for _, n := range r.sim.Nodes() {
			if n.Role == transport.RoleServer && n.Version != "1.12.9" {
				t.Errorf("%s runs %s, want every server on 1.12.9 after the rollback", n.Name, n.Version)
			}
		}
		// Healthy again: the rolled-back server is up and voting.
		if n, _ := r.sim.Node(h.Step.Node); !n.Healthy {
			t.Errorf("%s is not healthy when Run returns", h.Step.Node)
		}
		if !strings.Contains(err.Error(), "rolled back "+h.Step.Node) {
			t.Errorf("message %q does not say what was rolled back", err)
		}
		k := r.kinds()
		if !slices.Equal(k[len(k)-4:], []EventKind{EventRolledBack, EventAutopilotRestored, EventUnlocked, EventHalted}) {
			t.Errorf("events end with %v, want rolled-back, autopilot-restored, unlocked, halted (the terminal event last)", k)
		}
	})
}

func TestRunHaltsWhenAGateFailsAndDoesNotSwapTheNextServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.tr.onSwap = func(node, version string, ok bool) {
			mustDo(t, r.sim.Swap(node, version, ok))
			mustDo(t, r.sim.SetNeverHealthy(node, true))
		}
		_, err := Run(t.Context(), r.cfg)
		var ge *GateError
		if !errors.As(err, &ge) || ge.Condition != planner.GateAutopilotHealthy {
			t.Fatalf("err = %v, want a halt on the autopilot-healthy gate", err)
		}
		if n := len(r.tr.swapped()); n != 1 {
			t.Errorf("%d swaps, want 1: the run must not cascade past a failed gate", n)
		}
	})
}

func TestRunDryRunReturnsThePlanAndTouchesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		r.cfg.DryRun = true
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Plan == nil || len(res.Plan.Steps) < 4 {
			t.Fatalf("plan = %+v, want the snapshot and the server and client steps", res.Plan)
		}
		if n := len(r.tr.swapped()); n != 0 {
			t.Errorf("a dry run swapped %d node(s)", n)
		}
		if n := r.sim.Calls("/v1/snapshot") + r.sim.Calls("/v1/operator/raft/transfer-leader"); n != 0 {
			t.Errorf("a dry run made %d snapshot/transfer call(s)", n)
		}
		if last := res.Plan.Steps[len(res.Plan.Steps)-1]; last.Kind == planner.StepSwapServer && last.Node != "s1" {
			t.Errorf("plan's last server step is %s, want the leader s1 last", last.Node)
		}
	})
}

func TestRunEndsCleanlyAtMaxSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.MaxSteps = 2
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("err = %v, want nil: reaching MaxSteps ends a run cleanly", err)
		}
		if len(res.Steps) != 2 || !res.Stopped {
			t.Errorf("%d steps done, stopped %v; want 2 and stopped", len(res.Steps), res.Stopped)
		}
		// snapshot, s2, s3, s1: two done, two left.
		if len(res.Remaining) != 2 || res.Remaining[1].Node != "s1" {
			t.Errorf("remaining %v, want the two server swaps left, the leader s1 last", res.Remaining)
		}
		if n := len(r.tr.swapped()); n != 1 {
			t.Errorf("%d swaps, want 1 (the snapshot and one server)", n)
		}
		if k := r.kinds(); k[len(k)-1] != EventStopped || k[len(k)-2] != EventUnlocked {
			t.Errorf("events %v should end with unlocked, stopped", k)
		}
	})
}

// transferRig is a 3-server simulated cluster on 1.15.4 whose followers s2
// and s3 already run 1.16.1, with s1 leading: the moment before the leader's
// swap, when leadership is handed over.
func transferRig(t *testing.T) (*runRig, *runner, planner.Step) {
	t.Helper()
	r := newRunRig(t, 3, 0, consultest.WithStableSince(time.Now().Add(-time.Hour)))
	for _, n := range []string{"s2", "s3"} {
		if err := r.sim.Swap(n, "1.16.1", true); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Minute) // restarted servers become healthy again
	rn := &runner{cfg: r.cfg, em: emitter{on: r.cfg.OnEvent}, base: base3}
	step := planner.Step{Kind: planner.StepTransferLeader, Node: "s1", Target: "s3", From: "1.15.4", To: "1.16.1", Gate: []planner.GateCheck{planner.GateLeaderKnown}}
	return r, rn, step
}

func TestRunTransfersLeadershipToTheTargetsRaftID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rn, step := transferRig(t)
		if _, h := rn.do(t.Context(), planner.Cluster{}, step); h != nil {
			t.Fatalf("transfer-leader: %v", h)
		}
		if !slices.Equal(r.sim.Transfers(), []string{"id-s3"}) || r.sim.Leader() != "s3" {
			t.Errorf("transfers %v, leader %s; want one transfer to id-s3 and s3 leading", r.sim.Transfers(), r.sim.Leader())
		}
	})
}

// Raft answers a transfer once it has told the target to campaign; the
// target may still lose. The runner waits for the named target to lead and
// asks again when it does not, instead of trusting the answer. Here s2
// still runs the old version, so leadership landing on s2 does not do.
func TestRunRetriesATransferThatDidNotMoveLeadership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0, consultest.WithStableSince(time.Now().Add(-time.Hour)))
		if err := r.sim.Swap("s3", "1.16.1", true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		rn := &runner{cfg: r.cfg, em: emitter{on: r.cfg.OnEvent}, base: base3}
		step := planner.Step{Kind: planner.StepTransferLeader, Node: "s1", Target: "s3", From: "1.15.4", To: "1.16.1", Gate: []planner.GateCheck{planner.GateLeaderKnown}}
		if err := r.sim.SetTransferMisses("", "s2"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, h := rn.do(t.Context(), planner.Cluster{}, step); h != nil {
			t.Fatalf("transfer-leader: %v", h)
		}
		// The miss that stayed waits out transferSettle; the one that
		// landed on s2 is seen within about transferElsewhere.
		if el := time.Since(start); el < transferSettle || el > transferSettle+transferElsewhere+2*time.Second {
			t.Errorf("the transfer took %s, want about %s + %s: a transfer that landed elsewhere is asked again at once", el, transferSettle, transferElsewhere)
		}
		if got := r.sim.Transfers(); !slices.Equal(got, []string{"id-s3", "id-s3", "id-s3"}) {
			t.Errorf("transfers %v, want three asks for id-s3 (stayed on s1, landed on the old s2, then s3)", got)
		}
		if r.sim.Leader() != "s3" {
			t.Errorf("leader %s, want s3", r.sim.Leader())
		}
	})
}

// Leadership that lands on another server already on the new version
// serves the transfer: the old leader will be swapped as a follower, and
// asking again would only move leadership once more (seen on loaded real
// 1.15.4 -> 1.16.1 runs, which halted after three asks).
func TestRunAcceptsATransferThatLandedOnAnotherUpgradedServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rn, step := transferRig(t)
		if err := r.sim.SetTransferMisses("s2"); err != nil {
			t.Fatal(err)
		}
		if _, h := rn.do(t.Context(), planner.Cluster{}, step); h != nil {
			t.Fatalf("transfer-leader: %v", h)
		}
		if got := r.sim.Transfers(); !slices.Equal(got, []string{"id-s3"}) || r.sim.Leader() != "s2" {
			t.Errorf("transfers %v, leader %s; want one ask and s2 (on 1.16.1) leading", got, r.sim.Leader())
		}
		var said bool
		for _, e := range r.events {
			said = said || strings.Contains(e.Detail, "leadership went to s2 instead of s3; s2 also runs 1.16.1")
		}
		if !said {
			t.Error("no event says the transfer landed on s2, also on the new version")
		}
	})
}

// A transfer that never takes halts the run with a *TransferError naming
// where leadership is, and the old leader is not stopped.
func TestRunHaltsWhenLeadershipNeverMoves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rn, step := transferRig(t)
		if err := r.sim.SetTransferMisses("", "", "", "", ""); err != nil {
			t.Fatal(err)
		}
		_, h := rn.do(t.Context(), planner.Cluster{}, step)
		var te *TransferError
		if h == nil || !errors.As(h, &te) {
			t.Fatalf("got %v, want a halt wrapping *TransferError", h)
		}
		if te.Attempts != transferAttempts || te.Leader != "s1" {
			t.Errorf("attempts %d, leader %q; want %d and s1", te.Attempts, te.Leader, transferAttempts)
		}
		if !strings.Contains(h.Error(), "the old leader was not stopped") {
			t.Errorf("message %q does not say the old leader was left alone", h.Error())
		}
		if n := len(r.tr.swapped()); n != 0 {
			t.Errorf("the transport was called %d times, want 0", n)
		}
		if r.sim.Leader() != "s1" {
			t.Errorf("leader %s, want s1 still", r.sim.Leader())
		}
	})
}

// Under writes a real transfer often loses its election: the target
// campaigns one entry behind, the others refuse it, and an election
// timeout later they elect the old leader again (seen in CI on 1.15.4 ->
// 1.16.1, three times in a row). The runner asks again as soon as the old
// leader is back, not after transferSettle.
func TestRunAsksAgainAtOnceWhenTheTargetLosesItsElection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rn, step := transferRig(t)
		const election = 3 * time.Second
		for range 2 {
			if err := r.sim.SetTransferLostElection(election); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		if _, h := rn.do(t.Context(), planner.Cluster{}, step); h != nil {
			t.Fatalf("transfer-leader: %v", h)
		}
		if got := r.sim.Transfers(); !slices.Equal(got, []string{"id-s3", "id-s3", "id-s3"}) || r.sim.Leader() != "s3" {
			t.Errorf("transfers %v, leader %s; want three asks for id-s3 (two lost elections, then s3)", got, r.sim.Leader())
		}
		// Each lost election is seen once the old leader has been back for
		// transferElsewhere; a runner waiting out transferSettle per ask
		// would take 30s.
		if el, most := time.Since(start), 2*(election+transferElsewhere+2*time.Second); el > most {
			t.Errorf("the transfer took %s, want under %s: a lost election is asked again at once", el, most)
		}
		var said int
		for _, e := range r.events {
			if strings.Contains(e.Detail, "(the last: "+ErrTransferElectionLost.Error()+": s1 leads again)") {
				said++
			}
		}
		if said != 2 {
			t.Errorf("%d events name the lost election as the reason to ask again, want 2", said)
		}
	})
}

// A target that loses every election halts the run with the old leader up
// and the reason wrapped.
func TestRunHaltsWhenTheTargetLosesEveryElection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rn, step := transferRig(t)
		for range transferAttempts {
			if err := r.sim.SetTransferLostElection(5 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		_, h := rn.do(t.Context(), planner.Cluster{}, step)
		var te *TransferError
		if h == nil || !errors.As(h, &te) || !errors.Is(h, ErrTransferElectionLost) {
			t.Fatalf("got %v, want a halt wrapping *TransferError and ErrTransferElectionLost", h)
		}
		if te.Attempts != transferAttempts || te.Leader != "s1" || r.sim.Leader() != "s1" {
			t.Errorf("attempts %d, leader %q (simulated %s); want %d and s1", te.Attempts, te.Leader, r.sim.Leader(), transferAttempts)
		}
		if n := len(r.tr.swapped()); n != 0 {
			t.Errorf("the transport was called %d times, want 0", n)
		}
	})
}

// The target must be on the new version: a transfer to a server that still
// runs the old one is never asked for.
func TestRunDoesNotTransferToAServerOnTheOldVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rn, step := transferRig(t)
		step.Target = "s2"
		if err := r.sim.Swap("s2", "1.15.4", true); err != nil {
			t.Fatal(err)
		}
		_, h := rn.do(t.Context(), planner.Cluster{}, step)
		var te *TransferError
		if h == nil || !errors.As(h, &te) || !errors.Is(h, ErrTransferNotReady) {
			t.Fatalf("got %v, want *TransferError wrapping ErrTransferNotReady", h)
		}
		if len(r.sim.Transfers()) != 0 || te.Attempts != 0 {
			t.Errorf("transfers %v (attempts %d), want none", r.sim.Transfers(), te.Attempts)
		}
	})
}

// A resumed run whose target already leads does nothing.
func TestRunTransferIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rn, step := transferRig(t)
		if err := r.sim.SetLeader("s3"); err != nil {
			t.Fatal(err)
		}
		if _, h := rn.do(t.Context(), planner.Cluster{}, step); h != nil {
			t.Fatalf("transfer-leader: %v", h)
		}
		if len(r.sim.Transfers()) != 0 {
			t.Errorf("transfers %v, want none: s3 already leads", r.sim.Transfers())
		}
	})
}

func TestRunSwapsAClientWaveWithBoundedConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		inFlight, peak := 0, 0
		tr := transportFunc(func(ctx context.Context, req transport.SwapRequest) error {
			mu.Lock()
			inFlight++
			peak = max(peak, inFlight)
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			inFlight--
			mu.Unlock()
			return nil
		})
		rn := &runner{cfg: Config{Transport: tr, ClientConcurrency: 3}}
		nodes := []string{"c1", "c2", "c3", "c4", "c5", "c6", "c7"}
		start := time.Now()
		failed, err := rn.swapClients(t.Context(), planner.Cluster{}, planner.Step{Kind: planner.StepSwapClients, Nodes: nodes, To: "1.13.9"})
		if err != nil || len(failed) != 0 {
			t.Fatalf("swapClients: %v %v", failed, err)
		}
		if peak != 3 {
			t.Errorf("peak concurrency %d, want 3", peak)
		}
		if el := time.Since(start); el != 3*time.Second {
			t.Errorf("7 swaps of 1s, 3 at a time, took %s, want 3s", el)
		}
	})
}

func TestSameStepSpotsARepeatedStep(t *testing.T) {
	a := planner.Step{Kind: planner.StepSwapServer, Node: "s2", From: "1.12.9", To: "1.13.9", Reason: "first"}
	b := a
	b.Reason = "again"
	if !sameStep(a, b) {
		t.Errorf("the same swap with another reason should count as the same step")
	}
	b.Node = "s3"
	if sameStep(a, b) {
		t.Errorf("swaps of different servers are different steps")
	}
}

func TestValidateDoesNotChangeTheConfigAndAcceptsACompleteOne(t *testing.T) {
	r := newRunRig(t, 1, 0)
	cfg := r.cfg
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if cfg.GateTimeout != r.cfg.GateTimeout || cfg.MaxSteps != 0 {
		t.Errorf("Validate changed the config")
	}
	cfg.Rollback = true
	cfg.Transport = transportFunc(func(context.Context, transport.SwapRequest) error { return nil })
	err := cfg.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "Rollback" {
		t.Errorf("Rollback with a transport that cannot roll back: err = %v, want a ConfigError on Rollback", err)
	}
}

type transportFunc func(ctx context.Context, req transport.SwapRequest) error

func (f transportFunc) Swap(ctx context.Context, req transport.SwapRequest) error { return f(ctx, req) }

func TestRunLogsEveryEventThroughTheLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		var buf strings.Builder
		r.cfg.Logger = slog.New(slog.NewTextHandler(&buf, nil))
		r.tr.failNext["*"] = transport.ErrNotRunning
		Run(t.Context(), r.cfg)
		out := buf.String()
		for _, want := range []string{"event=run-started", "event=step-started", "event=snapshot-saved", "event=halted", "level=ERROR", `step="swap-server s`} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %s:\n%s", want, out)
			}
		}
		if n := strings.Count(out, "\n"); n != len(r.events) {
			t.Errorf("%d log lines for %d events", n, len(r.events))
		}
	})
}

// Right after a step whose gate passed, a server can read as unhealthy for
// a moment (a new leader's autopilot rebuilds its view). The run observes
// again instead of halting on the refused plan, and goes on once it is
// healthy; a refusal that lasts still halts it.
func TestRunObservesAgainWhenThePlanIsRefusedForAMomentAfterAStep(t *testing.T) {
	for _, tc := range []struct {
		name    string
		blip    time.Duration
		wantErr bool
	}{
		{"a moment", 5 * time.Second, false},
		{"for good", time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRunRig(t, 3, 0)
				hit := false
				r.cfg.OnEvent = func(e Event) {
					if e.Kind == EventStepDone && e.Step.Kind == planner.StepSwapServer && !hit {
						hit = true
						mustDo(t, r.sim.SetNeverHealthy("s3", true))
						time.AfterFunc(tc.blip, func() { mustDo(t, r.sim.SetNeverHealthy("s3", false)) })
					}
				}
				_, err := Run(t.Context(), r.cfg)
				if !hit {
					t.Fatal("no server swap completed")
				}
				if gotErr := err != nil; gotErr != tc.wantErr {
					t.Fatalf("Run = %v, want error %v", err, tc.wantErr)
				}
				if tc.wantErr && !strings.Contains(err.Error(), "decide the step after") {
					t.Errorf("Run = %v, want the refused plan named", err)
				}
			})
		})
	}
}

// The elections a transfer's own asks start are the step's: a target that
// loses two elections (two more each: its campaign and the old leader's
// return) moves the term by more than MaxTermRise, and raft-term counts
// from the term after the transfer, so the gate passes (seen on a loaded
// real 1.15.4 -> 1.16.1 rehearsal: 2 -> 6, halted as a storm).
func TestATransferThatAskedAgainIsNoElectionStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, rn, step := transferRig(t)
		for range 2 {
			if err := r.sim.SetTransferLostElection(3 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		asks := 0
		onEvent := rn.em.on
		rn.em.on = func(e Event) {
			if e.Kind == EventGateWaiting && strings.Contains(e.Detail, "asking ") {
				asks++
				if asks > 1 {
					r.sim.AddElections(MaxTermRise/2 + 1) // the lost election, split votes, the old leader's return
				}
			}
			if onEvent != nil {
				onEvent(e)
			}
		}
		before := r.sim.Term()
		step = withTermCheck(step)
		if _, h := rn.do(t.Context(), planner.Cluster{}, step); h != nil {
			t.Fatalf("transfer-leader with two lost elections: %v", h)
		}
		if rise := r.sim.Term() - before; rise <= MaxTermRise {
			t.Errorf("the term rose by %d, want more than MaxTermRise (%d) for this test to mean anything", rise, MaxTermRise)
		}
	})
}
