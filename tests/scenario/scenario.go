// Package scenario runs one upgrade of a real loopback Consul cluster
// under a writer, for the project's integration tests: it starts the
// cluster (tests/rig/consul), waits until it is healthy as its own era
// can tell, runs upgrade.Run while a writer puts a key through a client
// agent every 20 ms and a watch records every change of leader, then
// checks what every such test must hold (the run completed, no
// acknowledged write is lost, every agent ends on the target) and returns
// the figures. The test adds the assertions of its scenario.
package scenario

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// Scenario is one upgrade of a fresh cluster.
type Scenario struct {
	From, To string
	// Servers and Clients default to 3 and 1.
	Servers, Clients int
	Policy           planner.Policy
	// Rig adds to the cluster's options (ServerArgsFor, RaftMultiplier...).
	Rig consulrig.Options
	// Configure adjusts the run's Config before it starts.
	Configure func(*upgrade.Config, *consulrig.Cluster)
	// Timeout bounds the run (default 10 minutes).
	Timeout time.Duration
	// During, when set, starts more load on the ready cluster just before
	// the run (e.g. Traffic.During); the function it returns is called
	// when the run has returned, before the run's error is looked at.
	During func(t *testing.T, cl *consulrig.Cluster) (stop func())
	// Halted, when set, means the run is expected to halt (see halt.go):
	// Run hands it the run's error and checks only the writer.
	Halted func(t *testing.T, err error)
}

// Figures are what one run measured.
type Figures struct {
	Wall      time.Duration
	Writes    consulrig.WriterStats
	Lost      []string
	Leaders   []string // distinct consecutive leaders seen through the client
	Gaps      int      // leader polls that saw no leader
	Elections int      // "entering leader state" lines added to the servers' logs
	// ServerLogs are the servers' log files (gone once the test ends).
	ServerLogs []string
	Steps      []planner.Step
	// Gates are the gate checks of the server steps, by hop target.
	Gates map[string][]planner.GateCheck
	// GateEras are the API eras whose checks the server steps' gates
	// applied, in order.
	GateEras []upgrade.Era
	// Backups are the details of the backup events (snapshot or logical).
	Backups  []string
	Versions map[string]string // alive members at the end
	Result   *upgrade.Result
}

// Kinds returns the steps of the given kind.
func (f Figures) Kinds(k planner.StepKind) []planner.Step {
	var out []planner.Step
	for _, s := range f.Steps {
		if s.Kind == k {
			out = append(out, s)
		}
	}
	return out
}

func (f Figures) String() string {
	var hops []string
	for _, s := range f.Steps {
		if len(hops) == 0 || hops[len(hops)-1] != s.To {
			hops = append(hops, s.To)
		}
	}
	gates := make([]string, 0, len(f.Gates))
	for _, to := range hops {
		if g, ok := f.Gates[to]; ok {
			gates = append(gates, fmt.Sprintf("%s: %v", to, g))
		}
	}
	return fmt.Sprintf("wall %s; steps %d over hops %v; writes acked %d, failed %d in %d run(s), longest run of failures %s; lost %d; leaders seen %v (%d changes, %d polls without a leader); elections in logs %d; server gates {%s} applied with the checks of eras %v",
		f.Wall.Round(100*time.Millisecond), len(f.Steps), hops, len(f.Writes.Acked), f.Writes.Failed, f.Writes.Bursts, f.Writes.LongestBurst.Round(time.Millisecond),
		len(f.Lost), f.Leaders, max(len(f.Leaders)-1, 0), f.Gaps, f.Elections, strings.Join(gates, "; "), f.GateEras)
}

