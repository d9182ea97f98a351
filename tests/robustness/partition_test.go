package robustness_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
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

// partition cuts one agent off from the other agents of its cluster with
// iptables rules on loopback. Consul binds its RPC and Raft connections and
// its serf UDP to the agent's own 127.0.N.x, but memberlist dials its TCP
// streams (push-pull, fallback pings) without a source address, so they
// leave from 127.0.0.1, whichever agent dials. The rules, for node X and
// every other agent P of the cluster:
//
//   - every packet from X to P and from P to X (RPC, Raft, serf UDP);
//   - TCP from anywhere to X's ports 8300-8302 (memberlist TCP into X);
//   - TCP from 127.0.0.1 to P's ports 8301-8302 (memberlist TCP out of X;
//     this also stops the TCP streams between the other agents, which
//     still gossip over UDP, and join no one meanwhile).
//
// The test's own HTTP calls (the recorder's, the transport's readiness
// checks, the run's) go from 127.0.0.1 to port 8500 and still reach X: the
// partition is between the agents, as between racks. The rules carry a
// comment naming the cluster's address block, so that rules a crashed
// earlier run left behind are removed before the block is cut again, and
// t.Cleanup removes them even when the test fails.
type partition struct {
	t     *testing.T
	tag   string
	node  string
	ip    string
	peers []string // the other agents' addresses
	rules [][]string

	mu     sync.Mutex
	active bool
	cutAt  time.Time
	healAt time.Time
}

// needIPTables fails t when iptables is missing.
func needIPTables(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatalf("iptables is not installed (%v): the partition tests cut a server off with firewall rules on loopback; run scripts/ensure-iptables.sh (Debian's iptables package) as root", err)
	}
}

// newPartition prepares (does not cut) a partition of node from every
// other agent of cl; t.Cleanup removes its rules. It may be called from
// any goroutine (it does not fail t).
func newPartition(t *testing.T, cl *consulrig.Cluster, node string) (*partition, error) {
	p := &partition{t: t, tag: fmt.Sprintf("consul-upgrade-partition-block-%d", cl.Block()), node: node, ip: cl.Address(node)}
	for _, n := range cl.Nodes() {
		if n != node {
			p.peers = append(p.peers, cl.Address(n))
		}
	}
	drop := func(match ...string) {
		p.rules = append(p.rules, append(append([]string{"INPUT"}, match...), "-m", "comment", "--comment", p.tag, "-j", "DROP"))
	}
	for _, peer := range p.peers {
		drop("-s", p.ip, "-d", peer)
		drop("-s", peer, "-d", p.ip)
		drop("-s", "127.0.0.1", "-d", peer, "-p", "tcp", "--dport", "8301:8302")
	}
	drop("-d", p.ip, "-p", "tcp", "--dport", "8300:8302")
	if err := p.removeTagged(); err != nil {
		return nil, fmt.Errorf("removing stale partition rules of an earlier run: %w", err)
	}
	t.Cleanup(func() {
		if err := p.removeTagged(); err != nil {
			t.Errorf("partition rules left in place: %v; remove them with iptables -S INPUT | grep %s", err, p.tag)
		}
	})
	return p, nil
}

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w", "10"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeTagged deletes every INPUT rule carrying the partition's tag.
func (p *partition) removeTagged() error {
	out, err := exec.Command("iptables", "-w", "10", "-S", "INPUT").CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables -S INPUT: %v: %s", err, strings.TrimSpace(string(out)))
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A INPUT ") || !strings.Contains(line, p.tag) {
			continue
		}
		args := append([]string{"-D"}, strings.Fields(strings.TrimPrefix(line, "-A "))...)
		for i, a := range args { // iptables -S quotes comments with spaces; ours has none
			args[i] = strings.Trim(a, `"`)
		}
		errs = append(errs, iptables(args...))
	}
	return errors.Join(errs...)
}

// reachable returns nil when a TCP connection from the address from to
// the address to, port 8301 (serf LAN), succeeds within a second.
func reachable(from, to string) error {
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", net.JoinHostPort(to, "8301"))
	if err != nil {
		return err
	}
	return c.Close()
}

