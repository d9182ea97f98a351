// Package rehearsal_test rehearses upgrades on real loopback replicas
// (package upgrade/rehearsal, through its public API): every agent a real
// Consul process, the plan run under recorded traffic, the report checked.
package rehearsal_test

import (
	"context"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/proc"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/rehearsal"
)

// cluster is a datacenter of n servers and m clients on version v.
func cluster(v string, n, m int) *planner.Cluster {
	c := &planner.Cluster{}
	for i := range n {
		c.Servers = append(c.Servers, planner.Server{Name: "s" + string(rune('1'+i)), Version: v, Voter: true, Healthy: true, Leader: i == 0})
	}
	for i := range m {
		c.Clients = append(c.Clients, planner.Client{Name: "web-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), Version: v})
	}
	return c
}

// alive returns the pids among pids that still run.
func alive(pids []int) []int {
	var out []int
	for _, p := range pids {
		if proc.Alive(p) {
			out = append(out, p)
		}
	}
	return out
}

// checkRehearsal holds what every real rehearsal must: both report files
// well-formed, a linearizable history (or, where the versions have one, a
// history whose every violation a known Consul defect explains: old is
// true), no acknowledged write lost, the run done, and no agent process
// left.
func checkRehearsal(t *testing.T, rep *rehearsal.Report, err error, out string, old bool) {
	t.Helper()
	defer keep(t, out)
	if rep == nil {
		t.Fatalf("no report: %v", err)
	}
	if len(rep.PIDs) == 0 {
		t.Error("the report records no agent process")
	}
	if left := alive(rep.PIDs); len(left) > 0 {
		t.Errorf("agent processes left behind: %v", left)
	}
	if err != nil {
		t.Fatalf("rehearsal: %v", err)
	}
	md, rerr := os.ReadFile(filepath.Join(out, "report.md"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	verdict := "| linearizability | linearizable "
	if old && rep.Defect != nil {
		verdict = "| linearizability | NOT linearizable, explained by " + rep.Defect.ID
		t.Logf("KNOWN DEFECT %s: %s", rep.Defect.ID, rep.Defect.Summary)
	}
	for _, want := range []string{"# Rehearsal: Consul ", "| run | done |", verdict, "## Steps", "## Leaders", "![timeline](timeline.svg)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	svg, rerr := os.ReadFile(filepath.Join(out, "timeline.svg"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	root := parseSVG(t, string(svg))
	if n := len(root.all(func(n svgNode) bool { return n.XMLName.Local == "polyline" })); n != 1 {
		t.Errorf("timeline.svg has %d traffic lines, want 1", n)
	}
	if !rep.Done || !(rep.Linearizable() || old && rep.Explained()) {
		t.Errorf("done %v, verdict %s: want a done run with a linearizable history", rep.Done, rep.Verdict())
	}
	if len(rep.Traffic.Lost) != 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(rep.Traffic.Lost), rep.Traffic.Lost)
	}
	if rep.Traffic.Acked < 100 {
		t.Errorf("only %d acknowledged writes: the traffic did not run through the upgrade", rep.Traffic.Acked)
	}
	t.Logf("FIGURES %s -> %s: wall %s, %d steps, ops %d (acked writes %d), indeterminate %d, not sent %d, lost %d, elections %d (%d to another server), no leader %s, stabilization sum %s, linearizability %s in %s",
		from(rep), rep.Target, dur(rep.Wall), len(rep.Steps), rep.Traffic.Ops, rep.Traffic.Acked, rep.Traffic.Indeterminate, rep.Traffic.NotSent,
		len(rep.Traffic.Lost), rep.Elections(), rep.LeaderChanges(), dur(leaderless(rep, rep.Recorded)), dur(time.Duration(rep.ServerGates())*rep.Stabilization), rep.Verdict(), dur(rep.Traffic.CheckTime))
}

// noProbeFindings checks that the probes ran before, in the mixed window
// and after, and that every one answered as expected in every phase (no
// false finding on the era rehearsed).
func noProbeFindings(t *testing.T, rep *rehearsal.Report) {
	t.Helper()
	phases, mixed := map[string]bool{}, false
	for _, r := range rep.Probes {
		phases[r.Phase] = true
		mixed = mixed || len(r.Versions) == 2
	}
	if !phases["before"] || !phases["after"] || !mixed {
		t.Errorf("probe phases %v (mixed window seen: %v): want before, a phase on two versions, after", phases, mixed)
	}
	for _, f := range rep.ProbeFindings {
		t.Errorf("probe finding on a healthy replica: %s", f)
	}
}

// keep copies the output folder to $REHEARSAL_KEEP, when set, to look at
// the report (and, when the check failed, the history and Porcupine's
// visualization).
func keep(t *testing.T, out string) {
	if dir := os.Getenv("REHEARSAL_KEEP"); dir != "" {
		os.MkdirAll(dir, 0o755)
		entries, _ := os.ReadDir(out)
		for _, e := range entries {
			data, _ := os.ReadFile(filepath.Join(out, e.Name()))
			os.WriteFile(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+e.Name()), data, 0o644)
		}
	}
}

// The 2015 story on the oldest hop that builds here: 3 servers and a few
// of the clients, followers first and the leader last, each server killed
// (SIGKILL, so it does not leave), the clients left behind on purpose.
func TestRehearseThe2015UpgradeScaledDown(t *testing.T) {
	out := t.TempDir()
	rep, err := rehearsal.Run(t.Context(), rehearsal.Options{
		Cluster: cluster("0.6.4", 3, 700), Target: "0.7.5",
		Policy:  planner.Policy{StopMode: planner.StopKill, Clients: planner.ClientPolicy{Mode: planner.ClientLeaveBehind}},
		Clients: 3, OutDir: out, Logf: t.Logf,
	})
	// 0.6.4 and 0.7.5 have consul#2644: when the killed leader comes back
	// and wins the election again, it may answer a consistent read before
	// it has replayed its log (seen in 2 of 5 runs here). That and only
	// that is accepted.
	checkRehearsal(t, rep, err, out, true)
	noProbeFindings(t, rep)
	if len(rep.Clients) != 3 || rep.RealClients != 700 || len(rep.Servers) != 3 {
		t.Errorf("replica of %d servers and %d clients (of %d): want 3 and 3 (of 700)", len(rep.Servers), len(rep.Clients), rep.RealClients)
	}
	// Followers first, the leader last: the first leader seen is the last
	// server swapped, and its swap makes the one leader change.
	var swaps []string
	for _, s := range rep.Steps {
		if s.Step.Kind == planner.StepSwapServer {
			swaps = append(swaps, s.Step.Node)
		}
		if s.Step.Kind == planner.StepSwapClients {
			t.Errorf("step %s %v: the clients were to be left behind", s.Step.Kind, s.Step.Nodes)
		}
	}
	if len(swaps) != 3 || len(rep.Leaders) == 0 || swaps[2] != rep.Leaders[0].Leader {
		t.Errorf("server swaps %v, leaders %v: want three swaps, the first leader last", swaps, rep.Leaders)
	}
	if rep.Elections() < 1 {
		t.Errorf("leaders %v: killing the leader (0.6.4 cannot transfer leadership) must make the servers elect one", rep.Leaders)
	}
}

// A modern hop: leadership is transferred to an upgraded server before the
// old leader is swapped (both sides >= 1.15), then the clients in waves.
func TestRehearseAModernHop(t *testing.T) {
	out := t.TempDir()
	rep, err := rehearsal.Run(t.Context(), rehearsal.Options{
		Cluster: cluster("1.15.4", 3, 50), Target: "1.16.1", Clients: 2, OutDir: out, Logf: t.Logf,
	})
	checkRehearsal(t, rep, err, out, false)
	noProbeFindings(t, rep)
	kinds := map[planner.StepKind]int{}
	for _, s := range rep.Steps {
		kinds[s.Step.Kind]++
	}
	if kinds[planner.StepSwapServer] != 3 || kinds[planner.StepTransferLeader] != 1 || kinds[planner.StepSwapClients] < 1 {
		t.Errorf("steps by kind %v: want 3 server swaps, a leadership transfer and the client waves", kinds)
	}
}

// Ctrl-C: the context ends in the middle of the first server swap; Run
// returns the context's error, still writes the report (not done), and no
// agent is left running.
func TestACancelledRehearsalLeavesNoProcessBehind(t *testing.T) {
	out := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rep, err := rehearsal.Run(ctx, rehearsal.Options{
		Cluster: cluster("1.15.4", 3, 1), Target: "1.16.1", Clients: 1, OutDir: out, Logf: t.Logf,
		OnEvent: func(e upgrade.Event) {
			if e.Kind == upgrade.EventStepStarted && e.Step.Kind == planner.StepSwapServer {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want one wrapping context.Canceled", err)
	}
	if rep == nil || len(rep.PIDs) < 4 {
		t.Fatalf("report %+v: want the pids of the 4 agents started", rep)
	}
	if left := alive(rep.PIDs); len(left) > 0 {
		t.Errorf("agent processes left behind after cancel: %v", left)
	}
	if rep.Done {
		t.Error("a cancelled rehearsal is reported done")
	}
	md, rerr := os.ReadFile(filepath.Join(out, "report.md"))
	if rerr != nil || !strings.Contains(string(md), "| run | NOT done: ") {
		t.Errorf("report.md after cancel: %v\n%s", rerr, md)
	}
}

// from is the version the replica started on.
func from(r *rehearsal.Report) string {
	if len(r.Path) > 0 {
		return r.Path[0].From
	}
	if len(r.Servers) > 0 {
		return r.Servers[0].Version
	}
	return "?"
}

// leaderless sums the stretches with no leader known.
func leaderless(r *rehearsal.Report, end time.Duration) time.Duration {
	var sum time.Duration
	for i, l := range r.NoLeader {
		if l.Leader != "" {
			continue
		}
		until := end
		if i+1 < len(r.NoLeader) {
			until = r.NoLeader[i+1].At
		}
		sum += until - l.At
	}
	return sum
}

func dur(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < 10*time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

// svgNode is any SVG element, for structural checks.
type svgNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Nodes   []svgNode  `xml:",any"`
}

func (n svgNode) all(f func(svgNode) bool) []svgNode {
	var out []svgNode
	for _, c := range n.Nodes {
		if f(c) {
			out = append(out, c)
		}
		out = append(out, c.all(f)...)
	}
	return out
}

func parseSVG(t *testing.T, data string) svgNode {
	t.Helper()
	var root svgNode
	if err := xml.Unmarshal([]byte(data), &root); err != nil {
		t.Fatalf("timeline.svg is not well-formed XML: %v", err)
	}
	if root.XMLName.Local != "svg" {
		t.Fatalf("root element %q, want svg", root.XMLName.Local)
	}
	return root
}
