package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

const swapKey = "consul-upgrade/swap"

func TestSwapKeyIsNextToTheLock(t *testing.T) {
	for lock, want := range map[string]string{
		"":                    "consul-upgrade/swap",
		"consul-upgrade/lock": "consul-upgrade/swap",
		"ops/upgrades/lock":   "ops/upgrades/swap",
		"upgrade-lock":        "upgrade-lock-swap",
		"ops/swap":            "ops/swap-swap",
	} {
		if got := swapRecordKey(lock); got != want {
			t.Errorf("swapRecordKey(%q) = %q, want %q", lock, got, want)
		}
	}
}

// dieOnFirstServerSwap makes the rig's transport behave, on the first
// server swap, like a host-side script that stopped the server and died:
// the server is left down. The run's gate then times out and it halts
// without a rollback, leaving its swap record as a run that died would. It
// returns the node it stopped.
func dieOnFirstServerSwap(t *testing.T, r *runRig) *string {
	var victim string
	inner := r.tr.onSwap
	first := true
	r.tr.onSwap = func(node, version string, ok bool) {
		if first && strings.HasPrefix(node, "s") {
			first = false
			victim = node
			if err := r.sim.Swap(node, "1.12.9", false); err != nil { // stopped, never started
				t.Error(err)
			}
			return
		}
		inner(node, version, ok)
	}
	return &victim
}

func readSwapRecord(t *testing.T, r *runRig) *SwapRecord {
	t.Helper()
	b, ok := r.sim.KV(swapKey)
	if !ok {
		return nil
	}
	var rec SwapRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("swap record %q: %v", b, err)
	}
	return &rec
}

func swapRecordEvents(r *runRig) []string {
	var out []string
	for _, e := range r.events {
		if e.Kind == EventSwapRecord {
			out = append(out, e.Detail)
		}
	}
	return out
}

// Case (c): a run stopped a server and died before it started it. The
// planner alone refuses that cluster (server-unhealthy); the next run
// finds the record, swaps that server (once), gates it, deletes the
// record and completes.
func TestARunResumesTheSwapOfAServerADeadRunLeftStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		victim := dieOnFirstServerSwap(t, r)
		sawRecord := false
		r.tr.onSwap = func(next func(string, string, bool)) func(string, string, bool) {
			return func(node, version string, ok bool) {
				if rec := readSwapRecord(t, r); rec != nil && rec.Node == node && rec.To == "1.13.9" && rec.Baseline.FailureTolerance == 1 {
					sawRecord = true
				}
				next(node, version, ok)
			}
		}(r.tr.onSwap)
		if _, err := Run(t.Context(), r.cfg); err == nil {
			t.Fatal("the first run did not halt on the server it left down")
		}
		if !sawRecord {
			t.Error("no swap record (with the node, the target and the baseline) was in the KV store while the server was swapped")
		}
		rec := readSwapRecord(t, r)
		if rec == nil || rec.Node != *victim || rec.From != "1.12.9" || rec.To != "1.13.9" || rec.Step.Kind != planner.StepSwapServer {
			t.Fatalf("after the first run the swap record is %+v, want the swap of %s 1.12.9 -> 1.13.9", rec, *victim)
		}
		// Without the record, the planner refuses the cluster.
		if _, err := planner.Next(mustDiscover(t, r), "1.13.9", planner.Policy{}); err == nil {
			t.Fatalf("the planner accepts the cluster with %s down; the test proves nothing", *victim)
		}

		first := len(r.tr.swapped())
		r.events = nil
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("second run: %v", err)
		}
		if len(res.Steps) == 0 || res.Steps[0].Step.Kind != planner.StepSwapServer || res.Steps[0].Step.Node != *victim {
			t.Errorf("second run's steps %v, want the resumed swap of %s first", res.Steps, *victim)
		}
		count := map[string]int{}
		for _, s := range r.tr.swapped()[first:] {
			count[s.Node]++
		}
		for _, n := range []string{"s1", "s2", "s3", "c1"} {
			if count[n] != 1 {
				t.Errorf("the second run swapped %s %d times, want once (%v)", n, count[n], r.tr.swapped()[first:])
			}
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s, want 1.13.9", n, v)
			}
		}
		ev := swapRecordEvents(r)
		if len(ev) != 1 || !strings.HasPrefix(ev[0], "resuming the swap of "+*victim+" to 1.13.9 that an earlier run left unfinished") {
			t.Errorf("swap-record events %q, want one saying the swap of %s is resumed", ev, *victim)
		}
		if readSwapRecord(t, r) != nil {
			t.Error("the swap record is still there after the run completed")
		}
	})
}