// Run starts the scenario's cluster, upgrades it and checks the common
// invariants. It fails t (Fatal) when the run does not complete.
func Run(t *testing.T, sc Scenario) Figures {
	t.Helper()
	if sc.Servers == 0 {
		sc.Servers = 3
	}
	if sc.Clients == 0 {
		sc.Clients = 1
	}
	if sc.Timeout == 0 {
		sc.Timeout = 10 * time.Minute
	}
	opt := sc.Rig
	opt.Servers, opt.Clients, opt.Version = sc.Servers, sc.Clients, sc.From
	cl := consulrig.Start(t, opt)
	if sc.Policy.Strategy == planner.Replace {
		if err := cl.ProvisionServers(sc.Servers); err != nil {
			t.Fatal(err)
		}
	}
	client := cl.Clients()[0]
	consul, err := upgrade.ConnectAddr(cl.HTTPAddr(client))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sc.Timeout)
	defer cancel()

	logs := serverLogs(cl, nil)
	f := Figures{Gates: map[string][]planner.GateCheck{}}
	cfg := upgrade.Config{
		Consul:      consul,
		Transport:   cl.Transport(),
		Target:      sc.To,
		Policy:      sc.Policy,
		Snapshot:    upgrade.SnapshotDir(t.TempDir()),
		GateTimeout: 3 * time.Minute,
		// Every server of the rig answers HTTP on its own address: the
		// gates poll a swapped server's own API (crash loops, old eras).
		ServerAPI: upgrade.ServerHTTP(8500),
		OnEvent: func(e upgrade.Event) {
			t.Logf("event %-14s %-15s %s %s %s", e.Kind, e.Step.Kind, e.Step.Node, e.Condition, e.Detail)
			switch e.Kind {
			case upgrade.EventStepStarted:
				f.Steps = append(f.Steps, e.Step)
				if e.Step.Kind == planner.StepSwapServer || e.Step.Kind == planner.StepAddServer {
					f.Gates[e.Step.To] = e.Step.Gate
				}
			case upgrade.EventStepDone:
				if e.Step.Kind == planner.StepSwapServer || e.Step.Kind == planner.StepAddServer {
					f.GateEras = append(f.GateEras, e.Era)
				}
			case upgrade.EventSnapshotSaved:
				f.Backups = append(f.Backups, e.Detail)
			case upgrade.EventProvisioned:
				logs = append(logs, cl.LogPath(e.Step.Node))
			}
		},
	}
	if sc.Configure != nil {
		sc.Configure(&cfg, cl)
	}
	WaitReady(t, ctx, cfg, sc.Servers)
	before := ElectionsIn(t, logs)

	w := cl.StartWriter(client, "writer", 20*time.Millisecond)
	lw := cl.WatchLeader(client, 25*time.Millisecond)
	stopDuring := func() {}
	if sc.During != nil {
		stopDuring = sc.During(t, cl)
	}
	start := time.Now()
	f.Result, err = upgrade.Run(ctx, cfg)
	f.Wall = time.Since(start)
	stopDuring()
	f.Writes = w.Stop()
	f.Leaders, f.Gaps = lw.Stop()
	if sc.Halted != nil {
		return halted(t, ctx, sc, cl, f, err)
	}
	if err != nil {
		t.Fatalf("run %s -> %s: %v", sc.From, sc.To, err)
	}
	f.Lost, err = cl.MissingWrites(ctx, client, "writer", f.Writes.Acked)
	if err != nil {
		t.Fatal(err)
	}
	f.ServerLogs = serverLogs(cl, logs)
	f.Elections = ElectionsIn(t, f.ServerLogs) - before
	members, err := cl.Members(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	f.Versions = map[string]string{}
	for _, m := range members {
		if m.Status == 1 {
			f.Versions[m.Name] = m.Build()
		}
	}
	t.Logf("FIGURES %s -> %s (%s): %s", sc.From, sc.To, policyName(sc.Policy), f)

	if len(f.Lost) != 0 {
		t.Errorf("%d acknowledged writes lost, e.g. %v", len(f.Lost), f.Lost[:min(5, len(f.Lost))])
	}
	if len(f.Writes.Acked) < 100 {
		t.Errorf("the writer acknowledged only %d writes; it did not run through the upgrade", len(f.Writes.Acked))
	}
	for n, v := range f.Versions {
		if v != sc.To {
			t.Errorf("%s ends on %s, want %s", n, v, sc.To)
		}
	}
	if len(f.Versions) != sc.Servers+sc.Clients {
		t.Errorf("alive members at the end: %v, want %d servers and %d client(s)", f.Versions, sc.Servers, sc.Clients)
	}
	return f
}

// WaitReady waits until the cluster, as upgrade.Discover sees it with the
// run's config, has a leader and n servers that are healthy voters: an
// upgrade starts on a healthy cluster, and the planner refuses (rightly)
// one that is still forming.
func WaitReady(t *testing.T, ctx context.Context, cfg upgrade.Config, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	last := "no answer yet"
	for time.Now().Before(deadline) {
		c, err := upgrade.Discover(ctx, cfg.Consul)
		if err != nil {
			last = err.Error()
		} else {
			healthy, leaders := 0, 0
			for _, s := range c.Servers {
				if s.Healthy && s.Voter {
					healthy++
				}
				if s.Leader {
					leaders++
				}
			}
			if healthy == n && len(c.Servers) == n && leaders == 1 {
				return
			}
			last = fmt.Sprintf("%d of %d servers healthy voters, %d leader(s): %+v", healthy, len(c.Servers), leaders, c.Servers)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the cluster never became ready for an upgrade: %s", last)
}

func policyName(p planner.Policy) string {
	parts := []string{"in-place"}
	if p.Strategy != "" {
		parts[0] = string(p.Strategy)
	}
	if p.NoTransferLeadership {
		parts = append(parts, "transfer off")
	}
	return strings.Join(parts, ", ")
}

// serverLogs returns the log paths of the cluster's current servers and of
// those in known (retired servers keep their logs), without repeats.
func serverLogs(cl *consulrig.Cluster, known []string) []string {
	out := slices.Clone(known)
	for _, s := range cl.Servers() {
		if p := cl.LogPath(s); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// LeaderSwappedLast fails t unless the first leader seen was the last
// server swapped in place (followers first, the leader last).
func LeaderSwappedLast(t *testing.T, f Figures) {
	t.Helper()
	swaps := f.Kinds(planner.StepSwapServer)
	if len(swaps) == 0 || len(f.Leaders) == 0 || swaps[len(swaps)-1].Node != f.Leaders[0] {
		t.Errorf("leaders seen %v, server swaps %d: want the first leader swapped last", f.Leaders, len(swaps))
	}
}

// Reaped reports whether a server's log says a leader deregistered node
// because serf no longer knew it ("deregistering member ... reason=reaped"),
// which destroys the sessions made through that node's agent.
func (f Figures) Reaped(node string) bool {
	for _, p := range f.ServerLogs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "deregistering member: member="+node+" ") && strings.Contains(line, "reason=reaped") {
				return true
			}
		}
	}
	return false
}
