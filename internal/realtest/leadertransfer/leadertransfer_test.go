// Package leadertransfer_test proves leadership transfer on real Consul
// agents: 1.15.4 -> 1.16.1 with the transfer (the default) and without it,
// 1.14.8 -> 1.15.4 where the old side cannot transfer, and a replace
// (blue/green) run that hands leadership to a new server before the old
// leader retires. Each run has 3 servers and 1 client on loopback and a
// writer putting a key through the client every 20 ms. The tests never
// skip: a missing or unbuildable binary fails them.
//
// The figures of each run are logged on a line starting with FIGURES.
package leadertransfer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/consulrig"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

type scenario struct {
	from, to string
	policy   planner.Policy
}

// figures are what one run measured.
type figures struct {
	wall        time.Duration
	writes      consulrig.WriterStats
	lost        []string
	leaders     []string // distinct consecutive leaders seen through the client
	gaps        int      // leader polls that saw no leader
	elections   int      // "entering leader state" lines added to the servers' logs
	transfers   []planner.Step
	retired     []string // retire-server steps, in order
	swappedLast string   // the last swap-server step's node
	versions    map[string]string
}

func (f figures) String() string {
	return fmt.Sprintf("wall %s; writes acked %d, failed %d in %d run(s), longest run of failures %s; lost %d; leaders seen %v (%d changes, %d polls without a leader); elections in logs %d; transfers %s",
		f.wall.Round(100*time.Millisecond), len(f.writes.Acked), f.writes.Failed, f.writes.Bursts, f.writes.LongestBurst.Round(time.Millisecond),
		len(f.lost), f.leaders, max(len(f.leaders)-1, 0), f.gaps, f.elections, transferList(f.transfers))
}

func transferList(steps []planner.Step) string {
	var out []string
	for _, s := range steps {
		out = append(out, s.Node+"=>"+s.Target)
	}
	return "[" + strings.Join(out, " ") + "]"
}

