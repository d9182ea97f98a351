package upgrade

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

func TestEveryClientOfAWaveIsReportedWithItsStepsIndexAndTotal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 4)
		r.cfg.Policy.Clients = planner.ClientPolicy{Canary: 1, BatchSize: 3}
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		seen := map[string]Event{}
		for _, e := range r.events {
			if e.Kind == EventNodeSwapped {
				seen[e.Node] = e
			}
		}
		for _, n := range []string{"c1", "c2", "c3", "c4"} {
			e, ok := seen[n]
			if !ok {
				t.Errorf("no node-swapped event for %s", n)
				continue
			}
			if e.Total != len(res.Steps) || e.Step.Kind != planner.StepSwapClients || !sameStep(res.Steps[e.Index].Step, e.Step) || e.Err != nil {
				t.Errorf("event for %s: step %d of %d (%s), err %v; want its wave's place in the run", n, e.Index, e.Total, e.Step, e.Err)
			}
		}
		if e := seen["c4"]; !strings.Contains(e.Detail, "of 3 in the wave") {
			t.Errorf("detail %q does not count the wave", e.Detail)
		}
	})
}

type ctxKey struct{}

// recordingHandler keeps each record and the value of ctxKey in its
// context.
type recordingHandler struct {
	mu   *sync.Mutex
	recs *[]slog.Record
	ctxs *[]any
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, r)
	*h.ctxs = append(*h.ctxs, ctx.Value(ctxKey{}))
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

func TestLogRecordsCarryStepNodeConditionTheErrorAndTheCallersContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		var recs []slog.Record
		var ctxs []any
		r.cfg.Logger = slog.New(recordingHandler{mu: &sync.Mutex{}, recs: &recs, ctxs: &ctxs})
		r.tr.failNext["s2"] = transport.ErrNotRunning
		ctx := context.WithValue(t.Context(), ctxKey{}, "caller")
		Run(ctx, r.cfg)
		for i, v := range ctxs {
			if v != "caller" {
				t.Errorf("record %d (%s) was logged without the caller's context", i, recs[i].Message)
			}
		}
		var halted *slog.Record
		for i := range recs {
			if strings.HasPrefix(recs[i].Message, string(EventHalted)) {
				halted = &recs[i]
			}
		}
		if halted == nil {
			t.Fatalf("no halted record among %d", len(recs))
		}
		attrs := map[string]slog.Value{}
		halted.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
		if attrs["node"].String() != "s2" || !strings.HasPrefix(attrs["step"].String(), "swap-server s2") || attrs["step_index"].Int64() != 2 || attrs["step_total"].Int64() != 4 {
			t.Errorf("halted record attrs %v, want node s2, its step, index 2 of 4", attrs)
		}
		err, ok := attrs["err"].Any().(error)
		if !ok || !errors.Is(err, transport.ErrNotRunning) {
			t.Errorf("err attr %v is not the error value itself", attrs["err"])
		}
		if halted.Level != slog.LevelError {
			t.Errorf("halted logged at %v", halted.Level)
		}
	})
}

func TestTheDefaultClientConcurrencyIsATenthOfTheWave(t *testing.T) {
	for _, tc := range []struct{ cfg, wave, want int }{
		{0, 200, 20}, {0, 25, 3}, {0, 5, 1}, {0, 1, 1}, {4, 200, 4}, {50, 3, 3},
	} {
		if got := clientConcurrency(tc.cfg, tc.wave); got != tc.want {
			t.Errorf("clientConcurrency(%d, %d) = %d, want %d", tc.cfg, tc.wave, got, tc.want)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 21)
		r.cfg.Policy.Clients = planner.ClientPolicy{Canary: 1, BatchSize: 20}
		var mu sync.Mutex
		inFlight, peak := 0, 0
		r.cfg.Transport = transportFunc(func(ctx context.Context, req transport.SwapRequest) error {
			mu.Lock()
			inFlight++
			peak = max(peak, inFlight)
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			inFlight--
			mu.Unlock()
			return r.sim.Swap(req.Node, req.To, true)
		})
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if peak != 2 {
			t.Errorf("at most %d swaps in flight in a wave of 20, want 2 (10%%)", peak)
		}
	})
}

func TestSnapshotDirCreatesItsDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups", "consul")
	w, err := SnapshotDir(dir)(t.Context(), "dc1", "1.12.9")
	if err != nil {
		t.Fatalf("SnapshotDir on a missing directory: %v", err)
	}
	w.Write([]byte("x"))
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir %s: %v, %v; want a 0700 directory", dir, fi, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "consul-dc1-1.12.9-*.snap"))
	if len(files) != 1 {
		t.Errorf("files %v, want one snapshot", files)
	}
}

// A gate that waits long for one reason is reported again while it lasts,
// with how long it has waited, so a progress display sees it go on.
func TestALongGateWaitIsReportedAgainWithTheTimeWaited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		onEvent := r.cfg.OnEvent
		r.cfg.OnEvent = func(e Event) {
			onEvent(e)
			if e.Kind == EventStepStarted && e.Step.Node == "s2" {
				mustDo(t, r.sim.SetNeverHealthy("s2", true))
			}
		}
		_, err := Run(t.Context(), r.cfg)
		var ge *GateError
		if !errors.As(err, &ge) || ge.Node != "s2" {
			t.Fatalf("err = %v, want s2's gate to time out", err)
		}
		var waits []time.Duration
		for _, e := range r.events {
			if e.Kind == EventGateWaiting && e.Step.Node == "s2" && e.Condition == ge.Condition {
				waits = append(waits, e.Waited)
			}
		}
		// One minute of gate timeout, a report every 15s (plus at most
		// two jittered attempt intervals): 4 or more, each later than the
		// one before.
		if len(waits) < 4 {
			t.Fatalf("%d reports of the wait on %s over a 1m gate: %v", len(waits), ge.Condition, waits)
		}
		for i := 1; i < len(waits); i++ {
			if waits[i] <= waits[i-1] || waits[i]-waits[i-1] > GateWaitingRepeat+2*DefaultGateMaxInterval {
				t.Errorf("waited %v after %v: want reports about every %s", waits[i], waits[i-1], GateWaitingRepeat)
			}
		}
	})
}