func mustDiscover(t *testing.T, r *runRig) planner.Cluster {
	t.Helper()
	c, err := Discover(t.Context(), r.cfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func putSwapRecord(t *testing.T, r *runRig, node, to string) {
	t.Helper()
	step := planner.Step{Kind: planner.StepSwapServer, Node: node, From: "1.12.9", To: to, StopMode: planner.StopTerminate,
		Gate: []planner.GateCheck{planner.GateLeaderKnown, planner.GateVersion, planner.GateVoter, planner.GateAutopilotHealthy}}
	b, err := json.Marshal(SwapRecord{Step: step, Node: node, Role: transport.RoleServer, From: "1.12.9", To: to, Holder: "a dead run", Started: time.Now().UTC(),
		Baseline: Baseline{FailureTolerance: 1, Healthy: true}})
	if err != nil {
		t.Fatal(err)
	}
	r.sim.PutKV(swapKey, b)
}

// Case (a): the node's side finished the swap; the next run gates it,
// deletes the record and does not swap it again.
func TestARecordedSwapThatWasDoneIsGatedAndNotSwappedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		putSwapRecord(t, r, "s2", "1.13.9")
		mustDo(t, r.sim.Swap("s2", "1.13.9", true))
		time.Sleep(time.Minute) // the swap was done a while ago: s2 is back
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.tr.swapped() {
			if s.Node == "s2" {
				t.Errorf("s2, whose recorded swap was done, was swapped again: %v", r.tr.swapped())
			}
		}
		for _, s := range res.Steps {
			if s.Step.Node == "s2" {
				t.Errorf("the run did %s on s2", s.Step)
			}
		}
		if ev := swapRecordEvents(r); len(ev) != 1 || !strings.Contains(ev[0], "the swap was done") {
			t.Errorf("swap-record events %q, want one saying the swap was done", ev)
		}
		if readSwapRecord(t, r) != nil {
			t.Error("the swap record is still there")
		}
	})
}

// Case (b): the swap never stopped the server; the record is deleted and
// the planner swaps it as usual, once.
func TestARecordedSwapThatNeverHappenedIsForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		putSwapRecord(t, r, "s2", "1.13.9")
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range r.tr.swapped() {
			if s.Node == "s2" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("s2 swapped %d times, want once: %v", n, r.tr.swapped())
		}
		if ev := swapRecordEvents(r); len(ev) != 1 || !strings.Contains(ev[0], "the swap never happened") {
			t.Errorf("swap-record events %q, want one saying the swap never happened", ev)
		}
		if readSwapRecord(t, r) != nil {
			t.Error("the swap record is still there")
		}
	})
}

// A record the run must not act on is refused, touching nothing, with the
// key and the fix.
func TestASwapRecordNamingAnUnknownNodeOrVersionIsRefused(t *testing.T) {
	for name, put := range map[string]func(*testing.T, *runRig){
		"unknown node":  func(t *testing.T, r *runRig) { putSwapRecord(t, r, "s9", "1.13.9") },
		"client node":   func(t *testing.T, r *runRig) { putSwapRecord(t, r, "c1", "1.13.9") },
		"other version": func(t *testing.T, r *runRig) { putSwapRecord(t, r, "s2", "1.15.4") },
		"not a record":  func(t *testing.T, r *runRig) { r.sim.PutKV(swapKey, []byte("junk")) },
		"down on a third version": func(t *testing.T, r *runRig) {
			putSwapRecord(t, r, "s2", "1.13.9")
			mustDo(t, r.sim.Swap("s2", "1.12.8", true)) // then stopped below, on 1.12.8
		},
		"not a swap step": func(t *testing.T, r *runRig) { r.sim.PutKV(swapKey, []byte(`{"step":{"kind":"snapshot"}}`)) },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRunRig(t, 3, 1)
				put(t, r)
				mustDo(t, r.sim.Swap("s2", "1.12.9", false)) // s2 down: the record would be acted on
				before, _ := r.sim.KV(swapKey)
				res, err := Run(t.Context(), r.cfg)
				var se *SwapRecordError
				if !errors.As(err, &se) || se.Key != swapKey || !strings.Contains(err.Error(), "consul kv delete "+swapKey) {
					t.Fatalf("err = %v, want a *SwapRecordError naming %s and the fix", err, swapKey)
				}
				if len(r.tr.swapped()) != 0 || len(res.Steps) != 0 || len(r.snapshots) != 0 {
					t.Errorf("a refused run touched the cluster: swaps %v, steps %v, snapshots %v", r.tr.swapped(), res.Steps, r.snapshots)
				}
				if after, _ := r.sim.KV(swapKey); string(after) != string(before) {
					t.Errorf("the record changed from %q to %q", before, after)
				}
				if locks := r.sim.HeldLocks(); len(locks) != 0 {
					t.Errorf("the refused run left the lock held: %v", locks)
				}
			})
		})
	}
}

