// Package run_test runs upgrade.Run and upgrade.Discover against real
// Consul agents (1.12.9 -> 1.13.9) on loopback addresses, started by
// tests/rig/consul: the upgrade under a writer, client waves, a broken
// binary halted and rolled back, resume, the two voters left after a server
// died, the features observed. They never skip: a missing or unbuildable
// Consul binary fails the test.
package run_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// countingTransport wraps the local transport to record which nodes were
// swapped or rolled back and how many client swaps were in flight at once.
type countingTransport struct {
	*local.Transport
	mu          sync.Mutex
	swaps       []transport.SwapRequest
	rollbacks   []string
	inFlight    int
	maxInFlight int
}

func (c *countingTransport) Swap(ctx context.Context, req transport.SwapRequest) error {
	c.mu.Lock()
	c.swaps = append(c.swaps, req)
	c.inFlight++
	if c.inFlight > c.maxInFlight {
		c.maxInFlight = c.inFlight
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inFlight--
		c.mu.Unlock()
	}()
	return c.Transport.Swap(ctx, req)
}

func (c *countingTransport) Rollback(ctx context.Context, node string) error {
	c.mu.Lock()
	c.rollbacks = append(c.rollbacks, node)
	c.mu.Unlock()
	return c.Transport.Rollback(ctx, node)
}

func (c *countingTransport) swapped() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, r := range c.swaps {
		out = append(out, r.Node)
	}
	return out
}

// raftTerm returns the raft term a server reports.
func raftTerm(t *testing.T, c *api.Client) int {
	t.Helper()
	self, err := c.Agent().Self()
	if err != nil {
		t.Fatalf("agent self: %v", err)
	}
	raft, _ := self["Stats"]["raft"].(map[string]interface{})
	term, err := strconv.Atoi(fmt.Sprint(raft["term"]))
	if err != nil {
		t.Fatalf("raft term %v: %v", raft["term"], err)
	}
	return term
}

