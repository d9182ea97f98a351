package robustness_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// agentDeath kills the client agent c2, the first agent of the run's
// failover Consul (upgrade.ConnectAddrs: c2, then c1), when the gate of the
// first server swap first waits, and starts it again (on its old version)
// when the client waves begin, as a supervisor would: c2 stays dead through
// every server swap, the leader's included. (The test's own writer goes
// through c1.)
type agentDeath struct {
	g *guard

	mu        sync.Mutex
	killed    time.Time
	restarted time.Time
	switches  []string
	// gatedAfterKill: steps whose gate passed while c2 was down.
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
		}, cl.HTTPAddr(c2), cl.HTTPAddr(c1))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Consul = fc
		d.g = &guard{Transport: cl.Transport(), cl: cl}
		cfg.Transport = d.g
		prev := cfg.OnEvent
		cfg.OnEvent = func(e upgrade.Event) {
			prev(e)
			d.onEvent(t, cl, c2, e)
		}
	}
}

func (d *agentDeath) onEvent(t *testing.T, cl *consulrig.Cluster, victim string, e upgrade.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.killed.IsZero() && d.err == nil && e.Kind == upgrade.EventGateWaiting && e.Step.Kind == planner.StepSwapServer:
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if d.err = cl.Transport().Stop(ctx, victim, transport.StopKill); d.err != nil {
			return
		}
		d.killed = time.Now()
		t.Logf("FAULT killed %s, the agent the run talks to, while the gate of %s waits for %s", victim, e.Step.Node, e.Condition)
	case !d.killed.IsZero() && d.restarted.IsZero() && e.Kind == upgrade.EventStepStarted && e.Step.Kind == planner.StepSwapClients:
		// The run waits for this callback: the supervisor's restart is
		// done before the first client wave.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if d.err = cl.Transport().Start(ctx, victim); d.err != nil {
			return
		}
		d.restarted = time.Now()
		t.Logf("FAULT restarted %s after %s", victim, d.restarted.Sub(d.killed).Round(100*time.Millisecond))
	case !d.killed.IsZero() && d.restarted.IsZero() && e.Kind == upgrade.EventStepDone:
		d.gatedAfterKill = append(d.gatedAfterKill, e.Step.Node)
	}
}

// failoverScenario: 3 servers and 2 clients under recorded traffic; the run
// talks to c2 and may fail over to c1. c2 is killed while the first server
// swap's gate waits and comes back only when the client waves begin. The
// run must go on through c1 (every server's gate passes while c2 is dead)
// and complete. Its lock must survive: it was taken through c2, so its
// session was c2's, and a leader elected after a server restarted while c2
// was dead deregisters c2's node (reaped), which destroys the sessions on
// it; the lock moves to a session made through c1 once the run fails over.
func failoverScenario(t *testing.T, from, to string) {
	d := &agentDeath{}
	tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
	fig := scenario.Run(t, scenario.Scenario{From: from, To: to, Clients: 2, During: tr.During, Configure: d.configure(t)})
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		t.Fatalf("the fault could not be injected: %v", d.err)
	}
	if d.killed.IsZero() {
		t.Fatal("no server gate waited: c2 was never killed")
	}
	if len(d.switches) == 0 {
		t.Error("the run never failed over from c2")
	}
	var servers []string // distinct: a transfer's step names its server too
	for _, n := range d.gatedAfterKill {
		if strings.HasPrefix(n, "s") && !slices.Contains(servers, n) {
			servers = append(servers, n)
		}
	}
	if len(servers) != 3 {
		t.Errorf("server gates passed while c2 was dead: %v, want all 3: the run waited for c2 instead of failing over", servers)
	}
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	for _, v := range d.g.violations {
		t.Errorf("the run stopped a second server: %s", v)
	}
	t.Logf("FIGURES agent-dies-mid-gate %s -> %s: run wall %s; failovers %v; c2 dead for %s; gates passed while c2 was dead: %v; c2 reaped: %v; traffic %s; writer lost %d of %d",
		from, to, fig.Wall.Round(100*time.Millisecond), d.switches, d.restarted.Sub(d.killed).Round(100*time.Millisecond), d.gatedAfterKill, fig.Reaped("c2"), tr.Report, len(fig.Lost), len(fig.Writes.Acked))
}

