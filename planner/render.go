package planner

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
)

// wavePreview is how many client names a wave shows before "+N more".
const wavePreview = 3

// String renders the plan for a human, in the manner of `terraform plan`:
// the path (each hop and why it stops there), the findings (severity, rule,
// node, message and hint), then the numbered steps (hop, kind, node or
// wave, from -> to, stop mode, gate, why), with deadlines and points of no
// return marked and explained below the table. Steps are numbered from 1;
// the JSON form keeps 0-based indexes.
func (p *UpgradePlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Upgrade plan to %s\n", p.Target)
	fmt.Fprintf(&b, "Policy: %s\n", policySummary(&p.Policy))
	if p.Basis != nil {
		b.WriteString("Reviewed on (applying refuses the plan once this changes beyond its own steps):\n")
		for _, l := range p.Basis.lines() {
			b.WriteString("  " + l + "\n")
		}
	}

	fmt.Fprintf(&b, "\nPath (%d hop(s)):\n", len(p.Path))
	switch {
	case len(p.Path) == 0 && p.Findings.Err() != nil:
		b.WriteString("  (none: the plan is refused; see the blocking findings below)\n")
	case len(p.Path) == 0:
		b.WriteString("  (none: every agent already runs the target)\n")
	}
	for i, h := range p.Path {
		why := h.Reason
		if why == "" && h.Rule == "" {
			why = "the target"
		}
		if h.Rule != "" {
			why = strings.TrimSpace(why + " (" + string(h.Rule) + ")")
		}
		fmt.Fprintf(&b, "  %d. %s -> %s  %s\n", i, h.From, h.To, why)
	}

	blocking := 0
	for _, f := range p.Findings {
		if f.Severity == Blocking && !f.Waived {
			blocking++
		}
	}
	fmt.Fprintf(&b, "\nFindings (%d, %d blocking):\n", len(p.Findings), blocking)
	if len(p.Findings) == 0 {
		b.WriteString("  (none)\n")
	}
	for _, f := range p.Findings {
		sev := string(f.Severity)
		if f.Waived {
			sev += " (waived)"
		}
		node := f.Node
		if node == "" {
			node = "cluster"
		}
		fmt.Fprintf(&b, "  [%s] %s  %s: %s\n", sev, f.Rule, node, f.Message)
		var extra []string
		if f.Hop != "" {
			extra = append(extra, "hop "+f.Hop)
		}
		if f.Value != "" {
			extra = append(extra, "value "+f.Value)
		}
		if f.Limit != "" {
			extra = append(extra, "limit "+f.Limit)
		}
		if len(extra) > 0 {
			fmt.Fprintf(&b, "      %s\n", strings.Join(extra, ", "))
		}
		if f.Hint != "" {
			fmt.Fprintf(&b, "      hint: %s\n", f.Hint)
		}
	}

	if blocking > 0 && len(p.Steps) == 0 {
		fmt.Fprintf(&b, "\nRefused: %d blocking finding(s); fix them or waive their rule IDs, then plan again.\n", blocking)
		return b.String()
	}

	fmt.Fprintf(&b, "\nSteps (%d):\n", len(p.Steps))
	if len(p.Steps) == 0 {
		b.WriteString("  (none)\n")
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	if len(p.Steps) > 0 {
		fmt.Fprintln(tw, "  #\tHOP\tKIND\tNODE(S)\tFROM -> TO\tSTOP\tGATE\tMARK\tWHY")
	}
	gates := map[string][]GateCheck{}
	for i, s := range p.Steps {
		from := s.From
		if from == "" {
			from = "mixed"
			if s.Kind == StepSnapshot || s.Kind == StepAddServer {
				from = "-"
			}
		}
		var mark []string
		if s.Deadline != nil {
			mark = append(mark, "deadline")
		}
		if s.NoReturn != "" {
			mark = append(mark, "no-return")
		}
		kind := string(s.Kind)
		if s.Kind == StepSnapshot && s.Backup == BackupLogical {
			kind += "/logical"
		}
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s -> %s\t%s\t%s\t%s\t%s\n",
			i+1, s.Hop, kind, stepNodes(&s), from, s.To, dash(string(s.StopMode)), gateName(s.Gate, gates), dash(strings.Join(mark, ",")), s.Reason)
	}
	tw.Flush()

	if len(gates) > 0 {
		b.WriteString("\nGates (checked in order after each step):\n")
		names := make([]string, 0, len(gates))
		for n := range gates {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			parts := make([]string, len(gates[n]))
			for i, g := range gates[n] {
				parts[i] = string(g)
			}
			fmt.Fprintf(&b, "  %s = %s\n", n, strings.Join(parts, ", "))
		}
	}

	if backupsUsed(p.Steps, BackupLogical) {
		b.WriteString("\nBackups:\n")
		b.WriteString("  snapshot/logical = servers below 0.7.1 have no snapshot API: the KV tree (and the ACL tokens when ACLs are on) is exported through the HTTP API with a SHA-256 checksum and read back to verify; it cannot restore " + LogicalBackupOmits + "\n")
	}

	if modes := stopModesUsed(p.Steps); len(modes) > 0 {
		how := "chosen per role and version by DefaultStopMode"
		if p.Policy.StopMode != StopDefault {
			how = "set by the policy"
		}
		fmt.Fprintf(&b, "\nStop modes (%s):\n", how)
		for _, m := range modes {
			fmt.Fprintf(&b, "  %s = %s\n", m, stopModeExplained[m])
		}
	}

	type span struct {
		d  Deadline
		dc string
	}
	var spans []span
	for _, s := range p.Steps {
		if s.Deadline == nil {
			continue
		}
		dup := false
		for _, sp := range spans {
			if sp.d.Rule == s.Deadline.Rule && sp.d.First == s.Deadline.First && sp.d.Last == s.Deadline.Last {
				dup = true
				break
			}
		}
		if !dup {
			spans = append(spans, span{d: *s.Deadline, dc: s.Datacenter})
		}
	}
	if len(spans) > 0 {
		b.WriteString("\nDeadlines:\n")
		for _, sp := range spans {
			fmt.Fprintf(&b, "  steps %d-%d (%s) within %s (%s): %s\n", sp.d.First+1, sp.d.Last+1, sp.dc, seconds(sp.d.Seconds), sp.d.Rule, sp.d.Reason)
		}
	}

	var nr []string
	for i, s := range p.Steps {
		if s.NoReturn != "" {
			nr = append(nr, fmt.Sprintf("  step %d: %s %s -> %s (%s): a binary downgrade of %s is unsafe from here; go back only by restoring the backup taken before the hop\n", i+1, s.Node, s.From, s.To, s.NoReturn, s.Node))
		}
	}
	if len(nr) > 0 {
		b.WriteString("\nPoints of no return:\n")
		for _, l := range nr {
			b.WriteString(l)
		}
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func seconds(n int) string {
	if n%60 == 0 {
		return fmt.Sprintf("%d min", n/60)
	}
	return fmt.Sprintf("%d s", n)
}

// stepNodes names the node(s) of a step: a wave shows its first few clients
// and how many more.
func stepNodes(s *Step) string {
	switch {
	case s.Kind == StepTransferLeader:
		return s.Node + " => " + s.Target
	case s.Node != "":
		return s.Node
	case s.Kind == StepAddServer:
		return "(new server in " + s.Datacenter + ")"
	case s.Kind == StepSnapshot:
		return "all datacenters (via " + strings.Join(s.Nodes, ",") + ")"
	case len(s.Nodes) > 0:
		show := s.Nodes
		if len(show) > wavePreview {
			show = show[:wavePreview]
		}
		out := strings.Join(show, ",")
		if len(s.Nodes) > len(show) {
			out += fmt.Sprintf(" +%d more", len(s.Nodes)-len(show))
		}
		if s.Datacenter != "" {
			out = s.Datacenter + ": " + out
		}
		return out
	}
	return "-"
}

// gateName gives a gate list a short name for the table and records it for
// the legend: the standard server and client gates are named after their
// role, any other list is spelled out.
func gateName(g []GateCheck, seen map[string][]GateCheck) string {
	if len(g) == 0 {
		return "-"
	}
	name := ""
	switch {
	case slices.Equal(g, serverGate):
		name = "server"
	case slices.Equal(g, serverGateNoAutopilot):
		name = "server-pre-0.8"
	case slices.Equal(g, clientGate):
		name = "client"
	case slices.Equal(g, leaderGate):
		name = "leader"
	default:
		parts := make([]string, len(g))
		for i, c := range g {
			parts[i] = string(c)
		}
		return strings.Join(parts, ",")
	}
	seen[name] = g
	return name
}

func policySummary(p *Policy) string {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	parts := []string{
		"strategy " + or(string(p.Strategy), string(InPlace)),
		"servers " + or(string(p.ServerOrder), string(FollowersFirst)),
		"stop " + or(string(p.StopMode), "per version"),
	}
	if p.Clients.Mode == ClientLeaveBehind {
		parts = append(parts, "clients left behind")
	} else {
		canary, _ := p.Clients.waveSizes(0)
		batch := "10%"
		switch {
		case p.Clients.BatchSize > 0:
			batch = fmt.Sprint(p.Clients.BatchSize)
		case p.Clients.BatchPercent > 0:
			batch = fmt.Sprintf("%d%%", p.Clients.BatchPercent)
		}
		w := fmt.Sprintf("clients in waves (canary %d, then %s", canary, batch)
		if p.Clients.MaxUnavailable > 0 {
			w += fmt.Sprintf(", at most %d per zone", p.Clients.MaxUnavailable)
		}
		parts = append(parts, w+")")
	}
	if p.NoTransferLeadership {
		parts = append(parts, "no leadership transfer")
	}
	if p.NoSnapshot {
		parts = append(parts, "no snapshots")
	}
	if p.Enterprise {
		parts = append(parts, "enterprise")
	}
	if len(p.Waive) > 0 {
		parts = append(parts, "waived "+joinRuleIDs(p.Waive, ","))
	}
	return strings.Join(parts, "; ")
}

// stopModeExplained says what each stop mode does to the agent, in the
// words a reviewer of the plan needs.
var stopModeExplained = map[StopMode]string{
	StopKill:      "SIGKILL: the agent never leaves the cluster, whatever leave_on_terminate says; the default for servers below 0.7.0 and for clients (an in-place client swap must not deregister its services)",
	StopTerminate: "SIGTERM: a clean shutdown; servers from 0.7.0 default to staying members on it (leave_on_terminate=false); choose kill where leave_on_terminate was turned on",
	StopLeave:     "graceful leave, then stop: the agent leaves the cluster and rejoins on start; never for an in-place server swap",
}

// stopModesUsed returns the distinct stop modes of the steps, in the order
// kill, terminate, leave.
func stopModesUsed(steps []Step) []StopMode {
	var out []StopMode
	for _, m := range []StopMode{StopKill, StopTerminate, StopLeave} {
		for i := range steps {
			if steps[i].StopMode == m {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// backupsUsed reports whether a snapshot step of the plan takes a backup of
// kind.
func backupsUsed(steps []Step, kind BackupKind) bool {
	for _, s := range steps {
		if s.Kind == StepSnapshot && s.Backup == kind {
			return true
		}
	}
	return false
}
