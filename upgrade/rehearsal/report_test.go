package rehearsal

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

func sec(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// synthetic is a 0.6.4 -> 0.7.5 rehearsal as the report sees it: a
// snapshot, three server swaps (the leader s1 last, so one election),
// two client waves; a burst of failures while s1 is down.
func synthetic() *Report {
	step := func(kind planner.StepKind, node string, nodes ...string) planner.Step {
		return planner.Step{Kind: kind, Node: node, Nodes: nodes, From: "0.6.4", To: "0.7.5"}
	}
	r := &Report{
		Target: "0.7.5", Path: []planner.Hop{{From: "0.6.4", To: "0.7.5"}}, Datacenter: "dc1",
		Servers:     []Agent{{"s1", "0.6.4", "127.0.9.11"}, {"s2", "0.6.4", "127.0.9.12"}, {"s3", "0.6.4", "127.0.9.13"}},
		Clients:     []Agent{{"client1", "0.6.4", "127.0.9.21"}, {"client2", "0.6.4", "127.0.9.22"}},
		RealClients: 700,
		Started:     time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
		RunStart:    sec(0.2), Wall: sec(70), Recorded: sec(71),
		Steps: []StepFigures{
			{Step: step(planner.StepSnapshot, ""), Start: sec(0.3), GateStart: -1, End: sec(1.1), Done: true},
			{Step: step(planner.StepSwapServer, "s2"), Start: sec(1.1), GateStart: sec(3), End: sec(16), Done: true, WaitedOn: []string{"version", "stable"}},
			{Step: step(planner.StepSwapServer, "s3"), Start: sec(16), GateStart: sec(18), End: sec(31), Done: true, WaitedOn: []string{"stable"}},
			{Step: step(planner.StepSwapServer, "s1"), Start: sec(31), GateStart: sec(33), End: sec(52), Done: true, WaitedOn: []string{"leader", "stable"}},
			{Step: step(planner.StepSwapClients, "", "client1"), Start: sec(52), GateStart: sec(54), End: sec(60), Done: true},
			{Step: step(planner.StepSwapClients, "", "client2"), Start: sec(60), GateStart: sec(62), End: sec(70), Done: true},
		},
		Leaders:       []LeaderSeen{{0, "s1", false}, {sec(34), "s3", true}, {sec(45), "s3", true}},
		NoLeader:      []LeaderSeen{{0, "known", false}, {sec(31.5), "", false}, {sec(34), "known", false}},
		Stabilization: 10 * time.Second,
		Done:          true,
		Traffic:       traffic.Report{Ops: 3480, Indeterminate: 7, NotSent: 31, Acked: 850, Result: porcupine.Ok, CheckTime: sec(1.5)},
	}
	for i := range 71 {
		s := Second{OK: 50}
		if i >= 31 && i < 34 {
			s = Second{OK: 18, Indeterminate: 2, NotSent: 9}
		}
		r.Series = append(r.Series, s)
	}
	for i := range 38 {
		out := traffic.NotSent
		if i%5 == 0 {
			out = traffic.Indeterminate
		}
		r.Failed = append(r.Failed, traffic.Op{Node: "s1", Key: "rehearsal/k1", Kind: traffic.Put, Outcome: out, Call: sec(31 + float64(i)/13), Err: "dial tcp 127.0.9.11:8500: connect: connection refused"})
	}
	return r
}

func TestReportMarkdownStatesTheFiguresOfTheRun(t *testing.T) {
	r := synthetic()
	var b strings.Builder
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# Rehearsal: Consul 0.6.4 → 0.7.5",
		"scaled down from 700 clients",
		"| run | done |",
		"| linearizability | linearizable (Porcupine, 3480 operations",
		"| lost acknowledged writes | 0 of 850 |",
		"| failed operations | 7 indeterminate, 31 not sent (of 3480) |",
		"| elections | 2 (1 to another server) |",
		"| no leader named | 2.5s in all",
		"| wall time of the run | 1m10s |",
		"| sum of stabilization waits | 30s (3 server gate(s) × 10s) |",
		"| wall / stabilization | 2.3× |",
		"![timeline](timeline.svg)",
		"| 2 | swap-server | s2 | 0.6.4 → 0.7.5 | 1.1s | 1.9s | 13s | 14.9s | version, stable |",
		"| 0s | s1 | at the start |",
		"| 34s | s3 | elected |",
		"| 45s | s3 | re-elected |",
		"## Failed and indeterminate operations",
		"## Lost writes\n\nNone of the 850 acknowledged writes",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q\n%s", want, md)
		}
	}
	if got := strings.Count(md, "| s1 | put | rehearsal/k1 |"); got != 38 {
		t.Errorf("report.md lists %d failed operations, want all 38", got)
	}
}

