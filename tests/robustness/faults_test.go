package robustness_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// guard wraps the cluster's transport: every server swap or rollback the
// run asks for is checked against the servers that are down at that
// moment. Stopping a server while another one is down leaves 3 servers
// without a quorum; the run must never do it.
type guard struct {
	*local.Transport
	cl *consulrig.Cluster
	// isolated, when set, names the servers cut off from the others at
	// the moment (partition_test.go): they count as down.
	isolated func() []string

	mu         sync.Mutex
	acts       []string
	violations []string
}

func (g *guard) check(what, node string) {
	var down []string
	for _, s := range g.cl.Servers() {
		if s != node && g.Transport.PID(s) == 0 {
			down = append(down, s)
		}
	}
	if g.isolated != nil {
		for _, s := range g.isolated() {
			if s != node && !slices.Contains(down, s) {
				down = append(down, s+" (partitioned)")
			}
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.acts = append(g.acts, what+" "+node)
	if len(down) > 0 {
		g.violations = append(g.violations, fmt.Sprintf("%s of server %s while %v is down (failure tolerance 0)", what, node, down))
	}
}

func (g *guard) Swap(ctx context.Context, req transport.SwapRequest) error {
	if req.Role == transport.RoleServer {
		g.check("swap", req.Node)
	}
	return g.Transport.Swap(ctx, req)
}

func (g *guard) Rollback(ctx context.Context, node string) error {
	if a, ok := g.Transport.Agent(node); ok && a.Role == transport.RoleServer {
		g.check("rollback", node)
	}
	return g.Transport.Rollback(ctx, node)
}

// fault kills a second server while the first follower's swap is gated:
// once the swapped server is back and its gate waits for it to be stable
// (so the kill alone leaves 2 of 3 voters: a quorum, failure tolerance
// 0), it kills a follower that is neither the swapped server nor the
// leader. With restartAfter > 0 it starts the killed server again (on its
// old version) that long after.
type fault struct {
	restartAfter time.Duration
	g            *guard
	cl           *consulrig.Cluster

	mu        sync.Mutex
	swapped   string // the server whose gate was waiting
	victim    string
	killedAt  time.Time
	restarted time.Time
	gateDone  time.Time // the swapped server's step-done
	waitedFT  int       // failure-tolerance waits after the kill
	err       error
}

func (f *fault) configure(t *testing.T) func(*upgrade.Config, *consulrig.Cluster) {
	return func(cfg *upgrade.Config, cl *consulrig.Cluster) {
		f.g = &guard{Transport: cl.Transport(), cl: cl}
		f.cl = cl
		cfg.Transport = f.g
		prev := cfg.OnEvent
		cfg.OnEvent = func(e upgrade.Event) {
			prev(e)
			f.onEvent(t, cl, e)
		}
	}
}

func (f *fault) onEvent(t *testing.T, cl *consulrig.Cluster, e upgrade.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.Step.Kind != planner.StepSwapServer {
		return
	}
	switch {
	case f.victim == "" && f.err == nil && e.Kind == upgrade.EventGateWaiting && e.Condition == planner.GateStable:
		f.swapped = e.Step.Node
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		leader, err := cl.Leader(ctx)
		if err != nil {
			f.err = err
			return
		}
		for _, s := range cl.Servers() {
			if s != f.swapped && s != leader {
				f.victim = s
				break
			}
		}
		if f.victim == "" {
			f.err = fmt.Errorf("no follower to kill besides %s (leader %s)", f.swapped, leader)
			return
		}
		if err := cl.Transport().Stop(ctx, f.victim, transport.StopKill); err != nil {
			f.err = err
			return
		}
		f.killedAt = time.Now()
		t.Logf("FAULT killed %s (leader %s) while the gate of %s waits for %s", f.victim, leader, f.swapped, e.Condition)
		if f.restartAfter > 0 {
			victim := f.victim
			time.AfterFunc(f.restartAfter, func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				err := cl.Transport().Start(ctx, victim)
				f.mu.Lock()
				defer f.mu.Unlock()
				f.restarted = time.Now()
				if err != nil {
					f.err = fmt.Errorf("restarting %s: %w", victim, err)
				}
				t.Logf("FAULT restarted %s after %s", victim, f.restarted.Sub(f.killedAt).Round(time.Millisecond))
			})
		}
	case f.victim != "" && e.Kind == upgrade.EventGateWaiting && e.Condition == planner.GateFailureTolerance && e.Step.Node == f.swapped:
		f.waitedFT++
	case f.victim != "" && e.Kind == upgrade.EventStepDone && e.Step.Node == f.swapped:
		f.gateDone = time.Now()
	}
}

// checkFault fails t unless the fault happened and the run never stopped a
// server while another was down.
func (f *fault) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		t.Fatalf("the fault could not be injected: %v", f.err)
	}
	if f.victim == "" {
		t.Fatal("no gate waited for a stable server: the fault was never injected")
	}
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	for _, v := range f.g.violations {
		t.Errorf("the run stopped a second server: %s", v)
	}
	t.Logf("server swaps and rollbacks asked of the transport: %v", f.g.acts)
	if f.waitedFT == 0 {
		t.Errorf("after %s was killed, the gate of %s never reported waiting for failure-tolerance", f.victim, f.swapped)
	}
}

