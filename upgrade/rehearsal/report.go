package rehearsal

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
)

// Report is what a rehearsal measured. Every offset (At, Start, End...)
// counts from the start of the recorded traffic, which began just before
// the upgrade run.
type Report struct {
	Target string         `json:"target"`
	Policy planner.Policy `json:"policy"`
	Path   []planner.Hop  `json:"path"`
	// Datacenter is the datacenter replicated; Skipped are the cluster's
	// other datacenters, not rehearsed.
	Datacenter string   `json:"datacenter"`
	Skipped    []string `json:"skipped,omitempty"`
	// Servers and Clients are the replica's agents on their starting
	// versions; RealClients is how many clients the datacenter has.
	Servers     []Agent `json:"servers"`
	Clients     []Agent `json:"clients"`
	RealClients int     `json:"real_clients"`

	// Started is when the traffic started (the origin of the offsets).
	Started time.Time `json:"started"`
	// RunStart and Wall are the upgrade run's start (offset) and length.
	RunStart time.Duration `json:"run_start"`
	Wall     time.Duration `json:"wall"`
	// Recorded is how long the traffic ran.
	Recorded time.Duration `json:"recorded"`
	Steps    []StepFigures `json:"steps"`
	// Leaders are the leader when the traffic started (Elected false),
	// then every election a server logged, in time order. A server that
	// loses and wins leadership again is a new entry.
	Leaders []LeaderSeen `json:"leaders"`
	// NoLeader are the moments, seen by polling /v1/status/leader on every
	// agent in turn every 200 ms, when no agent named a leader (Leader "")
	// and when one did again (Leader "known").
	NoLeader []LeaderSeen `json:"no_leader,omitempty"`
	// Series is the traffic per second of the recording.
	Series []Second `json:"series"`
	// Traffic is the linearizability check of the recorded history;
	// Failed are its indeterminate and not-sent operations.
	Traffic TrafficReport `json:"traffic"`
	Failed  []Op          `json:"failed,omitempty"`
	// Defect, when the history is not linearizable, is the known defect
	// of the versions rehearsed that explains every violation (nil when
	// none does).
	Defect *KnownDefect `json:"defect,omitempty"`
	// Stabilization is the servers' stabilization time (autopilot's
	// ServerStabilizationTime, or the gate's default in the eras without
	// it); every server gate waits at least that long.
	Stabilization time.Duration `json:"stabilization"`
	// Done is true when the run reached the target; Err is why not.
	Done bool   `json:"done"`
	Err  string `json:"err,omitempty"`
	// Probes are the results of the probes (package upgrade/probe) in
	// every phase: before the upgrade, after each step, after it.
	// ProbeFindings are the probes that failed in a phase, with the
	// versions they failed on. A failing probe is not an error of Run.
	Probes        []probe.Result  `json:"probes,omitempty"`
	ProbeFindings []probe.Finding `json:"probe_findings,omitempty"`
	// Data is what a rehearsal with data (Options.WithData) restored and
	// read back (nil without).
	Data *DataReport `json:"data,omitempty"`
	// PIDs are the agent processes the rehearsal started (all stopped
	// when Run returns).
	PIDs []int `json:"pids"`
	// Files are the report's files in the output folder.
	Files []string `json:"files"`
}

// TrafficReport is what checking the recorded history found (the
// recorder's own type, named here for callers outside this module).
type TrafficReport = traffic.Report

// Op is one recorded operation.
type Op = traffic.Op

// Agent is an agent of the replica.
type Agent struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Address string `json:"address"`
}

// StepFigures are one step's times. GateStart is when the first gate
// condition was seen not to hold yet (-1 when the gate passed at once):
// Start..GateStart is the act (snapshot, swap, transfer), GateStart..End
// the wait for the gate.
type StepFigures struct {
	Step      planner.Step  `json:"step"`
	Start     time.Duration `json:"start"`
	GateStart time.Duration `json:"gate_start"`
	End       time.Duration `json:"end"`
	Done      bool          `json:"done"`
	// WaitedOn are the gate conditions waited for, in order, without
	// repeats.
	WaitedOn []string `json:"waited_on,omitempty"`
}

// Duration is the step's length.
func (s StepFigures) Duration() time.Duration { return s.End - s.Start }

// GateWait is how long the step waited for its gate.
func (s StepFigures) GateWait() time.Duration {
	if s.GateStart < 0 {
		return 0
	}
	return s.End - s.GateStart
}

// LeaderSeen is a leader from At on.
type LeaderSeen struct {
	At     time.Duration `json:"at"`
	Leader string        `json:"leader"`
	// Elected is true for an election the server logged.
	Elected bool `json:"elected,omitempty"`
}