// run starts a 3-server + 1-client cluster on sc.from, waits until autopilot
// reports it healthy, and upgrades it to sc.to with upgrade.Run under the
// writer and the leader watch.
func run(t *testing.T, sc scenario) figures {
	t.Helper()
	cl := consulrig.Start(t, consulrig.Options{Servers: 3, Clients: 1, Version: sc.from})
	if sc.policy.Strategy == planner.Replace {
		if err := cl.ProvisionServers(3); err != nil {
			t.Fatal(err)
		}
	}
	consul, err := upgrade.ConnectAddr(cl.HTTPAddr("c1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	waitAutopilotHealthy(t, ctx, consul, 3)

	logs := serverLogs(cl, nil)
	before := mustCount(t, logs)

	var f figures
	cfg := upgrade.Config{
		Consul:      consul,
		Transport:   cl.Transport(),
		Target:      sc.to,
		Policy:      sc.policy,
		Snapshot:    upgrade.SnapshotDir(t.TempDir()),
		GateTimeout: 3 * time.Minute,
		OnEvent: func(e upgrade.Event) {
			t.Logf("event %-14s %-15s %s %s %s", e.Kind, e.Step.Kind, e.Step.Node, e.Condition, e.Detail)
			switch {
			case e.Kind == upgrade.EventStepStarted && e.Step.Kind == planner.StepTransferLeader:
				f.transfers = append(f.transfers, e.Step)
			case e.Kind == upgrade.EventStepStarted && e.Step.Kind == planner.StepRetireServer:
				f.retired = append(f.retired, e.Step.Node)
			case e.Kind == upgrade.EventStepStarted && e.Step.Kind == planner.StepSwapServer:
				f.swappedLast = e.Step.Node
			case e.Kind == upgrade.EventProvisioned:
				logs = append(logs, cl.LogPath(e.Step.Node))
			}
		},
	}

	w := cl.StartWriter("c1", "writer", 20*time.Millisecond)
	lw := cl.WatchLeader("c1", 25*time.Millisecond)
	start := time.Now()
	_, err = upgrade.Run(ctx, cfg)
	f.wall = time.Since(start)
	f.writes = w.Stop()
	f.leaders, f.gaps = lw.Stop()
	if err != nil {
		t.Fatalf("run %s -> %s: %v", sc.from, sc.to, err)
	}
	f.lost, err = cl.MissingWrites(ctx, "c1", "writer", f.writes.Acked)
	if err != nil {
		t.Fatal(err)
	}
	f.elections = mustCount(t, serverLogs(cl, logs)) - before
	members, err := cl.Members(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	f.versions = map[string]string{}
	for _, m := range members {
		if m.Status == 1 {
			f.versions[m.Name] = m.Build()
		}
	}
	t.Logf("FIGURES %s -> %s (%s): %s", sc.from, sc.to, policyName(sc.policy), f)

	if len(f.lost) != 0 {
		t.Errorf("%d acknowledged writes lost, e.g. %v", len(f.lost), f.lost[:min(5, len(f.lost))])
	}
	if len(f.writes.Acked) < 100 {
		t.Errorf("the writer acknowledged only %d writes; it did not run through the upgrade", len(f.writes.Acked))
	}
	for n, v := range f.versions {
		if v != sc.to {
			t.Errorf("%s ends on %s, want %s", n, v, sc.to)
		}
	}
	if len(f.versions) != 4 {
		t.Errorf("alive members at the end: %v, want 3 servers and 1 client", f.versions)
	}
	return f
}

func policyName(p planner.Policy) string {
	var parts []string
	if p.Strategy != "" {
		parts = append(parts, string(p.Strategy))
	}
	if p.NoTransferLeadership {
		parts = append(parts, "transfer off")
	} else {
		parts = append(parts, "transfer on")
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

func mustCount(t *testing.T, logs []string) int {
	t.Helper()
	n, err := consulrig.CountInLogs(logs, "entering leader state")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitAutopilotHealthy waits until autopilot reports n healthy servers: an
// upgrade starts on a healthy cluster (the planner refuses one that is
// still forming).
func waitAutopilotHealthy(t *testing.T, ctx context.Context, c upgrade.Consul, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	last := "no answer yet"
	for time.Now().Before(deadline) {
		h, err := c.AutopilotHealth(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case h.Healthy && len(h.Servers) == n:
			return
		default:
			last = fmt.Sprintf("healthy=%v servers=%d failure tolerance=%d", h.Healthy, len(h.Servers), h.FailureTolerance)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("autopilot never reported %d healthy servers: %s", n, last)
}

// With the transfer (the default), the leader hands over to an upgraded
// server before it is swapped: leadership moves exactly once, to the
// server the step named, and no write fails for a second or more.
func TestTransferOn_1_15_4_to_1_16_1(t *testing.T) {
	f := run(t, scenario{from: "1.15.4", to: "1.16.1"})
	if len(f.transfers) != 1 {
		t.Fatalf("transfer-leader steps %s, want exactly one", transferList(f.transfers))
	}
	tr := f.transfers[0]
	if len(f.leaders) != 2 || f.leaders[0] != tr.Node || f.leaders[1] != tr.Target {
		t.Errorf("leaders seen %v, want exactly [%s %s]: one move, to the server the step named", f.leaders, tr.Node, tr.Target)
	}
	if f.elections != 1 {
		t.Errorf("%d leader elections in the servers' logs, want 1 (the transfer)", f.elections)
	}
	if f.swappedLast != tr.Node {
		t.Errorf("the last server swapped is %s, want the old leader %s (swapped as a follower after the transfer)", f.swappedLast, tr.Node)
	}
	if f.writes.LongestBurst >= time.Second {
		t.Errorf("writes failed for %s in a row, want under 1s with the transfer (errors: %q)", f.writes.LongestBurst, f.writes.Errors)
	}
}

// Without the transfer the leader is swapped last and the cluster elects
// a new one: no write is lost, but writes fail while it does.
func TestTransferOff_1_15_4_to_1_16_1(t *testing.T) {
	f := run(t, scenario{from: "1.15.4", to: "1.16.1", policy: planner.Policy{NoTransferLeadership: true}})
	if len(f.transfers) != 0 {
		t.Errorf("transfer-leader steps %s with the transfer turned off", transferList(f.transfers))
	}
	if f.elections < 1 {
		t.Errorf("%d leader elections in the servers' logs: stopping the leader must have caused one (the restarted old leader may win it)", f.elections)
	}
	if len(f.leaders) == 0 || f.leaders[0] != f.swappedLast {
		t.Errorf("the last server swapped is %s, want the first leader %s (followers first, leader last)", f.swappedLast, f.leaders[0])
	}
}

// 1.14 cannot transfer leadership: the plan swaps the leader last, and the
// 1.15.4 servers read the raft log 1.14.8 wrote.
func TestNoTransferPossible_1_14_8_to_1_15_4(t *testing.T) {
	f := run(t, scenario{from: "1.14.8", to: "1.15.4"})
	if len(f.transfers) != 0 {
		t.Errorf("transfer-leader steps %s, but 1.14.8 cannot transfer leadership", transferList(f.transfers))
	}
	if len(f.leaders) == 0 || f.leaders[0] != f.swappedLast {
		t.Errorf("leaders seen %v, last server swapped %s: want the first leader swapped last", f.leaders, f.swappedLast)
	}
}

// Replace (blue/green): new 1.16.1 servers join and the old 1.15.4 ones
// retire; before the old leader retires, leadership moves to a new server.
func TestReplaceTransfersToANewServer_1_15_4_to_1_16_1(t *testing.T) {
	f := run(t, scenario{from: "1.15.4", to: "1.16.1", policy: planner.Policy{Strategy: planner.Replace}})
	if len(f.transfers) != 1 {
		t.Fatalf("transfer-leader steps %s, want exactly one", transferList(f.transfers))
	}
	tr := f.transfers[0]
	if !strings.HasPrefix(tr.Target, "n") {
		t.Errorf("leadership went to %s, want a new server (n1..n3)", tr.Target)
	}
	if len(f.retired) != 3 || f.retired[2] != tr.Node {
		t.Errorf("retired %v, want three with the old leader %s last", f.retired, tr.Node)
	}
	if len(f.leaders) != 2 || f.leaders[0] != tr.Node || f.leaders[1] != tr.Target {
		t.Errorf("leaders seen %v, want exactly [%s %s]", f.leaders, tr.Node, tr.Target)
	}
	if f.writes.LongestBurst >= time.Second {
		t.Errorf("writes failed for %s in a row, want under 1s with the transfer (errors: %q)", f.writes.LongestBurst, f.writes.Errors)
	}
}
