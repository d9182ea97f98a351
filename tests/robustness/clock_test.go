package robustness_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// fullConsul is what upgrade.NewConsul's Consul implements: a wrapper
// that embeds it keeps every ability (the run refuses a Consul without the
// lock and the KV store).
type fullConsul interface {
	upgrade.Consul
	upgrade.EraReader
	upgrade.FeatureReader
	upgrade.Locker
	upgrade.KVStore
}

// skewedClocks shows the orchestrator the servers' clocks skewed by skew
// (ahead when positive): every autopilot StableSince, the only server
// timestamp the gates read, is moved by it. The servers' real clocks
// cannot be changed without root; for every comparison between the
// orchestrator's clock and a server's, this is the same as the
// orchestrator's clock being off by -skew.
type skewedClocks struct {
	fullConsul
	skew time.Duration
}

func (s skewedClocks) AutopilotHealth(ctx context.Context) (*api.OperatorHealthReply, error) {
	h, err := s.fullConsul.AutopilotHealth(ctx)
	if h != nil {
		for i := range h.Servers {
			if !h.Servers[i].StableSince.IsZero() {
				h.Servers[i].StableSince = h.Servers[i].StableSince.Add(s.skew)
			}
		}
	}
	return h, err
}

// stableWaits measures, from the run's events, how long each server
// swap's gate waited on stable: from its last gate-waiting event on stable
// (every other condition held then, and the count starts no later) to its
// step-done.
type stableWaits struct {
	mu    sync.Mutex
	since map[string]time.Time
	waits map[string]time.Duration
	order []string
}

func (s *stableWaits) onEvent(e upgrade.Event) {
	if e.Step.Kind != planner.StepSwapServer {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case e.Kind == upgrade.EventGateWaiting && e.Condition == planner.GateStable:
		s.since[e.Step.Node] = e.Time
	case e.Kind == upgrade.EventGateWaiting:
		delete(s.since, e.Step.Node) // another condition failed: the count starts again
	case e.Kind == upgrade.EventStepDone:
		if at, ok := s.since[e.Step.Node]; ok {
			s.waits[e.Step.Node] = e.Time.Sub(at)
		}
		s.order = append(s.order, e.Step.Node)
	}
}

const clockStabilization = 10 * time.Second

// clockScenario upgrades a 3-server cluster under recorded traffic while
// the orchestrator sees the servers' clocks skew off. Every server's gate
// must wait at least the stabilization time from the moment it first saw
// the server healthy (the count is never cut short), and the run must
// complete (a count never stretched to the gate's timeout either).
func clockScenario(t *testing.T, from, to string, skew time.Duration) {
	sw := &stableWaits{since: map[string]time.Time{}, waits: map[string]time.Duration{}}
	var g *guard
	tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
	fig := scenario.Run(t, scenario.Scenario{From: from, To: to, During: tr.During,
		Configure: func(cfg *upgrade.Config, cl *consulrig.Cluster) {
			full, ok := cfg.Consul.(fullConsul)
			if !ok {
				t.Fatalf("the run's Consul %T is not upgrade.NewConsul's", cfg.Consul)
			}
			cfg.Consul = skewedClocks{fullConsul: full, skew: skew}
			cfg.StabilizationTime = clockStabilization
			g = &guard{Transport: cl.Transport(), cl: cl}
			cfg.Transport = g
			prev := cfg.OnEvent
			cfg.OnEvent = func(e upgrade.Event) {
				prev(e)
				sw.onEvent(e)
			}
		}})
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if len(sw.order) != 3 {
		t.Errorf("server swaps done: %v, want 3", sw.order)
	}
	// The gate counts from an attempt that saw the server healthy; the
	// event of that attempt is sent a moment after its count started.
	const eventLag = 100 * time.Millisecond
	for _, n := range sw.order {
		w, ok := sw.waits[n]
		switch {
		case !ok:
			t.Errorf("the gate of %s never waited on stable: stability was not counted", n)
		case w < clockStabilization-eventLag:
			t.Errorf("the gate of %s passed %s after it first saw the server healthy, want at least the %s stabilization time: stability was cut short", n, w.Round(time.Millisecond), clockStabilization)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, v := range g.violations {
		t.Errorf("the run stopped a second server: %s", v)
	}
	t.Logf("FIGURES clock skew %s -> %s, servers' clocks %s off: run wall %s; stable waits %v (stabilization %s); traffic %s; writer lost %d of %d",
		from, to, skew, fig.Wall.Round(100*time.Millisecond), sw.waits, clockStabilization, tr.Report, len(fig.Lost), len(fig.Writes.Acked))
}

// The servers' clocks an hour ahead of the orchestrator's (so it is an
// hour behind theirs): autopilot's StableSince is in the orchestrator's
// future. Comparing clocks would wait an hour (the gate would time out).
func TestStabilityWithTheOrchestratorsClockBehind_1_12_9_to_1_13_9(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	clockScenario(t, "1.12.9", "1.13.9", time.Hour)
}

// The servers' clocks an hour behind (the orchestrator's ahead):
// StableSince is long past. Comparing clocks, a restart that autopilot saw
// between two polls of the gate would be counted from before it (the
// count would be cut short); on real agents such a restart cannot be
// timed, so this test asserts every stable wait is at least the
// stabilization time from the first healthy sighting, and the unit test
// TestGateStabilityRestartsWhenAutopilotsStableSinceMoves covers the
// unseen restart.
func TestStabilityWithTheOrchestratorsClockAhead_1_12_9_to_1_13_9(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	clockScenario(t, "1.12.9", "1.13.9", -time.Hour)
}

func TestStabilityWithTheOrchestratorsClockBehind_1_15_4_to_1_16_1(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	clockScenario(t, "1.15.4", "1.16.1", time.Hour)
}

func TestStabilityWithTheOrchestratorsClockAhead_1_15_4_to_1_16_1(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	clockScenario(t, "1.15.4", "1.16.1", -time.Hour)
}