// TestRunUpgradesRealCluster is scenario (a): 3 servers + 1 client,
// 1.12.9 -> 1.13.9, while a writer puts a key through the client agent every
// 20 ms. No acknowledged write may be lost, the leader is swapped only when
// it is the last server on the old version, every agent ends on 1.13.9, and
// no server is stopped before the previous one is a stable voter.
func TestRunUpgradesRealCluster(t *testing.T) {
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 3, Clients: 1, Version: scenario.FromVersion})
	client := scenario.APIClient(t, cl, "c1")
	server := scenario.APIClient(t, cl, "s1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	termBefore := raftTerm(t, scenario.APIClient(t, cl, scenario.MustLeader(t, cl)))
	electionsBefore := scenario.LeaderElections(t, cl)
	w := cl.StartWriter("c1", "writer", 20*time.Millisecond)
	writerStopped := false
	defer func() {
		if !writerStopped {
			w.Stop()
		}
	}()

	tr := &countingTransport{Transport: cl.Transport()}
	cfg := scenario.BaseConfig(t, cl, "c1", tr)

	var (
		violations   []string
		lastSwapped  string
		serverSwaps  int
		snapshots    int
		stabilizeFor time.Duration
		lockedOut    string
	)
	apc, err := server.Operator().AutopilotGetConfiguration(nil)
	if err != nil {
		t.Fatalf("autopilot configuration: %v", err)
	}
	stabilizeFor = apc.ServerStabilizationTime.Duration()
	cfg.OnEvent = func(e upgrade.Event) {
		t.Logf("event %-14s %-14s %s %s %s", e.Kind, e.Step.Kind, e.Step.Node, e.Condition, e.Detail)
		switch {
		case e.Kind == upgrade.EventSnapshotSaved:
			snapshots++
			// A second operator starting now is locked out and touches
			// nothing.
			other := &countingTransport{Transport: cl.Transport()}
			ocfg := scenario.BaseConfig(t, cl, "s2", other)
			ocfg.LockHolder = "operator-b"
			_, oerr := upgrade.Run(ctx, ocfg)
			var locked *upgrade.LockedError
			if !errors.As(oerr, &locked) {
				violations = append(violations, fmt.Sprintf("a second run during the upgrade returned %v, want *upgrade.LockedError", oerr))
			} else {
				lockedOut = locked.Error()
			}
			if n := len(other.swapped()); n != 0 {
				violations = append(violations, fmt.Sprintf("the locked-out run swapped %v", other.swapped()))
			}
		case e.Kind == upgrade.EventStepStarted && e.Step.Kind == planner.StepSwapServer:
			serverSwaps++
			// The leader, read now from the cluster itself: it may be
			// swapped only when every other server is already upgraded.
			leader := scenario.MustLeader(t, cl)
			versions := scenario.MemberVersions(t, client)
			if e.Step.Node == leader {
				for _, s := range cl.Servers() {
					if s != leader && versions[s] != scenario.ToVersion {
						violations = append(violations, fmt.Sprintf("leader %s swapped while %s still runs %s", leader, s, versions[s]))
					}
				}
			}
			// The previously swapped server must be a stable voter.
			if lastSwapped != "" {
				h, err := server.Operator().AutopilotServerHealth(nil)
				if err != nil {
					violations = append(violations, fmt.Sprintf("autopilot health before swapping %s: %v", e.Step.Node, err))
					break
				}
				ok := false
				for _, sh := range h.Servers {
					if sh.Name == lastSwapped {
						stableFor := time.Since(sh.StableSince)
						ok = sh.Voter && sh.Healthy && stableFor >= stabilizeFor
						if !ok {
							violations = append(violations, fmt.Sprintf("%s stopped while %s was voter=%v healthy=%v stable for %s (< %s)", e.Step.Node, lastSwapped, sh.Voter, sh.Healthy, stableFor, stabilizeFor))
						}
					}
				}
				if !ok && len(violations) == 0 {
					violations = append(violations, fmt.Sprintf("%s missing from autopilot health before %s was stopped", lastSwapped, e.Step.Node))
				}
			}
			lastSwapped = e.Step.Node
		}
	}

	start := time.Now()
	res, err := upgrade.Run(ctx, cfg)
	wall := time.Since(start)
	ws := w.Stop()
	writerStopped = true
	if err != nil {
		t.Fatalf("run: %v", err)
	}

	for _, v := range violations {
		t.Error(v)
	}
	if lockedOut == "" {
		t.Error("no second run was tried while the lock was held")
	}
	t.Logf("the second run was refused: %s", lockedOut)
	if p, _, err := server.KV().Get(upgrade.DefaultLockKey, nil); err != nil || p != nil {
		t.Errorf("lock key after the run: %v (err %v), want it released", p, err)
	}
	if serverSwaps != 3 {
		t.Errorf("server swaps = %d, want 3", serverSwaps)
	}
	if snapshots != 1 {
		t.Errorf("snapshots saved = %d, want 1 (before the first server swap)", snapshots)
	}
	for node, v := range scenario.MemberVersions(t, client) {
		if v != scenario.ToVersion {
			t.Errorf("%s ends on %s, want %s", node, v, scenario.ToVersion)
		}
	}
	if got := len(scenario.MemberVersions(t, client)); got != 4 {
		t.Errorf("members = %d, want 4", got)
	}
	missing, err := cl.MissingWrites(ctx, "s1", "writer", ws.Acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Errorf("%d acknowledged writes lost, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	termAfter := raftTerm(t, scenario.APIClient(t, cl, scenario.MustLeader(t, cl)))
	electionsAfter := scenario.LeaderElections(t, cl)

	t.Logf("FIGURES scenario a: wall %s; steps %d; writes acked %d, failed %d in %d burst(s), longest burst %s (e.g. %q); lost %d; raft term %d -> %d; leader elections in logs %d",
		wall.Round(100*time.Millisecond), len(res.Steps), len(ws.Acked), ws.Failed, ws.Bursts, ws.LongestBurst.Round(time.Millisecond), ws.Errors, len(missing), termBefore, termAfter, electionsAfter-electionsBefore)
	if len(ws.Acked) < 100 {
		t.Errorf("the writer acknowledged only %d writes; it did not run through the upgrade", len(ws.Acked))
	}
}

// TestRunClientWavesRespectMaxUnavailable is scenario (b): 3 servers and 6
// clients; the clients go after the servers, a canary first, then batches
// that never have more than MaxUnavailable clients down at once.
func TestRunClientWavesRespectMaxUnavailable(t *testing.T) {
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 3, Clients: 6, Version: scenario.FromVersion})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tr := &countingTransport{Transport: cl.Transport()}
	cfg := scenario.BaseConfig(t, cl, "s1", tr)
	cfg.Policy.Clients = planner.ClientPolicy{Canary: 1, BatchSize: 3, MaxUnavailable: 2}

	var waves [][]string
	serversDone := 0
	var order []string
	cfg.OnEvent = func(e upgrade.Event) {
		if e.Kind != upgrade.EventStepStarted {
			return
		}
		switch e.Step.Kind {
		case planner.StepSwapServer:
			order = append(order, "server")
			serversDone++
		case planner.StepSwapClients:
			order = append(order, "clients")
			waves = append(waves, e.Step.Nodes)
			if serversDone != 3 {
				t.Errorf("client wave %v started after %d of 3 servers", e.Step.Nodes, serversDone)
			}
		}
	}
	if _, err := upgrade.Run(ctx, cfg); err != nil {
		t.Fatalf("run: %v", err)
	}
	sizes := make([]int, len(waves))
	total := 0
	for i, w := range waves {
		sizes[i] = len(w)
		total += len(w)
	}
	if len(waves) < 2 || sizes[0] != 1 {
		t.Errorf("wave sizes = %v, want a canary of 1 first, then batches", sizes)
	}
	for i, s := range sizes[1:] {
		if s > 2 {
			t.Errorf("wave %d has %d clients, more than MaxUnavailable 2", i+1, s)
		}
	}
	if total != 6 {
		t.Errorf("clients swapped in waves = %d, want 6", total)
	}
	tr.mu.Lock()
	if tr.maxInFlight > 2 {
		t.Errorf("%d swaps were in flight at once, more than MaxUnavailable 2", tr.maxInFlight)
	}
	tr.mu.Unlock()
	for node, v := range scenario.MemberVersions(t, scenario.APIClient(t, cl, "s1")) {
		if v != scenario.ToVersion {
			t.Errorf("%s ends on %s, want %s", node, v, scenario.ToVersion)
		}
	}
	t.Logf("FIGURES scenario b: wave sizes %v, max swaps in flight %d, order %v", sizes, tr.maxInFlight, order)
}