// A record naming a server that serf no longer lists (removed and reaped)
// says the server is missing, and is refused, touching nothing.
func TestASwapRecordNamingAServerSerfNoLongerListsSaysItIsMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		putSwapRecord(t, r, "s9", "1.13.9")
		mustDo(t, r.sim.Swap("s2", "1.12.9", false)) // s2 down: without the record the planner refuses
		res, err := Run(t.Context(), r.cfg)
		var se *SwapRecordError
		if !errors.As(err, &se) || se.Node != "s9" || !strings.Contains(err.Error(), "s9 is missing: serf lists no such member") {
			t.Fatalf("err = %v, want a *SwapRecordError saying s9 is missing", err)
		}
		if len(r.tr.swapped()) != 0 || len(res.Steps) != 0 || len(r.snapshots) != 0 || len(r.sim.HeldLocks()) != 0 {
			t.Errorf("a refused run touched the cluster: swaps %v, steps %v, snapshots %v, locks %v", r.tr.swapped(), res.Steps, r.snapshots, r.sim.HeldLocks())
		}
	})
}

// NoLock runs neither write nor read the record: a server left down stays
// a refusal of the planner's.
func TestANoLockRunNeitherWritesNorReadsTheSwapRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.NoLock = true
		seen := false
		r.tr.onSwap = func(next func(string, string, bool)) func(string, string, bool) {
			return func(node, version string, ok bool) {
				if _, found := r.sim.KV(swapKey); found {
					seen = true
				}
				next(node, version, ok)
			}
		}(r.tr.onSwap)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatal(err)
		}
		if seen {
			t.Error("a NoLock run wrote a swap record")
		}

		r2 := newRunRig(t, 3, 0)
		r2.cfg.NoLock = true
		putSwapRecord(t, r2, "s2", "1.13.9")
		mustDo(t, r2.sim.Swap("s2", "1.12.9", false))
		_, err := Run(t.Context(), r2.cfg)
		var refused *planner.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("NoLock run with s2 down: err %v, want the planner's refusal", err)
		}
		if len(r2.tr.swapped()) != 0 {
			t.Errorf("a NoLock run acted on the record: %v", r2.tr.swapped())
		}
		if _, found := r2.sim.KV(swapKey); !found {
			t.Error("a NoLock run deleted the swap record")
		}
	})
}

// swapPutFails is the rig's Consul whose KV store refuses the swap record.
type swapPutFails struct{ *apiConsul }

func (s swapPutFails) KVPut(ctx context.Context, key string, value []byte) error {
	if key == swapKey {
		return errors.New("permission denied")
	}
	return s.apiConsul.KVPut(ctx, key, value)
}

// A swap record that cannot be written halts the run before the server is
// stopped: without it a run that died during the swap would leave a server
// no later run finishes.
func TestARunHaltsBeforeTheStopWhenTheSwapRecordCannotBeWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Consul = swapPutFails{r.cfg.Consul.(*apiConsul)}
		res, err := Run(t.Context(), r.cfg)
		var h *StepRefusedError
		if !errors.As(err, &h) || h.Step.Kind != planner.StepSwapServer || !strings.Contains(err.Error(), "not stopped: record the swap in "+swapKey) {
			t.Fatalf("err = %v, want a *StepRefusedError of the first server swap naming the record", err)
		}
		if len(r.tr.swapped()) != 0 {
			t.Errorf("swaps %v, want none: the server must not be touched", r.tr.swapped())
		}
		if len(res.Steps) != 1 || res.Steps[0].Step.Kind != planner.StepSnapshot {
			t.Errorf("steps %v, want only the snapshot", res.Steps)
		}
	})
}

// A dry run says that a swap record waits: the run proper finishes it
// first.
func TestADryRunReportsAWaitingSwapRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		putSwapRecord(t, r, "s2", "1.13.9")
		cfg := r.cfg
		cfg.DryRun = true
		res, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if u := res.Plan.Basis.UnfinishedSwap; u == nil || u.Node != "s2" || u.To != "1.13.9" {
			t.Errorf("the dry run's plan records the unfinished swap %+v, want s2's to 1.13.9", u)
		}
		if ev := swapRecordEvents(r); len(ev) != 1 || !strings.Contains(ev[0], "holds the swap of s2 to 1.13.9") {
			t.Errorf("swap-record events %q, want one naming the swap of s2", ev)
		}
		if _, ok := r.sim.KV(swapKey); !ok || len(r.tr.swapped()) != 0 {
			t.Error("a dry run acted on the swap record")
		}
	})
}

