package upgrade

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// cancelAtFirstGate cancels the run when the gate of its first server swap
// first waits (on cond, when not ""), and returns the node being gated.
func cancelAtFirstGate(r *runRig, cancel context.CancelFunc, cond ...planner.GateCheck) *string {
	gated := new(string)
	prev := r.cfg.OnEvent
	r.cfg.OnEvent = func(e Event) {
		prev(e)
		if *gated == "" && e.Kind == EventGateWaiting && e.Step.Kind == planner.StepSwapServer && (len(cond) == 0 || cond[0] == "" || e.Condition == cond[0]) {
			*gated = e.Step.Node
			cancel()
		}
	}
	return gated
}

func rolledBackEvents(r *runRig) []Event {
	var out []Event
	for _, e := range r.events {
		if e.Kind == EventRolledBack {
			out = append(out, e)
		}
	}
	return out
}

// Cancelling the run while a swapped server is gated still rolls that
// server back: the rollback runs under a context of its own. (Before, the
// rollback used the cancelled context, its quorum check failed at once and
// the server was left on the new version, with the rollback "not
// attempted".)
func TestACancelledRunStillRollsBackTheServerItWasGatingAndSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		r.cfg.Rollback = true
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		gated := cancelAtFirstGate(r, cancel)
		_, err := Run(ctx, r.cfg)
		if *gated == "" {
			t.Fatal("no server gate waited: the run was never cancelled")
		}
		var h *HaltError
		if !errors.As(err, &h) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want a *HaltError wrapping context.Canceled", err)
		}
		if !strings.Contains(err.Error(), "the run was cancelled") {
			t.Errorf("error %q does not say the run was cancelled", err)
		}
		if !h.RolledBack || h.RollbackErr != nil || len(h.RolledBackNodes) != 1 || h.RolledBackNodes[0] != *gated {
			t.Fatalf("RolledBack %v, RolledBackNodes %v, RollbackErr %v; want %s rolled back and healthy", h.RolledBack, h.RolledBackNodes, h.RollbackErr, *gated)
		}
		if n, _ := f.Node(*gated); n.Version != "1.12.9" || !n.Running {
			t.Errorf("%s after the cancelled run: %+v, want running 1.12.9", *gated, n)
		}
		if v := r.sim.Version(*gated); v != "1.12.9" {
			t.Errorf("the cluster sees %s on %s, want 1.12.9", *gated, v)
		}
		evs := rolledBackEvents(r)
		if len(evs) != 1 || evs[0].Err != nil || !strings.Contains(evs[0].Detail, "healthy again") || !strings.Contains(evs[0].Detail, "the run was cancelled") {
			t.Errorf("rolled-back events %+v, want one saying %s is healthy again after a cancelled run", evs, *gated)
		}
		if _, ok := r.sim.KV(swapKey); ok {
			t.Error("the swap record is left after a rollback that ended healthy")
		}
		if len(r.sim.HeldLocks()) != 0 {
			t.Errorf("locks %v left after the cancelled run", r.sim.HeldLocks())
		}
	})
}

// hangingRollback is a transport whose Rollback blocks until its context
// ends.
type hangingRollback struct {
	transport.Transport
	ended chan struct{}
}

func (h *hangingRollback) Rollback(ctx context.Context, node string) error {
	<-ctx.Done()
	close(h.ended)
	return &transport.SwapError{Node: node, Phase: transport.PhaseRollback, Err: ctx.Err()}
}

// The rollback of a cancelled run is bounded by Config.RollbackTimeout: a
// transport that never returns is cut off there, and the failure is
// reported.
func TestTheRollbackOfACancelledRunIsBoundedByRollbackTimeoutAndItsFailureReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		tr := &hangingRollback{Transport: withFake(r), ended: make(chan struct{})}
		r.cfg.Transport = tr
		r.cfg.Rollback = true
		r.cfg.RollbackTimeout = 3 * time.Minute
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var cancelledAt time.Time
		gated := cancelAtFirstGate(r, func() { cancelledAt = time.Now(); cancel() })
		_, err := Run(ctx, r.cfg)
		var h *HaltError
		if !errors.As(err, &h) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want a *HaltError wrapping context.Canceled", err)
		}
		if took := time.Since(cancelledAt); took < 3*time.Minute || took > 3*time.Minute+time.Second {
			t.Errorf("the run returned %s after the cancel, want the rollback's 3m0s bound", took)
		}
		if h.RolledBack || !errors.Is(h.RollbackErr, context.DeadlineExceeded) || !strings.Contains(h.RollbackErr.Error(), "roll back "+*gated) {
			t.Errorf("RolledBack %v, RollbackErr %v; want the rollback of %s failed at its deadline", h.RolledBack, h.RollbackErr, *gated)
		}
		if !strings.Contains(err.Error(), "rollback failed") {
			t.Errorf("error %q does not say the rollback failed", err)
		}
		evs := rolledBackEvents(r)
		if len(evs) != 1 || evs[0].Err == nil || !strings.Contains(evs[0].Detail, "failed") || !strings.Contains(evs[0].Detail, "the run was cancelled") {
			t.Errorf("rolled-back events %+v, want one reporting the failed rollback of a cancelled run", evs)
		}
	})
}