func TestTheRunFailsOverWhenItsAgentDiesMidGate_1_12_9_to_1_13_9(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	failoverScenario(t, "1.12.9", "1.13.9")
}

func TestTheRunFailsOverWhenItsAgentDiesMidGate_1_15_4_to_1_16_1(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	failoverScenario(t, "1.15.4", "1.16.1")
}

// haltScenario: as failoverScenario, but the run is given c1 alone and c1
// stays dead. The gate of the first server swap gets no answer until its
// 45 s timeout and the run halts with a *upgrade.HaltError wrapping a
// *upgrade.GateError wrapping an *upgrade.AgentUnreachableError that names
// c1; no other node is swapped. c1 is then started again and the cluster
// must be healthy.
func haltScenario(t *testing.T, from, to string) {
	var cl *consulrig.Cluster
	var g *guard
	var killed time.Time
	var killErr error
	tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
	fig := scenario.Run(t, scenario.Scenario{From: from, To: to, During: tr.During,
		Configure: func(cfg *upgrade.Config, c *consulrig.Cluster) {
			cl = c
			fc, err := upgrade.ConnectAddrs(nil, cl.HTTPAddr(cl.Clients()[0]))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Consul = fc
			cfg.GateTimeout = 45 * time.Second
			g = &guard{Transport: cl.Transport(), cl: cl}
			cfg.Transport = g
			prev := cfg.OnEvent
			cfg.OnEvent = func(e upgrade.Event) {
				prev(e)
				if killed.IsZero() && killErr == nil && e.Kind == upgrade.EventGateWaiting && e.Step.Kind == planner.StepSwapServer {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					if killErr = cl.Transport().Stop(ctx, cl.Clients()[0], transport.StopKill); killErr == nil {
						killed = time.Now()
						t.Logf("FAULT killed c1, the only agent the run may talk to, while the gate of %s waits for %s", e.Step.Node, e.Condition)
					}
				}
			}
		},
		Halted: func(t *testing.T, err error) {
			var halt *upgrade.HaltError
			var ge *upgrade.GateError
			var ue *upgrade.AgentUnreachableError
			if !errors.As(err, &halt) || !errors.As(err, &ge) || !errors.As(err, &ue) {
				t.Errorf("run error %T %v, want a *upgrade.HaltError wrapping a *upgrade.GateError wrapping an *upgrade.AgentUnreachableError", err, err)
			} else if len(ue.Tried) != 1 || ue.Tried[0] != cl.HTTPAddr(cl.Clients()[0]) {
				t.Errorf("addresses tried %v, want c1's %s", ue.Tried, cl.HTTPAddr(cl.Clients()[0]))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := cl.Transport().Start(ctx, cl.Clients()[0]); err != nil {
				t.Fatalf("start c1 again: %v", err)
			}
			c1, err := upgrade.ConnectAddr(cl.HTTPAddr(cl.Clients()[0]))
			if err != nil {
				t.Fatal(err)
			}
			scenario.WaitReady(t, ctx, upgrade.Config{Consul: c1}, 3)
		},
	})
	if killErr != nil {
		t.Fatalf("the fault could not be injected: %v", killErr)
	}
	if killed.IsZero() {
		t.Fatal("no server gate waited: c1 was never killed")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, v := range g.violations {
		t.Errorf("the run stopped a second server: %s", v)
	}
	if len(g.acts) != 1 {
		t.Errorf("server swaps asked: %v, want only the one whose gate got no answer", g.acts)
	}
	t.Logf("FIGURES agent-dies-mid-gate, no other agent, %s -> %s: run wall %s (halted); server swaps %v; traffic %s; writer lost %d of %d",
		from, to, fig.Wall.Round(100*time.Millisecond), g.acts, tr.Report, len(fig.Lost), len(fig.Writes.Acked))
}

func TestTheRunHaltsWhenItsOnlyAgentDiesMidGate_1_12_9_to_1_13_9(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	haltScenario(t, "1.12.9", "1.13.9")
}

func TestTheRunHaltsWhenItsOnlyAgentDiesMidGate_1_15_4_to_1_16_1(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	haltScenario(t, "1.15.4", "1.16.1")
}
