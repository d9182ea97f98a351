package robust_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/consulrig"
	"github.com/seed-e5e14ead/consul-upgrade/internal/realtest"
	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// agentDeath kills the client agent c1, the first agent of the run's
// failover Consul (upgrade.ConnectAddrs: c1, then c2), when the gate of the
// first server swap first waits, and starts it again (on its old version)
// restartAfter later, as a supervisor would.
type agentDeath struct {
	restartAfter time.Duration
	g            *guard

	mu        sync.Mutex
	killed    time.Time
	restarted time.Time
	switches  []string
	// gatedAfterKill: steps whose gate passed while c1 was down.
	gatedAfterKill []string
	err            error
}

func (d *agentDeath) configure(t *testing.T) func(*upgrade.Config, *consulrig.Cluster) {
	return func(cfg *upgrade.Config, cl *consulrig.Cluster) {
		c1, c2 := cl.Clients()[0], cl.Clients()[1]
		fc, err := upgrade.ConnectAddrs(func(from, to string, cause error) {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.switches = append(d.switches, from+" -> "+to)
			t.Logf("FAILOVER %s -> %s: %v", from, to, cause)
		}, cl.HTTPAddr(c1), cl.HTTPAddr(c2))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Consul = fc
		d.g = &guard{Transport: cl.Transport(), cl: cl}
		cfg.Transport = d.g
		prev := cfg.OnEvent
		cfg.OnEvent = func(e upgrade.Event) {
			prev(e)
			d.onEvent(t, cl, c1, e)
		}
	}
}

func (d *agentDeath) onEvent(t *testing.T, cl *consulrig.Cluster, c1 string, e upgrade.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.killed.IsZero() && d.err == nil && e.Kind == upgrade.EventGateWaiting && e.Step.Kind == planner.StepSwapServer:
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if d.err = cl.Transport().Stop(ctx, c1, transport.StopKill); d.err != nil {
			return
		}
		d.killed = time.Now()
		t.Logf("FAULT killed %s, the agent the run talks to, while the gate of %s waits for %s", c1, e.Step.Node, e.Condition)
		time.AfterFunc(d.restartAfter, func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := cl.Transport().Start(ctx, c1)
			d.mu.Lock()
			defer d.mu.Unlock()
			d.restarted = time.Now()
			if err != nil {
				d.err = err
			}
			t.Logf("FAULT restarted %s after %s", c1, d.restarted.Sub(d.killed).Round(100*time.Millisecond))
		})
	case !d.killed.IsZero() && d.restarted.IsZero() && e.Kind == upgrade.EventStepDone:
		d.gatedAfterKill = append(d.gatedAfterKill, e.Step.Node)
	}
}

// failoverScenario: 3 servers and 2 clients under recorded traffic; the run
// talks to c1 and may fail over to c2. c1 is killed while the first server
// swap's gate waits and comes back 40 s later. The run must go on through
// c2 (the gate passes while c1 is still dead) and complete.
func failoverScenario(t *testing.T, from, to string) {
	d := &agentDeath{restartAfter: 40 * time.Second}
	tr := realtest.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
	fig := realtest.Run(t, realtest.Scenario{From: from, To: to, Clients: 2, During: tr.During, Configure: d.configure(t)})
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		t.Fatalf("the fault could not be injected: %v", d.err)
	}
	if d.killed.IsZero() {
		t.Fatal("no server gate waited: c1 was never killed")
	}
	if len(d.switches) == 0 {
		t.Error("the run never failed over from c1")
	}
	if len(d.gatedAfterKill) == 0 {
		t.Errorf("no gate passed while c1 was dead (it came back %s after the kill): the run waited for c1 instead of failing over",
			d.restarted.Sub(d.killed).Round(100*time.Millisecond))
	}
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	for _, v := range d.g.violations {
		t.Errorf("the run stopped a second server: %s", v)
	}
	t.Logf("FIGURES agent-dies-mid-gate %s -> %s: run wall %s; failovers %v; gates passed while c1 was dead: %v; traffic %s; writer lost %d of %d",
		from, to, fig.Wall.Round(100*time.Millisecond), d.switches, d.gatedAfterKill, tr.Report, len(fig.Lost), len(fig.Writes.Acked))
}

func TestTheRunFailsOverWhenItsAgentDiesMidGate_1_12_9_to_1_13_9(t *testing.T) {
	failoverScenario(t, "1.12.9", "1.13.9")
}

func TestTheRunFailsOverWhenItsAgentDiesMidGate_1_15_4_to_1_16_1(t *testing.T) {
	failoverScenario(t, "1.15.4", "1.16.1")
}