// paths are the connections the partition must cut: from every peer's
// address to the node, from 127.0.0.1 to the node and from 127.0.0.1 to
// every peer (memberlist's unbound TCP).
func (p *partition) paths() [][2]string {
	out := [][2]string{{"127.0.0.1", p.ip}}
	for _, peer := range p.peers {
		out = append(out, [2]string{peer, p.ip}, [2]string{"127.0.0.1", peer})
	}
	return out
}

// cut inserts the rules, then proves them: every path of paths() must
// fail to connect.
func (p *partition) cut() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.rules {
		if err := iptables(append([]string{"-I"}, r...)...); err != nil {
			return err
		}
	}
	p.active = true
	p.cutAt = time.Now()
	for i, err := range probe(p.paths()) {
		if err == nil {
			path := p.paths()[i]
			return fmt.Errorf("partition of %s (%s) does not hold: %s still connects to %s:8301", p.node, p.ip, path[0], path[1])
		}
	}
	return nil
}

// probe tries every path at once (a cut path takes the whole second).
func probe(paths [][2]string) []error {
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, path := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = reachable(path[0], path[1])
		}()
	}
	wg.Wait()
	return errs
}

// heal deletes the rules, then proves it: every peer connects again.
func (p *partition) heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, r := range p.rules {
		errs = append(errs, iptables(append([]string{"-D"}, r...)...))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.active = false
	p.healAt = time.Now()
	for i, err := range probe(p.paths()) {
		if err != nil {
			path := p.paths()[i]
			return fmt.Errorf("partition of %s healed, but %s still cannot connect to %s:8301: %v", p.node, path[0], path[1], err)
		}
	}
	return nil
}

// isolated names the node while it is cut off (for guard).
func (p *partition) isolated() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active {
		return []string{p.node}
	}
	return nil
}

