package lock_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// slowClientRestarts is the rig's transport with client agents that stay
// down until serf has found them failed before they start on their new
// version, as an operator's agent restart often does (a package install, a
// service manager's back-off): a session bound to the client's serfHealth
// does not survive its swap. (The rig restarts an agent in well under a
// second, faster than serf can tell, which hides the loss.)
type slowClientRestarts struct {
	*local.Transport
	cl *consulrig.Cluster
	t  *testing.T
	// node, when set, is the only node slowed (client or server).
	node string
}

func (s slowClientRestarts) Swap(ctx context.Context, req transport.SwapRequest) error {
	if (s.node == "" && req.Role != transport.RoleClient) || (s.node != "" && req.Node != s.node) {
		return s.Transport.Swap(ctx, req)
	}
	if err := s.Transport.Stop(ctx, req.Node, req.StopMode); err != nil {
		return &transport.SwapError{Node: req.Node, Phase: transport.PhaseStop, To: req.To, Err: err}
	}
	began := time.Now()
	for {
		for _, srv := range s.cl.Servers() {
			if srv == req.Node {
				continue
			}
			members, err := s.cl.Members(ctx, srv)
			if err != nil {
				continue
			}
			for _, m := range members {
				if m.Name == req.Node && (m.Status == 4 || m.Status == 3) {
					s.t.Logf("%s stopped; %s found it failed (serf status %d) %.1fs later; starting it on %s", req.Node, srv, m.Status, time.Since(began).Seconds(), req.To)
					return s.Transport.Swap(ctx, req)
				}
			}
		}
		select {
		case <-ctx.Done():
			return &transport.SwapError{Node: req.Node, Phase: transport.PhaseStart, To: req.To, Err: ctx.Err()}
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// lockNodeOnAny returns the node of the session holding key, read through
// the first of nodes whose agent answers ("" when no session holds it).
func lockNodeOnAny(ctx context.Context, cl *consulrig.Cluster, key string, nodes ...string) (string, error) {
	var errs []string
	for _, n := range nodes {
		c, err := api.NewClient(&api.Config{Address: cl.HTTPAddr(n)})
		if err != nil {
			return "", err
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		p, _, err := c.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(rctx))
		if err == nil && (p == nil || p.Session == "") {
			cancel()
			return "", nil
		}
		var s *api.SessionEntry
		if err == nil {
			s, _, err = c.Session().Info(p.Session, (&api.QueryOptions{RequireConsistent: true}).WithContext(rctx))
		}
		cancel()
		if err == nil && s != nil {
			return s.Node, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", n, err))
	}
	return "", fmt.Errorf("no agent told the lock's session: %s", strings.Join(errs, "; "))
}

// The case of issue 18: a real cluster of 3 servers and a client on 0.6.4
// taken to 0.9.3 in one Run through the client's agent, as an operator
// runs it from a host with a local agent. The path is 0.6.4 -> 0.7.5 ->
// 0.9.3, each hop followed by its client wave. The lock's session is made
// through the client on 0.6.4, so it is on c1 and bound to c1's serfHealth
// (Consul before 1.0 ignores "Checks": []). The first step that stops c1 is
// the 0.7.5 client wave: the servers run 0.7.5 then, but c1 has no
// /v1/txn, so the lock moves to a server in one transaction through that
// server's own HTTP API. At the 0.9.3 hop the leader, where the lock went,
// is swapped last, and the lock moves again, through the run's agent
// (c1, on 0.7.5 by then). Before, the lock stayed on c1 and was lost at a
// client wave ("upgrade lock lost: its session was invalidated").
//
// Each client stays down until serf finds it failed (slowClientRestarts),
// so a lock left on it would be lost. The lock's holder is read at every
// step's start and end: it is held throughout. The moves are logged with their time into the run.
func TestRealOneRunThroughAClientFrom064To093KeepsItsLock(t *testing.T) {
	cl := consulrig.Start(t, consulrig.Options{Version: "0.6.4", Servers: 3, Clients: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
	defer cancel()
	c1 := cl.Clients()[0]
	c, err := upgrade.ConnectAddr(cl.HTTPAddr(c1))
	if err != nil {
		t.Fatal(err)
	}
	agents := append([]string{c1}, cl.Servers()...)
	type held struct {
		at   time.Duration
		step string
		node string
	}
	var (
		holders []held
		moves   []upgrade.Event
		start   = time.Now()
	)
	record := func(step string) {
		node, err := lockNodeOnAny(ctx, cl, upgrade.DefaultLockKey, agents...)
		if err != nil {
			t.Errorf("at %s: %v", step, err)
		}
		holders = append(holders, held{time.Since(start), step, node})
	}
	res, err := upgrade.Run(ctx, upgrade.Config{
		Consul: c, Transport: slowClientRestarts{Transport: cl.Transport(), cl: cl, t: t}, Target: "0.9.3",
		Snapshot: upgrade.SnapshotDir(t.TempDir()), ServerAPI: upgrade.ServerHTTP(8500),
		StabilizationTime: 3 * time.Second, GateTimeout: 2 * time.Minute,
		OnEvent: func(e upgrade.Event) {
			t.Logf("%6.1fs %s %s %s %s", time.Since(start).Seconds(), e.Kind, e.Step, e.Node, e.Detail)
			switch e.Kind {
			case upgrade.EventStepStarted:
				record(e.Step.String())
			case upgrade.EventStepDone:
				record(e.Step.String() + " done") // the last one is before the run gives the lock back
			case upgrade.EventLockMoved:
				moves = append(moves, e)
				if e.Err != nil {
					t.Errorf("lock move failed at %s: %v", e.Step, e.Err)
				}
			}
		},
	})
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("Run 0.6.4 -> 0.9.3 through %s: %v", c1, err)
	}
	for _, h := range holders {
		t.Logf("lock at %6.1fs (%s): on %s", h.at.Seconds(), h.step, h.node)
		if h.node == "" {
			t.Errorf("the lock was not held at %s (%.1fs into the run)", h.step, h.at.Seconds())
		}
	}
	for _, m := range moves {
		t.Logf("LOCK-MOVED %.1fs into the run, at %s: %s", m.Time.Sub(start).Seconds(), m.Step, m.Detail)
	}
	if len(moves) != 2 {
		t.Fatalf("%d lock moves, want two: off c1 at the 0.7.5 client wave, off the leader at its 0.9.3 swap", len(moves))
	}
	first, second := moves[0], moves[1]
	if first.Step.Kind != planner.StepSwapClients || first.Step.To != "0.7.5" || !strings.Contains(first.Detail, "its session was on "+c1) ||
		!strings.Contains(first.Detail, "own HTTP API (the run's agent has no /v1/txn)") {
		t.Errorf("first move at %s: %s; want the lock moved off %s at the 0.7.5 client wave, through a server's own API", first.Step, first.Detail, c1)
	}
	if second.Step.Kind != planner.StepSwapServer || second.Step.To != "0.9.3" || second.Step.Node != first.Node ||
		!strings.Contains(second.Detail, "in one transaction through the run's agent") {
		t.Errorf("second move at %s: %s; want the lock moved off %s before its 0.9.3 swap, through the run's agent", second.Step, second.Detail, first.Node)
	}
	members, err := cl.Members(ctx, c1)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Status != 1 || m.Build() != "0.9.3" {
			t.Errorf("member %s: status %d on %s, want alive on 0.9.3", m.Name, m.Status, m.Build())
		}
	}
	t.Logf("FIGURES 0.6.4 -> 0.9.3 through %s: %d steps, wall %s, lock moves %d", c1, len(res.Steps), wall.Round(100*time.Millisecond), len(moves))
}

// Before every server runs 0.7.0 no transaction can move the lock (a 0.6
// server crashes on one, measured). A run through a server's own agent on
// 0.6.4 has its lock's session on that server, bound to its serfHealth;
// here that server stays down until serf finds it failed. Before its swap
// the lock moves by a release and an acquire, and is held to the end.
// Before, it stayed on the server and was lost at its swap.
func TestRealARunThroughA064ServerMovesItsLockByAReleaseAndAnAcquire(t *testing.T) {
	cl := consulrig.Start(t, consulrig.Options{Version: "0.6.4", Servers: 3, Clients: -1})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	s1 := cl.Servers()[0]
	c, err := upgrade.ConnectAddr(cl.HTTPAddr(s1))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var moves []upgrade.Event
	var holders []string
	res, err := upgrade.Run(ctx, upgrade.Config{
		Consul: c, Transport: slowClientRestarts{Transport: cl.Transport(), cl: cl, t: t, node: s1}, Target: "0.7.5",
		Snapshot: upgrade.SnapshotDir(t.TempDir()), ServerAPI: upgrade.ServerHTTP(8500),
		StabilizationTime: 3 * time.Second, GateTimeout: 2 * time.Minute,
		OnEvent: func(e upgrade.Event) {
			t.Logf("%6.1fs %s %s %s %s", time.Since(start).Seconds(), e.Kind, e.Step, e.Node, e.Detail)
			switch e.Kind {
			case upgrade.EventStepDone:
				node, err := lockNodeOnAny(ctx, cl, upgrade.DefaultLockKey, cl.Servers()...)
				if err != nil || node == "" {
					t.Errorf("after %s the lock is on %q (%v), want it held", e.Step, node, err)
				}
				holders = append(holders, node)
			case upgrade.EventLockMoved:
				moves = append(moves, e)
			}
		},
	})
	if err != nil {
		t.Fatalf("Run 0.6.4 -> 0.7.5 through %s: %v", s1, err)
	}
	t.Logf("lock after each step: %v", holders)
	// The lock moves to the leader, swapped last: a second move takes it
	// off the leader, to a server already on 0.7.5, while the leader
	// still runs 0.6.4.
	if len(moves) == 0 {
		t.Fatalf("no lock move; want one off %s before its swap", s1)
	}
	on := s1
	for _, m := range moves {
		t.Logf("LOCK-MOVED %.1fs into the run, at %s: %s", m.Time.Sub(start).Seconds(), m.Step, m.Detail)
		if m.Err != nil || m.Step.Node != on || !strings.Contains(m.Detail, "by a release and an acquire") || !strings.Contains(m.Detail, "runs 0.6.4") {
			t.Errorf("lock move at %s: %s (err %v); want it off %s, by a release and an acquire (a server on 0.6.4)", m.Step, m.Detail, m.Err, on)
		}
		on = m.Node
	}
	t.Logf("FIGURES 0.6.4 -> 0.7.5 through %s: %d steps, wall %s, lock moves %d", s1, len(res.Steps), time.Since(start).Round(100*time.Millisecond), len(moves))
}