// TestRunHaltsAndRollsBackBrokenBinary is scenario (c): the 1.13.9 binary
// exits at once. The first follower's swap fails; the run halts, no other
// node is touched, the follower goes back to 1.12.9 and the cluster ends
// healthy with all its data.
func TestRunHaltsAndRollsBackBrokenBinary(t *testing.T) {
	// The broken build answers `version` as the target (so the run's
	// pre-flight, which asks every binary its version, lets it through, as
	// it would a build that only fails once it runs an agent) and dies at
	// start.
	broken := t.TempDir() + "/consul-broken"
	script := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = version ]; then echo 'Consul v%s'; exit 0; fi\necho 'broken consul build' >&2\nexit 1\n", scenario.ToVersion)
	if err := os.WriteFile(broken, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	real := consulrig.Resolver(t)
	resolver := func(v string) (string, error) {
		if v == scenario.ToVersion {
			return broken, nil
		}
		return real(v)
	}
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 3, Clients: 1, Version: scenario.FromVersion, Resolver: resolver})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 0; i < 50; i++ {
		if err := cl.KVPut(ctx, "c1", fmt.Sprintf("data/%02d", i), strconv.Itoa(i)); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	pids := map[string]int{}
	for _, n := range cl.Nodes() {
		pids[n] = cl.Transport().PID(n)
	}
	tr := &countingTransport{Transport: cl.Transport()}
	cfg := scenario.BaseConfig(t, cl, "c1", tr)
	cfg.Rollback = true
	_, err := upgrade.Run(ctx, cfg)
	var halt *upgrade.HaltError
	if !errors.As(err, &halt) {
		t.Fatalf("run error = %v, want *upgrade.HaltError", err)
	}
	if !halt.RolledBack {
		t.Errorf("halt.RolledBack = false (rollback error: %v)", halt.RollbackErr)
	}
	if !errors.Is(err, transport.ErrNotRunning) {
		t.Errorf("run error does not wrap transport.ErrNotRunning: %v", err)
	}
	swapped := tr.swapped()
	if len(swapped) != 1 {
		t.Fatalf("swapped nodes = %v, want exactly one", swapped)
	}
	failed := swapped[0]
	if failed != halt.Step.Node {
		t.Errorf("halted on %s, but swapped %s", halt.Step.Node, failed)
	}
	if tr.rollbacks == nil || tr.rollbacks[0] != failed {
		t.Errorf("rollbacks = %v, want [%s]", tr.rollbacks, failed)
	}
	for n, pid := range pids {
		if n != failed && cl.Transport().PID(n) != pid {
			t.Errorf("%s was restarted (pid %d -> %d) although only %s was to be touched", n, pid, cl.Transport().PID(n), failed)
		}
	}
	if err := cl.WaitHealthy(ctx); err != nil {
		t.Fatalf("cluster not healthy after rollback: %v", err)
	}
	for node, v := range scenario.MemberVersions(t, scenario.APIClient(t, cl, "c1")) {
		if v != scenario.FromVersion {
			t.Errorf("%s runs %s after rollback, want %s", node, v, scenario.FromVersion)
		}
	}
	for i := 0; i < 50; i++ {
		v, ok, err := cl.KVGet(ctx, "c1", fmt.Sprintf("data/%02d", i))
		if err != nil || !ok || v != strconv.Itoa(i) {
			t.Errorf("data/%02d = %q found=%v err=%v after rollback", i, v, ok, err)
		}
	}
}