// TestThePartitionCutsTheServerOff proves the partition on a running
// cluster before the upgrade tests rely on it: while the rules hold, no
// peer connects to the partitioned server and, after a few seconds, the
// other servers see it failed in serf; once healed, it is alive again.
func TestThePartitionCutsTheServerOff(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	cl := consulrig.Start(t, consulrig.Options{Version: "1.12.9"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	needIPTables(t)
	p, err := newPartition(t, cl, "s3")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range p.paths() {
		if err := reachable(path[0], path[1]); err != nil {
			t.Fatalf("before the partition, %s cannot connect to %s:8301: %v", path[0], path[1], err)
		}
	}
	if err := p.cut(); err != nil {
		t.Fatal(err)
	}
	status := func(observer string) int {
		ms, err := cl.Members(ctx, observer)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Name == "s3" {
				return m.Status
			}
		}
		return -1
	}
	deadline := time.Now().Add(time.Minute)
	for status("s1") == 1 {
		if time.Now().After(deadline) {
			t.Fatal("s1 still sees s3 alive in serf a minute after the partition")
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("s1 sees s3 with serf status %d %s after the cut", status("s1"), time.Since(p.cutAt).Round(100*time.Millisecond))
	if err := p.heal(); err != nil {
		t.Fatal(err)
	}
	healthyAfter(t, cl, "healing the partition of s3", nil)
}

// TestASwappedServerPartitionedRightAfterItsRestartHoldsItsGate: on each
// hop, under recorded traffic, the first server swapped is cut off from
// every other agent as soon as the transport has restarted it on the
// target version, and healed 25 s later. Its gate must report waiting
// while it is cut off and pass only after the heal; no other server is
// swapped meanwhile (the guard counts the partitioned server as down); the
// run completes on a healthy cluster with a linearizable history and no
// acknowledged write lost.
func TestASwappedServerPartitionedRightAfterItsRestartHoldsItsGate(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	for _, h := range hops {
		t.Run(h.String(), func(t *testing.T) { partitionedAfterRestart(t, h, 25*time.Second, new(traffic.Report)) })
	}
}

// partitioner cuts the first server it swaps off right after the swap.
type partitioner struct {
	*guard
	t    *testing.T
	hold time.Duration
	p    *partition
	err  error

	mu       sync.Mutex
	waits    []string  // gate-waiting conditions of the node while it was cut off
	gateDone time.Time // the node's step-done
}

func (pt *partitioner) Swap(ctx context.Context, req transport.SwapRequest) error {
	if err := pt.guard.Swap(ctx, req); err != nil {
		return err
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if req.Role != transport.RoleServer || pt.p != nil {
		return nil
	}
	p, err := newPartition(pt.t, pt.cl, req.Node)
	if err != nil {
		pt.err = err
		return nil
	}
	pt.p = p
	pt.guard.isolated = pt.p.isolated
	if err := pt.p.cut(); err != nil {
		pt.err = err
		return nil
	}
	pt.t.Logf("FAULT partitioned %s (%s) from %v right after its swap to %s; healing in %s", req.Node, pt.p.ip, pt.p.peers, req.To, pt.hold)
	time.AfterFunc(pt.hold, func() {
		err := pt.p.heal()
		pt.mu.Lock()
		defer pt.mu.Unlock()
		if err != nil && pt.err == nil {
			pt.err = err
		}
		pt.t.Logf("FAULT healed the partition of %s after %s", req.Node, pt.p.healAt.Sub(pt.p.cutAt).Round(100*time.Millisecond))
	})
	return nil
}

func (pt *partitioner) onEvent(e upgrade.Event) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.p == nil || e.Step.Kind != planner.StepSwapServer || e.Step.Node != pt.p.node {
		return
	}
	switch e.Kind {
	case upgrade.EventGateWaiting:
		if len(pt.p.isolated()) > 0 {
			pt.waits = append(pt.waits, string(e.Condition))
		}
	case upgrade.EventStepDone:
		pt.gateDone = time.Now()
	}
}

// partitionedAfterRestart runs the scenario on h; the report is the
// traffic's (filled in once the run has returned, also when t fails).
func partitionedAfterRestart(t *testing.T, h hop, hold time.Duration, report *traffic.Report) {
	tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 8}}
	defer func() { *report = tr.Report }()
	var pt *partitioner
	var cl *consulrig.Cluster
	fig := scenario.Run(t, scenario.Scenario{
		From: h.From, To: h.To, During: tr.During,
		Configure: func(cfg *upgrade.Config, c *consulrig.Cluster) {
			needIPTables(t)
			cl = c
			pt = &partitioner{guard: &guard{Transport: c.Transport(), cl: c}, t: t, hold: hold}
			cfg.Transport = pt
			prev := cfg.OnEvent
			cfg.OnEvent = func(e upgrade.Event) {
				prev(e)
				pt.onEvent(e)
			}
		},
	})
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.err != nil {
		t.Fatalf("the partition could not be made or healed: %v", pt.err)
	}
	if pt.p == nil {
		t.Fatal("no server was swapped: the partition was never made")
	}
	p := pt.p
	pt.guard.mu.Lock()
	for _, v := range pt.guard.violations {
		t.Errorf("the run stopped a second server: %s", v)
	}
	t.Logf("server swaps and rollbacks asked of the transport: %v", pt.guard.acts)
	pt.guard.mu.Unlock()
	if len(pt.waits) == 0 {
		t.Errorf("the gate of %s never reported waiting while it was cut off", p.node)
	}
	if p.healAt.IsZero() || !pt.gateDone.After(p.healAt) {
		t.Errorf("the gate of %s passed at %s, the partition (cut at %s) healed at %s: want the gate to hold until the heal",
			p.node, pt.gateDone.Format(time.StampMilli), p.cutAt.Format(time.StampMilli), p.healAt.Format(time.StampMilli))
	}
	healthyAfter(t, cl, "the run", nil)
	waits := slices.Compact(slices.Clone(pt.waits))
	t.Logf("FIGURES partition after restart, %s: run wall %s; %s cut off for %s, gate waited on %v meanwhile and passed %s after the heal; traffic %s; writer lost %d of %d",
		h, fig.Wall.Round(100*time.Millisecond), p.node, p.healAt.Sub(p.cutAt).Round(100*time.Millisecond), waits,
		pt.gateDone.Sub(p.healAt).Round(100*time.Millisecond), tr.Report, len(fig.Lost), len(fig.Writes.Acked))
}