// TestAServerKilledWhileAFollowersSwapIsGatedMakesTheRunWait: on each hop
// (1.12.9 -> 1.13.9, 1.15.4 -> 1.16.1) under recorded traffic; while the
// first swapped follower's gate waits, another follower is killed and
// started again 30 s later. The run waits (failure tolerance is 0
// meanwhile: no server is stopped), the gate passes only once the killed
// server is back, and the run completes with a linearizable history and no
// acknowledged write lost.
func TestAServerKilledWhileAFollowersSwapIsGatedMakesTheRunWait(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	for _, h := range hops {
		t.Run(h.String(), func(t *testing.T) { killWhileGatedWaits(t, h, new(traffic.Report)) })
	}
}

// killWhileGatedWaits runs the scenario on h; the report is the traffic's
// (filled in once the run has returned, also when t fails).
func killWhileGatedWaits(t *testing.T, h hop, report *traffic.Report) {
	f := &fault{restartAfter: 30 * time.Second}
	tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
	defer func() { *report = tr.Report }()
	fig := scenario.Run(t, scenario.Scenario{From: h.From, To: h.To, During: tr.During, Configure: f.configure(t)})
	f.check(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.restarted.IsZero() || !f.gateDone.After(f.restarted) {
		t.Errorf("the gate of %s passed at %s, the killed %s came back at %s: want the gate to wait for it",
			f.swapped, f.gateDone.Format(time.StampMilli), f.victim, f.restarted.Format(time.StampMilli))
	}
	t.Logf("FIGURES kill-during-gate, wait, %s: run wall %s; killed %s for %s, the gate of %s passed %s after the restart; traffic %s; writer lost %d of %d",
		h, fig.Wall.Round(100*time.Millisecond), f.victim, f.restarted.Sub(f.killedAt).Round(100*time.Millisecond), f.swapped,
		f.gateDone.Sub(f.restarted).Round(100*time.Millisecond), tr.Report, len(fig.Lost), len(fig.Writes.Acked))
}

// TestAServerKilledWhileAFollowersSwapIsGatedHaltsTheRun: as above, but
// the killed server stays down, the gate timeout is 45 s and rollback is
// on. The run halts with a *upgrade.HaltError wrapping a
// *upgrade.GateError on failure-tolerance; it refuses to roll the swapped
// server back (*upgrade.QuorumError: that would stop a second
// server, and before the refusal existed it did, for a few seconds without
// a quorum), and it stops nothing else. The traffic through the surviving
// agents stays linearizable. On each hop (1.12.9 -> 1.13.9, 1.15.4 ->
// 1.16.1).
func TestAServerKilledWhileAFollowersSwapIsGatedHaltsTheRun(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	for _, h := range hops {
		t.Run(h.String(), func(t *testing.T) { killWhileGatedHalts(t, h) })
	}
}

func killWhileGatedHalts(t *testing.T, h hop) {
	f := &fault{}
	tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
	var halt *upgrade.HaltError
	var haltAt time.Time
	configure := f.configure(t)
	fig := scenario.Run(t, scenario.Scenario{
		From: h.From, To: h.To, During: tr.During,
		Configure: func(cfg *upgrade.Config, cl *consulrig.Cluster) {
			configure(cfg, cl)
			cfg.GateTimeout = 45 * time.Second
			cfg.Rollback = true
		},
		Halted: func(t *testing.T, err error) {
			haltAt = time.Now()
			var ge *upgrade.GateError
			if !errors.As(err, &halt) || !errors.As(err, &ge) {
				t.Fatalf("run error %T %v, want a *upgrade.HaltError wrapping a *upgrade.GateError", err, err)
			}
			if ge.Condition != planner.GateFailureTolerance || !errors.Is(err, upgrade.ErrGateTimeout) {
				t.Errorf("the gate failed on %s (%v), want failure-tolerance timing out", ge.Condition, ge.Err)
			}
			if halt.RolledBack || len(halt.RolledBackNodes) > 0 {
				t.Errorf("the run rolled back %v while a second server was down", halt.RolledBackNodes)
			}
			var refused *upgrade.QuorumError
			if !errors.As(halt.RollbackErr, &refused) {
				t.Errorf("rollback error %v, want a *upgrade.QuorumError", halt.RollbackErr)
			}
		},
	})
	f.check(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	if halt != nil && halt.Step.Node != f.swapped {
		t.Errorf("halted at %s, want the gate of %s, the swap during which %s was killed", halt.Step.Node, f.swapped, f.victim)
	}
	// The operator brings the killed server back: the cluster the halt
	// left is healthy again (the swapped server on the target, the others
	// on the old version).
	healthyAfter(t, f.cl, "starting the killed "+f.victim+" again", func(ctx context.Context) error {
		return f.cl.Transport().Start(ctx, f.victim)
	})
	t.Logf("FIGURES kill-during-gate, halt, %s: run wall %s; killed %s %s before the run halted; halt: %v; traffic %s; writer lost %d of %d",
		h, fig.Wall.Round(100*time.Millisecond), f.victim, haltAt.Sub(f.killedAt).Round(100*time.Millisecond), halt, tr.Report, len(fig.Lost), len(fig.Writes.Acked))
}