// Second is the traffic of one second of the recording: operations called
// in it that were answered (OK), indeterminate, and never sent.
type Second struct {
	OK            int `json:"ok"`
	Indeterminate int `json:"indeterminate"`
	NotSent       int `json:"not_sent"`
}

// Linearizable reports Porcupine's verdict: the history is linearizable.
func (r *Report) Linearizable() bool { return r.Traffic.Result == porcupine.Ok }

// Explained reports whether the history is linearizable, or every
// violation is explained by a known defect of the versions rehearsed
// (Defect).
func (r *Report) Explained() bool { return r.Linearizable() || r.Defect != nil }

// Elections counts the elections the servers logged during the traffic.
func (r *Report) Elections() int {
	n := 0
	for _, l := range r.Leaders {
		if l.Elected {
			n++
		}
	}
	return n
}

// LeaderChanges counts the elections won by another server than the
// leader before.
func (r *Report) LeaderChanges() int {
	n, last := 0, ""
	for _, l := range r.Leaders {
		if l.Leader == "" {
			continue
		}
		if last != "" && l.Leader != last {
			n++
		}
		last = l.Leader
	}
	return n
}

// leaderless sums the stretches with no leader known.
func (r *Report) leaderless(end time.Duration) time.Duration {
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

// ServerGates counts the steps whose gate waited for a server's
// stabilization (server swaps and additions).
func (r *Report) ServerGates() int {
	n := 0
	for _, s := range r.Steps {
		if s.Step.Kind == planner.StepSwapServer || s.Step.Kind == planner.StepAddServer {
			n++
		}
	}
	return n
}

func (r *Report) from() string {
	if len(r.Path) > 0 {
		return r.Path[0].From
	}
	if len(r.Servers) > 0 {
		return r.Servers[0].Version
	}
	return "?"
}

// Verdict is the linearizability check's verdict in words: "linearizable",
// "NOT linearizable" or "not decided (the check timed out)".
func (r *Report) Verdict() string {
	switch r.Traffic.Result {
	case porcupine.Ok:
		return "linearizable"
	case porcupine.Illegal:
		if r.Defect != nil {
			return "NOT linearizable, explained by " + r.Defect.ID
		}
		return "NOT linearizable"
	default:
		return "not decided (the check timed out)"
	}
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

func stepNodes(s planner.Step) string {
	switch {
	case s.Kind == planner.StepTransferLeader:
		return s.Node + " → " + s.Target
	case len(s.Nodes) > 0 && s.Kind == planner.StepSwapClients:
		return strings.Join(s.Nodes, ", ")
	case s.Node != "":
		return s.Node
	case len(s.Nodes) > 0:
		return strings.Join(s.Nodes, ", ")
	}
	return ""
}

// mdEscape keeps a table cell on one line and its pipes literal.
func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// maxFailedListed bounds the failed operations listed in report.md.
const maxFailedListed = 40

// WriteMarkdown writes the report as Markdown.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	status := "done"
	if !r.Done {
		status = "NOT done: " + mdEscape(r.Err)
	}
	var hops []string
	for _, h := range r.Path {
		hops = append(hops, h.From+" → "+h.To)
	}
	p("# Rehearsal: Consul %s → %s\n\n", r.from(), r.Target)
	p("A loopback replica of datacenter %s: %d server(s) and %d client(s)", r.Datacenter, len(r.Servers), len(r.Clients))
	if r.RealClients > len(r.Clients) {
		p(" (scaled down from %d clients)", r.RealClients)
	}
	p(", upgraded along the path %s under recorded KV traffic. Started %s.\n\n", strings.Join(hops, ", "), r.Started.UTC().Format(time.RFC3339))
	if len(r.Skipped) > 0 {
		p("Not rehearsed: datacenter(s) %s (a rehearsal replicates one datacenter).\n\n", strings.Join(r.Skipped, ", "))
	}
	p("| | |\n|---|---|\n")
	p("| run | %s |\n", status)
	if r.Data != nil {
		p("| data | %s |\n", mdEscape(r.Data.Row()))
	}
	if len(r.Probes) > 0 {
		p("| probes | %s |\n", mdEscape(r.probeRow()))
	}
	p("| linearizability | %s (Porcupine, %d operations, checked in %s) |\n", r.Verdict(), r.Traffic.Ops, dur(r.Traffic.CheckTime))
	if r.Defect != nil {
		p("| explained by | [%s](%s) (fixed in %s): %s |\n", r.Defect.ID, r.Defect.URL, r.Defect.FixedIn, mdEscape(r.Defect.Summary))
	}
	p("| lost acknowledged writes | %d of %d |\n", len(r.Traffic.Lost), r.Traffic.Acked)
	p("| failed operations | %d indeterminate, %d not sent (of %d) |\n", r.Traffic.Indeterminate, r.Traffic.NotSent, r.Traffic.Ops)
	p("| elections | %d (%d to another server) |\n", r.Elections(), r.LeaderChanges())
	p("| no leader named | %s in all (every agent asked every 200 ms; a follower still naming a dead leader counts as naming one) |\n", dur(r.leaderless(r.Recorded)))
	stab := time.Duration(r.ServerGates()) * r.Stabilization
	p("| wall time of the run | %s |\n", dur(r.Wall))
	p("| sum of stabilization waits | %s (%d server gate(s) × %s) |\n", dur(stab), r.ServerGates(), dur(r.Stabilization))
	if stab > 0 {
		p("| wall / stabilization | %.1f× |\n", float64(r.Wall)/float64(stab))
	}
	p("\n![timeline](timeline.svg)\n\n")

	p("## Steps\n\n")
	p("Times from the start of the traffic. The act is the swap, snapshot or transfer; the gate wait runs from the first gate condition seen not to hold until the gate passed.\n\n")
	p("| # | step | node(s) | versions | start | act | gate wait | total | waited on |\n|---|---|---|---|---|---|---|---|---|\n")
	for i, s := range r.Steps {
		act := s.Duration()
		if s.GateStart >= 0 {
			act = s.GateStart - s.Start
		}
		total := dur(s.Duration())
		if !s.Done {
			total += " (not done)"
		}
		vers := s.Step.To
		if s.Step.From != "" {
			vers = s.Step.From + " → " + s.Step.To
		}
		p("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", i+1, s.Step.Kind, mdEscape(stepNodes(s.Step)), vers,
			dur(s.Start), dur(act), dur(s.GateWait()), total, mdEscape(strings.Join(s.WaitedOn, ", ")))
	}
	if len(r.Steps) == 0 {
		p("| | no step started | | | | | | | |\n")
	}

	if r.Data != nil {
		r.Data.writeDataSection(p)
	}
	if len(r.Probes) > 0 {
		r.writeProbeSection(p)
	}

	p("\n## Leaders\n\nThe leader at the start, then every election the servers logged (log time: one-second precision before Consul 1.0).\n\n| at | leader | |\n|---|---|---|\n")
	last := ""
	for _, l := range r.Leaders {
		who, what := l.Leader, "at the start"
		if who == "" {
			who = "(none known)"
		}
		if l.Elected {
			what = "elected"
			if l.Leader == last {
				what = "re-elected"
			}
		}
		last = l.Leader
		p("| %s | %s | %s |\n", dur(l.At), who, what)
	}

	p("\n## Failed and indeterminate operations\n\n")
	if len(r.Failed) == 0 {
		p("None: every operation was answered.\n")
	} else {
		p("Indeterminate: sent, no answer (the write may or may not have happened). Not sent: the agent's port was closed (it was being swapped).")
		if len(r.Failed) > maxFailedListed {
			p(" The first %d of %d:", maxFailedListed, len(r.Failed))
		}
		p("\n\n| at | agent | op | key | outcome | error |\n|---|---|---|---|---|---|\n")
		for _, op := range r.Failed[:min(len(r.Failed), maxFailedListed)] {
			e := op.Err
			if len(e) > 120 {
				e = e[:120] + "…"
			}
			p("| %s | %s | %s | %s | %s | %s |\n", dur(op.Call), op.Node, op.Kind, op.Key, op.Outcome, mdEscape(e))
		}
	}

	p("\n## Lost writes\n\n")
	if len(r.Traffic.Lost) == 0 {
		p("None of the %d acknowledged writes is missing from the final reads.\n", r.Traffic.Acked)
	} else {
		for _, op := range r.Traffic.Lost {
			p("- %s\n", mdEscape(op.String()))
		}
	}
	if len(r.Traffic.Files) > 0 {
		p("\nThe history and Porcupine's visualization: %s.\n", strings.Join(r.Traffic.Files, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Write writes report.md and timeline.svg into dir and records them in
// r.Files.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md, svg strings.Builder
	if err := r.WriteMarkdown(&md); err != nil {
		return err
	}
	if err := r.WriteSVG(&svg); err != nil {
		return err
	}
	r.Files = nil
	for _, f := range []struct{ name, body string }{{"report.md", md.String()}, {"timeline.svg", svg.String()}} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte(f.body), 0o644); err != nil {
			return err
		}
		r.Files = append(r.Files, p)
	}
	return nil
}