// A server swap that failed and was rolled back leaves no swap record: the
// server is back on its old version and healthy.
func TestARolledBackServerSwapLeavesNoSwapRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Rollback = true
		r.tr.failNext["*"] = errors.New("the new binary does not start")
		_, err := Run(t.Context(), r.cfg)
		var h *HaltError
		if !errors.As(err, &h) || !h.RolledBack {
			t.Fatalf("err = %v, want a halt with the server rolled back", err)
		}
		if rec := readSwapRecord(t, r); rec != nil {
			t.Errorf("after a completed rollback the swap record %+v is still there", rec)
		}
	})
}

// A recorded server alive in serf on its old version but not healthy is
// neither a done swap nor one that never started: it is observed again for
// swapResumeSettle, then refused, touching nothing.
func TestARecordedServerAliveButUnhealthyIsRefusedAfterTheSettleTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		putSwapRecord(t, r, "s2", "1.13.9")
		mustDo(t, r.sim.SetNeverHealthy("s2", true))
		start := time.Now()
		_, err := Run(t.Context(), r.cfg)
		var se *SwapRecordError
		if !errors.As(err, &se) || se.Node != "s2" || !strings.Contains(err.Error(), "alive in serf on 1.12.9 but not healthy") {
			t.Fatalf("err = %v, want a *SwapRecordError for s2 alive but not healthy", err)
		}
		if waited := time.Since(start); waited < swapResumeSettle {
			t.Errorf("refused after %s, want at least %s of observing again", waited, swapResumeSettle)
		}
		if len(r.tr.swapped()) != 0 {
			t.Errorf("swaps %v, want none", r.tr.swapped())
		}
		if _, ok := r.sim.KV(swapKey); !ok {
			t.Error("the refused run deleted the record")
		}
	})
}

// Case (a) whose gate fails, under Config.Rollback: the server an earlier
// run swapped is rolled back by this one, so this run stopped it and must
// say so. Found by the property test (seed 3478675449015560043): the halt
// was a *StepRefusedError saying "nothing of that step was touched" and
// Result.Touched was empty although the rollback stopped and started s2.
func TestARecordedSwapWhoseGateFailsIsRolledBackAndTheHaltSaysThisRunStoppedIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		putSwapRecord(t, r, "s2", "1.13.9")
		mustDo(t, r.sim.Swap("s2", "1.13.9", true))
		time.Sleep(time.Minute)                      // the swap was done a while ago: s2 is back
		mustDo(t, r.sim.SetNeverHealthy("s2", true)) // but never healthy on the new version
		inner := r.tr.onSwap
		r.tr.onSwap = func(node, version string, ok bool) {
			if node == "s2" && version == "1.12.9" {
				mustDo(t, r.sim.SetNeverHealthy("s2", false)) // healthy again on the old one
			}
			inner(node, version, ok)
		}
		r.tr.prev["s2"] = "1.12.9" // what the earlier run's transport knew
		r.cfg.Rollback = true
		res, err := Run(t.Context(), r.cfg)
		var h *HaltError
		if !errors.As(err, &h) || !h.RolledBack {
			t.Fatalf("err = %v, want a *HaltError with s2 rolled back", err)
		}
		if !slices.Equal(r.tr.rollbacks, []string{"s2"}) || r.sim.Version("s2") != "1.12.9" {
			t.Fatalf("rollbacks %v, s2 on %s; want s2 rolled back to 1.12.9", r.tr.rollbacks, r.sim.Version("s2"))
		}
		if len(res.Touched) != 1 {
			t.Fatalf("touched %v, want s2 alone", res.Touched)
		}
		tc := res.Touched[0]
		if tc.Node != "s2" || !tc.Resumed || !tc.Stopped || tc.Started || tc.Rollback == nil || tc.Rollback.Result != RollbackDone {
			t.Errorf("touch %+v: want s2 resumed, stopped by the rollback, rolled back", tc)
		}
		for _, want := range []string{"touched by this run: s2 (swap-server 1.12.9 -> 1.13.9): swapped by an earlier run, stopped by this run's rollback, failed; rolled back, and the cluster is healthy again"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("halt %q lacks %q", err, want)
			}
		}
		if len(r.tr.swapped()) != 0 {
			t.Errorf("swaps %v, want none: the recorded swap was done", r.tr.swapped())
		}
	})
}