func TestReportMarkdownSaysWhatWentWrong(t *testing.T) {
	r := synthetic()
	r.Done, r.Err = false, "step 4 (swap-server s1): gate: leader: no leader | after 5m"
	r.Traffic.Result = porcupine.Illegal
	r.Traffic.Lost = []traffic.Op{{Node: "client1", Key: "rehearsal/k2", Kind: traffic.Put, Value: "w3.17", Outcome: traffic.Done, OK: true}}
	r.Traffic.Files = []string{"/out/history.json", "/out/linearizability.html"}
	r.Skipped = []string{"dc2"}
	for i := range 30 {
		r.Failed = append(r.Failed, traffic.Op{Node: "s2", Kind: traffic.Read, Outcome: traffic.Indeterminate, Call: sec(40 + float64(i))})
	}
	var b strings.Builder
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		`| run | NOT done: step 4 (swap-server s1): gate: leader: no leader \| after 5m |`,
		"| linearizability | NOT linearizable",
		"| lost acknowledged writes | 1 of 850 |",
		"put rehearsal/k2=w3.17",
		"/out/history.json, /out/linearizability.html",
		"Not rehearsed: datacenter(s) dc2",
		"The first 40 of 68:",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q\n%s", want, md)
		}
	}
}

// svgNode is any SVG element, for structural checks.
type svgNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Nodes   []svgNode  `xml:",any"`
}

func (n svgNode) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
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

func TestTimelineDrawsABandPerStepAMarkPerLeaderChangeAndTheTraffic(t *testing.T) {
	r := synthetic()
	var b strings.Builder
	if err := r.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	root := parseSVG(t, b.String())
	fill := func(c string) func(svgNode) bool {
		return func(n svgNode) bool { return n.XMLName.Local == "rect" && n.attr("fill") == c }
	}
	// A band per step, alternating shades; the legend has one swatch of
	// the first shade.
	bands := len(root.all(fill(colBandA))) + len(root.all(fill(colBandB)))
	if bands != len(r.Steps)+1 {
		t.Errorf("%d step bands (with the legend's swatch), want %d", bands, len(r.Steps)+1)
	}
	// A gate-wait band for each step that waited, plus the legend.
	if got := len(root.all(fill(colGate))); got != 5+1 {
		t.Errorf("%d gate-wait bands, want 5 and the legend's", got)
	}
	// Failures: bars in the three seconds of the burst.
	if got := len(root.all(fill(colIndet))); got != 3+1 {
		t.Errorf("%d indeterminate bars, want 3 and the legend's", got)
	}
	if got := len(root.all(fill(colNotSent))); got != 3+1 {
		t.Errorf("%d not-sent bars, want 3 and the legend's", got)
	}
	// Two elections (s1 -> s3, s3 again), one leaderless strip.
	dashed := root.all(func(n svgNode) bool {
		return n.XMLName.Local == "line" && n.attr("stroke") == colLeader && n.attr("stroke-dasharray") != ""
	})
	if len(dashed) != 2+1 {
		t.Errorf("%d dashed election lines, want 2 and the legend's", len(dashed))
	}
	if got := len(root.all(fill(colNoLeader))); got != 1+1 {
		t.Errorf("%d leaderless strips, want 1 and the legend's", got)
	}
	// The answered operations: one point per second.
	lines := root.all(func(n svgNode) bool { return n.XMLName.Local == "polyline" })
	if len(lines) != 1 || len(strings.Fields(lines[0].attr("points"))) != len(r.Series) {
		t.Errorf("want one polyline with %d points, got %d polylines", len(r.Series), len(lines))
	}
	// Labels: the axes, the title, the steps, the leader.
	var texts []string
	for _, n := range root.all(func(n svgNode) bool { return n.XMLName.Local == "text" }) {
		texts = append(texts, n.Text)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"operations per second", "seconds since the traffic started", "Rehearsal: Consul 0.6.4 → 0.7.5", "2 election(s)", "leader s3", "leader s3 again", "2 swap s2", "0 lost", "linearizable", "answered", "indeterminate", "not sent"} {
		if !strings.Contains(all, want) {
			t.Errorf("timeline lacks the text %q; texts:\n%s", want, all)
		}
	}
	// Every drawn x stays inside the picture.
	for _, n := range root.all(func(n svgNode) bool { return n.attr("x") != "" }) {
		if x := n.attr("x"); strings.HasPrefix(x, "-") {
			t.Errorf("element %s at x=%s, outside the picture", n.XMLName.Local, x)
		}
	}
}

func TestWriteCreatesBothFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	r := synthetic()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	if len(r.Files) != 2 {
		t.Fatalf("files %v, want report.md and timeline.svg", r.Files)
	}
	for _, name := range []string{"report.md", "timeline.svg"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || len(data) == 0 {
			t.Errorf("%s: %v (%d bytes)", name, err, len(data))
		}
	}
	if os.Getenv("REHEARSAL_SVG_OUT") != "" { // for looking at the picture
		data, _ := os.ReadFile(filepath.Join(dir, "timeline.svg"))
		os.WriteFile(os.Getenv("REHEARSAL_SVG_OUT"), data, 0o644)
	}
}

