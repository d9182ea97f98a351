package metrics_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// discard is a snapshot sink that keeps nothing.
type discard struct{}

func (discard) Write(p []byte) (int, error)  { return len(p), nil }
func (discard) Commit(context.Context) error { return nil }
func (discard) Abort(context.Context) error  { return nil }

// A whole run on the simulator (3 servers, 1 client, 1.12.9 -> 1.13.9,
// in virtual time), its metrics read at its own events: what a scrape at
// that moment would see.
func TestARunsMetricsFollowItsStepsAsTheyHappen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 1, "1.12.9",
			consultest.WithStableSince(time.Now().Add(-time.Hour)),
			consultest.WithRestartDelay(2*time.Second),
			consultest.WithStabilizationTime(10*time.Second))
		client, err := sim.Client()
		if err != nil {
			t.Fatal(err)
		}
		m, reg := newMetrics(t)
		var swapped []string // the servers step_info named at each swap-server's start
		var lastDone float64
		waitedOnStable := 0.0
		onEvent := func(ev upgrade.Event) {
			m.Observe(ev)
			switch ev.Kind {
			case upgrade.EventStepStarted:
				if ev.Step.Kind == planner.StepSwapServer {
					want(t, reg, "consul_upgrade_step_info", "datacenter=dc1,from=1.12.9,kind=swap-server,node="+ev.Step.Node+",to=1.13.9", 1)
					swapped = append(swapped, ev.Step.Node)
				}
			case upgrade.EventGateWaiting:
				if ev.Condition == planner.GateStable {
					want(t, reg, "consul_upgrade_gate_condition_info", "condition=stable", 1)
				}
			case upgrade.EventStepDone:
				done, _ := value(t, reg, "consul_upgrade_steps_done", "")
				if done != lastDone+1 {
					t.Errorf("steps_done went from %g to %g at the end of %s", lastDone, done, ev.Step)
				}
				lastDone = done
				want(t, reg, "consul_upgrade_steps_planned", "", 5)
			}
		}
		// A scraper every 500ms: the gate's wait grows between events.
		ended := make(chan struct{})
		scraped := make(chan struct{})
		go func() {
			defer close(scraped)
			for {
				select {
				case <-ended:
					return
				case <-time.After(500 * time.Millisecond):
				}
				if _, found := value(t, reg, "consul_upgrade_gate_condition_info", "condition=stable"); found {
					w, _ := value(t, reg, "consul_upgrade_gate_wait_seconds", "")
					waitedOnStable = max(waitedOnStable, w)
				}
			}
		}()
		_, err = upgrade.Run(t.Context(), upgrade.Config{
			Consul:      upgrade.NewConsul(client),
			Transport:   sim.NewFake(),
			Target:      "1.13.9",
			Snapshot:    func(context.Context, string, string) (upgrade.SnapshotSink, error) { return discard{}, nil },
			OnEvent:     onEvent,
			GateTimeout: time.Minute,
		})
		close(ended)
		<-scraped
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if len(swapped) != 3 || swapped[2] != "s1" {
			t.Errorf("step_info named the servers %v at their swaps, want 3 with the leader s1 last", swapped)
		}
		// A swapped server is stable 10s after it came back: its gate waited
		// on stable for most of that.
		t.Logf("longest wait on stable seen: %gs", waitedOnStable)
		if waitedOnStable < 8 {
			t.Errorf("gate_wait_seconds while waiting on stable reached %gs, want most of the 10s stabilization", waitedOnStable)
		}
		want(t, reg, "consul_upgrade_run_state", "state=done", 1)
		want(t, reg, "consul_upgrade_steps_done", "", 5)
		want(t, reg, "consul_upgrade_steps_planned", "", 5)
		want(t, reg, "consul_upgrade_nodes_touched_total", "role=server", 3)
		want(t, reg, "consul_upgrade_nodes_touched_total", "role=client", 1)
		want(t, reg, "consul_upgrade_step_duration_seconds", "kind=swap-server", 3)
		want(t, reg, "consul_upgrade_gate_wait_duration_seconds", "kind=swap-server", 3)
		absent(t, reg, "consul_upgrade_step_info")
		absent(t, reg, "consul_upgrade_gate_condition_info")
		for _, typ := range []string{"gate", "stuck", "other"} {
			want(t, reg, "consul_upgrade_halts_total", "type="+typ, 0)
		}
	})
}