// TestRunResumesWithoutRepeatingDoneWork is scenario (d): a run cancelled
// after its first server swap is resumed by a new Run, which finishes the
// upgrade without swapping that server again.
func TestRunResumesWithoutRepeatingDoneWork(t *testing.T) {
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 3, Clients: 1, Version: scenario.FromVersion})
	tr := &countingTransport{Transport: cl.Transport()}

	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	cfg := scenario.BaseConfig(t, cl, "c1", tr)
	var first string
	var stepsAfterCancel atomic.Int32
	cfg.OnEvent = func(e upgrade.Event) {
		if e.Kind == upgrade.EventStepStarted && first != "" {
			stepsAfterCancel.Add(1)
		}
		if e.Kind == upgrade.EventStepDone && e.Step.Kind == planner.StepSwapServer && first == "" {
			first = e.Step.Node
			cancel1()
		}
	}
	_, err := upgrade.Run(ctx1, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run error = %v, want context.Canceled", err)
	}
	if first == "" {
		t.Fatal("the first run swapped no server before it was cancelled")
	}
	if n := stepsAfterCancel.Load(); n != 0 {
		t.Errorf("%d steps started after the cancel", n)
	}
	pid := cl.Transport().PID(first)
	firstRunSwaps := len(tr.swapped())

	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel2()
	cfg2 := scenario.BaseConfig(t, cl, "c1", tr)
	if _, err := upgrade.Run(ctx2, cfg2); err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	second := tr.swapped()[firstRunSwaps:]
	for _, n := range second {
		if n == first {
			t.Errorf("the resumed run swapped %s again (swaps: %v)", first, second)
		}
	}
	if len(second) != 3 { // two servers and the client
		t.Errorf("resumed run swapped %v, want the two other servers and c1", second)
	}
	if cl.Transport().PID(first) != pid {
		t.Errorf("%s was restarted by the resumed run", first)
	}
	for node, v := range scenario.MemberVersions(t, scenario.APIClient(t, cl, "c1")) {
		if v != scenario.ToVersion {
			t.Errorf("%s ends on %s, want %s", node, v, scenario.ToVersion)
		}
	}
}