func TestElectionTimeStampsOfEveryEra(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Time
	}{
		{"    2026/12/01 11:58:03 [INFO] raft: Node at 127.0.1.12:8300 [Leader] entering leader state", time.Date(2026, 12, 1, 11, 58, 3, 0, time.Local)},
		{`2026-12-01T11:58:03.123Z [INFO]  agent.server.raft: entering leader state: leader="Node at 127.0.1.12:8300 [Leader]"`, time.Date(2026, 12, 1, 11, 58, 3, 123e6, time.UTC)},
		{`2026-12-01T12:58:03.123+0100 [INFO]  agent.server.raft: entering leader state`, time.Date(2026, 12, 1, 11, 58, 3, 123e6, time.UTC)},
	} {
		got, ok := parseStamp(tc.line)
		if !ok || !got.Equal(tc.want) {
			t.Errorf("parseStamp(%q) = %v, %v; want %v", tc.line, got, ok, tc.want)
		}
	}
	if _, ok := parseStamp("entering leader state"); ok {
		t.Error("a line without a time stamp was given one")
	}
}

// staleAfterElection is a history with one stale read: k0 is written, then
// read back absent just after s1 wins an election, then read again.
func staleAfterElection() traffic.History {
	return traffic.History{
		{Worker: 0, Key: "k0", Kind: traffic.Put, Value: "a", Outcome: traffic.Done, OK: true, Call: sec(0.1), Return: sec(0.2)},
		{Worker: 1, Key: "k0", Kind: traffic.Read, Outcome: traffic.Done, Found: true, Got: "a", Index: 10, Call: sec(1), Return: sec(1.1)},
		{Worker: 1, Key: "k0", Kind: traffic.Read, Outcome: traffic.Done, Found: false, Call: sec(5.1), Return: sec(5.2)},
		{Worker: 1, Key: "k0", Kind: traffic.Read, Outcome: traffic.Done, Found: true, Got: "a", Index: 10, Call: sec(9), Return: sec(9.1)},
		{Worker: 1, Key: "k0", Kind: traffic.Read, Outcome: traffic.Done, Found: true, Got: "a", Index: 10, Call: sec(10), Return: sec(10.1), Final: true},
	}
}

func TestAStaleReadRightAfterAnOldLeadersElectionIsConsul2644(t *testing.T) {
	h := staleAfterElection()
	r := &Report{
		Servers: []Agent{{"s1", "0.6.4", ""}, {"s2", "0.6.4", ""}},
		Steps:   []StepFigures{{Step: planner.Step{Kind: planner.StepSwapServer, Node: "s1", From: "0.6.4", To: "0.7.5"}, Start: sec(4), End: sec(8)}},
		Leaders: []LeaderSeen{{0, "s1", false}, {sec(5), "s1", true}},
	}
	var err error
	if r.Traffic, err = traffic.Check(h, t.TempDir(), time.Minute); err != nil || r.Traffic.Result != porcupine.Illegal {
		t.Fatalf("the history with a stale read checks %s (%v); want Illegal", r.Traffic.Result, err)
	}
	d, err := r.explain(h, t.TempDir(), time.Minute)
	if err != nil || d == nil {
		t.Fatalf("explain = %v, %v; want consul#2644", d, err)
	}
	r.Defect = d
	if d.ID != "consul#2644" || d.Excluded != 1 || d.FixedIn != "0.9.0" || !r.Explained() || r.Linearizable() {
		t.Errorf("defect %+v: want consul#2644 with the one read in the window left out", d)
	}
	var b strings.Builder
	r.WriteMarkdown(&b)
	if !strings.Contains(b.String(), "| linearizability | NOT linearizable, explained by consul#2644") ||
		!strings.Contains(b.String(), "| explained by | [consul#2644](https://github.com/hashicorp/consul/issues/2644) (fixed in 0.9.0)") {
		t.Errorf("report.md does not name the defect:\n%s", b.String())
	}

	// The same history on a leader of 0.9.0 or later is not explained.
	r.Steps[0].Step.To = "1.16.1"
	r.Defect = nil
	if d, err := r.explain(h, t.TempDir(), time.Minute); err != nil || d != nil {
		t.Errorf("explain on a 1.16.1 leader = %+v, %v; want no defect", d, err)
	}
	// A read called before the election, held while no leader was known
	// and answered by the new leader, is in the window too.
	r.Steps[0].Step.To = "0.7.5"
	h[2].Call = sec(3)
	if d, err := r.explain(h, t.TempDir(), time.Minute); err != nil || d == nil || d.Excluded != 1 {
		t.Errorf("explain with the stale read called before the election = %+v, %v; want consul#2644", d, err)
	}
	h[2].Call = sec(5.1)
	// Nor is a stale read far from the election.
	r.Leaders[1].At = sec(1.5)
	if d, err := r.explain(h, t.TempDir(), time.Minute); err != nil || d != nil {
		t.Errorf("explain with the stale read 3.6 s after the election = %+v, %v; want no defect", d, err)
	}
}