func TestValidateRefusesANegativeRollbackTimeout(t *testing.T) {
	r := newRunRig(t, 3, 0)
	r.cfg.RollbackTimeout = -time.Second
	var ce *ConfigError
	if err := r.cfg.Validate(); !errors.As(err, &ce) || ce.Field != "RollbackTimeout" || !strings.Contains(err.Error(), "twice the gate timeout") {
		t.Errorf("Validate = %v, want a *ConfigError on RollbackTimeout naming the default", err)
	}
}

// Whatever the rollback of a cancelled run comes to, the HaltError and one
// rolled-back event say it: rolled back but unhealthy, or refused because
// the other voters up would lose their quorum.
func TestTheOutcomeOfTheRollbackOfACancelledRunIsReported(t *testing.T) {
	for _, tc := range []struct {
		name string
		// atCancel breaks the cluster when the run is cancelled.
		atCancel func(t *testing.T, r *runRig, gated string)
		// on is the gate condition the run is cancelled on ("" any).
		on         planner.GateCheck
		rolledBack []string
		errSays    string
		eventSays  string
	}{{
		name: "rolled back but unhealthy",
		atCancel: func(t *testing.T, r *runRig, gated string) {
			mustDo(t, r.sim.SetNeverHealthy(gated, true))
		},
		rolledBack: []string{"gated"},
		errSays:    "but the cluster did not become healthy",
		eventSays:  "cluster not healthy after rollback",
	}, {
		name: "refused for quorum",
		on:   planner.GateStable, // the gated server is up again: its rollback stops it
		atCancel: func(t *testing.T, r *runRig, gated string) {
			for _, n := range []string{"s1", "s2", "s3"} {
				if n != gated && n != r.sim.Leader() {
					mustDo(t, r.sim.Swap(n, "1.12.9", false)) // down, and it stays down
					return
				}
			}
		},
		errSays:   "refused: stopping it would leave 1 of 3 voters up",
		eventSays: "refused",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRunRig(t, 3, 0)
				withFake(r)
				r.cfg.Rollback = true
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				var gated string
				gatedp := cancelAtFirstGate(r, func() {
					cancel()
					gated = r.events[len(r.events)-1].Step.Node
					tc.atCancel(t, r, gated)
				}, tc.on)
				_, err := Run(ctx, r.cfg)
				var h *HaltError
				if !errors.As(err, &h) || !errors.Is(err, context.Canceled) || *gatedp == "" {
					t.Fatalf("Run = %v, want a *HaltError wrapping context.Canceled", err)
				}
				var want []string
				if tc.rolledBack != nil {
					want = []string{gated}
				}
				if h.RolledBack || h.RollbackErr == nil || !strings.Contains(h.RollbackErr.Error(), tc.errSays) || strings.Join(h.RolledBackNodes, ",") != strings.Join(want, ",") {
					t.Errorf("RolledBack %v, RolledBackNodes %v, RollbackErr %v; want not healthy, nodes %v, an error saying %q", h.RolledBack, h.RolledBackNodes, h.RollbackErr, want, tc.errSays)
				}
				evs := rolledBackEvents(r)
				if len(evs) != 1 || evs[0].Err == nil || !strings.Contains(evs[0].Detail, tc.eventSays) || !strings.Contains(evs[0].Detail, "the run was cancelled") {
					t.Errorf("rolled-back events %+v, want one saying %q after a cancelled run", evs, tc.eventSays)
				}
			})
		})
	}
}
