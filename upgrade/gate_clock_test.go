package upgrade

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// skewedConsul shows the orchestrator the servers' clocks skewed by skew:
// every autopilot StableSince is moved by it, as when the servers' clocks
// are ahead of (skew > 0) or behind (skew < 0) the orchestrator's.
type skewedConsul struct {
	Consul
	skew time.Duration
}

func (s skewedConsul) AutopilotHealth(ctx context.Context) (*api.OperatorHealthReply, error) {
	h, err := s.Consul.AutopilotHealth(ctx)
	if h != nil {
		for i := range h.Servers {
			if !h.Servers[i].StableSince.IsZero() {
				h.Servers[i].StableSince = h.Servers[i].StableSince.Add(s.skew)
			}
		}
	}
	return h, err
}

// The stable condition is counted from the gate's own observations: the
// servers' clocks an hour ahead of the orchestrator's (StableSince in its
// future) or an hour behind (StableSince long past) change nothing, and a
// restart the gate did not see (autopilot's StableSince moves) starts the
// count again whatever the skew.
func TestGateStabilityIgnoresTheSkewOfTheServersClocks(t *testing.T) {
	for _, skew := range []time.Duration{time.Hour, -time.Hour, 0} {
		t.Run("servers "+skew.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := consultest.NewCluster(3, 0, "1.12.9", consultest.WithStabilizationTime(10*time.Second),
					consultest.WithRestartDelay(3*time.Second), consultest.WithStableSince(time.Now().Add(-time.Hour)))
				c := skewedConsul{Consul: inProcessConsul(t, s), skew: skew}
				mustDo(t, s.Swap("s2", "1.13.9", true))
				swapped := time.Now()
				var healthySeen time.Time
				opt := gateOptions{Timeout: time.Minute, Since: swapped, MaxInterval: 500 * time.Millisecond,
					OnWaiting: func(cond planner.GateCheck, node, detail string) {
						if cond == planner.GateStable && healthySeen.IsZero() {
							healthySeen = time.Now()
						}
					}}
				if err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base3, opt); err != nil {
					t.Fatalf("Gate with the servers' clocks %s off: %v", skew, err)
				}
				if healthySeen.IsZero() {
					t.Fatal("the gate never waited on stable: it passed without counting")
				}
				waited := time.Since(healthySeen)
				if waited < 10*time.Second || waited > 12*time.Second {
					t.Errorf("the gate passed %s after it first saw s2 healthy, want the 10s stabilization time (at most one poll more)", waited)
				}
			})
		})
	}
}

// A restart between two attempts (down for less than a poll, so the gate
// never sees the server unhealthy) moves autopilot's StableSince: the
// count starts again, even with the servers' clocks an hour behind (their
// new StableSince still in the orchestrator's past, before the gate
// started).
func TestGateStabilityRestartsWhenAutopilotsStableSinceMoves(t *testing.T) {
	for _, skew := range []time.Duration{-time.Hour, 0} {
		t.Run("servers "+skew.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := consultest.NewCluster(3, 0, "1.12.9", consultest.WithStabilizationTime(10*time.Second),
					consultest.WithRestartDelay(0), consultest.WithStableSince(time.Now().Add(-time.Hour)))
				c := skewedConsul{Consul: inProcessConsul(t, s), skew: skew}
				mustDo(t, s.Swap("s2", "1.13.9", true))
				swapped := time.Now()
				var flapped time.Time
				go func() {
					time.Sleep(6 * time.Second)
					mustDo(t, s.Swap("s2", "1.13.9", true)) // back at once, StableSince moves
					flapped = time.Now()
				}()
				opt := gateOptions{Timeout: time.Minute, Since: swapped, MaxInterval: 2 * time.Second}
				if err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base3, opt); err != nil {
					t.Fatalf("Gate: %v", err)
				}
				if flapped.IsZero() {
					t.Fatal("the gate passed before the restart")
				}
				if waited := time.Since(flapped); waited < 10*time.Second {
					t.Errorf("the gate passed %s after a restart autopilot reported, want at least the 10s stabilization time", waited)
				}
			})
		})
	}
}
