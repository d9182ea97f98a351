package upgrade

import (
	"context"

	"fmt"
	"slices"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// AgentConfigProblem is one agent whose configuration sets an option that
// a release on the run's path removed or changed, as its /v1/agent/self
// shows it (the pre-flight's table of options): the rule of the catalogue that names the
// change (Policy.Waive waives a blocking one by it), the option as an
// operator writes it, the value observed and what to do.
type AgentConfigProblem struct {
	Node     string
	Rule     planner.RuleID
	Severity planner.Severity
	Option   string
	Value    string
	// Release is the release that removed or changed the option, which
	// the path from the agent's version to the target crosses.
	Release string
	Problem string
	URL     string
	Waived  bool
}

func (p AgentConfigProblem) String() string {
	s := fmt.Sprintf("agent %s sets %s = %s, and %s: %s (%s, %s)", p.Node, p.Option, p.Value, p.Release, p.Problem, p.Rule, p.URL)
	if p.Waived {
		s += " [waived]"
	}
	return s
}

// AgentConfigError refuses a run before anything was touched: the
// pre-flight read the configuration of the servers (and of the agent the
// run talks through) and found options a release on the path removed or
// changed in a way that stops the agent (a blocking AgentConfigProblem not
// waived). Problems holds every problem found, warnings too.
type AgentConfigError struct {
	Problems []AgentConfigProblem
}

func (e *AgentConfigError) Error() string {
	var b strings.Builder
	n := 0
	for _, p := range e.Problems {
		if p.Severity == planner.Blocking && !p.Waived {
			n++
		}
	}
	fmt.Fprintf(&b, "pre-flight: %d agent configuration option(s) would stop the upgrade; the run was refused before anything was touched", n)
	for _, p := range e.Problems {
		if p.Severity == planner.Blocking && !p.Waived {
			b.WriteString("; " + p.String())
		}
	}
	b.WriteString("; change the configuration first, or waive the rule by its ID (Policy.Waive) if the agents do not load it")
	return b.String()
}

// agentOption is one option a release removed or changed, as the
// pre-flight finds it in /v1/agent/self. Each is a fact of the
// version-specific upgrade notes (the rule's URL), found set in a way the
// release breaks: a value the defaults never give, or one the release
// changes the meaning of.
type agentOption struct {
	rule     planner.RuleID
	severity planner.Severity
	option   string // as an operator writes it
	release  string // the release that removed or changed it
	// observed reports the value seen when the agent's configuration sets
	// the option so ("", false when not, or when its version does not
	// show it).
	observed func(self map[string]map[string]any) (string, bool)
	problem  string
}

// urlVersionSpecificNotes is the source of every agentOptions row.
const urlVersionSpecificNotes = "https://github.com/hashicorp/consul/blob/07b1c3d227b3c2f094c7593b1ccf85f528ac0e6d/website/content/docs/upgrade/version-specific.mdx"

// agentOptions is the table of options the pre-flight checks, from the
// version-specific upgrade notes.
var agentOptions = []agentOption{
	{
		rule: planner.RuleReapRemoved071, severity: planner.Blocking, option: "reap", release: "0.7.1",
		// 0.6-0.7.0: Config.Reap is a *bool, null unless set.
		observed: func(self map[string]map[string]any) (string, bool) {
			v, ok := selfPath(self, "Config", "Reap").(bool)
			return fmt.Sprint(v), ok
		},
		problem: "0.7.1 removed the option and child reaping: remove reap from the configuration (in a container, run Consul under a PID-1 init such as dumb-init) before the hop",
	},
	{
		rule: planner.RuleACLEnforceRemoved18, severity: planner.Warning, option: "acl_enforce_version_8", release: "1.8.0",
		// 0.8/0.9: Config.ACLEnforceVersion8 (*bool); 1.0-1.7:
		// DebugConfig.ACLEnforceVersion8, true by default.
		observed: func(self map[string]map[string]any) (string, bool) {
			for _, sec := range []string{"DebugConfig", "Config"} {
				if v, ok := selfPath(self, sec, "ACLEnforceVersion8").(bool); ok && !v {
					return "false", true
				}
			}
			return "", false
		},
		problem: "1.8.0 removed the option and enforces version 8 ACLs always (node, session, KV and agent rules): tokens that worked without them are denied after the hop; give the tokens those rules and remove the key",
	},
	{
		rule: planner.RuleDisableCompat19113, severity: planner.Warning, option: "telemetry.disable_compat_1.9", release: "1.13.0",
		// 1.10-1.12: DebugConfig.Telemetry.DisableCompatOneNine; false
		// emits the metrics under their pre-1.9 names too.
		observed: func(self map[string]map[string]any) (string, bool) {
			if v, ok := selfPath(self, "DebugConfig", "Telemetry", "DisableCompatOneNine").(bool); ok && !v {
				return "false", true
			}
			return "", false
		},
		problem: "1.13.0 removed the option and the metrics under their pre-1.9 names this agent still emits: move dashboards and alerts to the new names and remove the key before the hop",
	},
	{
		rule: planner.RuleServerlessPlugin115, severity: planner.Warning, option: "connect.enable_serverless_plugin", release: "1.15.0",
		// 1.10-1.14: DebugConfig.ConnectServerlessPluginEnabled.
		observed: func(self map[string]map[string]any) (string, bool) {
			if v, ok := selfPath(self, "DebugConfig", "ConnectServerlessPluginEnabled").(bool); ok && v {
				return "true", true
			}
			return "", false
		},
		problem: "1.15.0 removed the option (Lambda support is on by default, configured through EnvoyExtensions): remove the key before the hop",
	},
}

// selfPath is the value at section/keys of an agent self document (nil
// when absent).
func selfPath(self map[string]map[string]any, section string, keys ...string) any {
	var v any = map[string]any(self[section])
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// crosses reports whether going from version from to target passes
// release (from < release <= target).
func crosses(from, release, target string) bool {
	f, err1 := planner.ParseVersion(from)
	r, err2 := planner.ParseVersion(release)
	t, err3 := planner.ParseVersion(target)
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	return f.Core().LessThan(r) && !t.Core().LessThan(r)
}

// agentConfigProblems judges agentOptions on the configuration of agents
// (by node name) running versions (by node name) on the way to target,
// waiving what pol waives. Pure.
func agentConfigProblems(selves map[string]map[string]map[string]any, versions map[string]string, target string, pol planner.Policy) []AgentConfigProblem {
	var out []AgentConfigProblem
	nodes := make([]string, 0, len(selves))
	for n := range selves {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		for _, o := range agentOptions {
			if !crosses(versions[n], o.release, target) {
				continue
			}
			v, ok := o.observed(selves[n])
			if !ok {
				continue
			}
			out = append(out, AgentConfigProblem{Node: n, Rule: o.rule, Severity: o.severity, Option: o.option, Value: v, Release: o.release,
				Problem: o.problem, URL: urlVersionSpecificNotes, Waived: o.severity == planner.Blocking && slices.Contains(pol.Waive, o.rule)})
		}
	}
	return out
}

// agentConfigPreflight reads /v1/agent/self of every server of c (through
// Config.ServerAPI; without it, only of the agent each Consul of the run
// talks through) and of the agent the run talks through, and judges the
// options the path to the target crosses (agentOptions): each problem is an
// EventPreflight naming the node, and a blocking one not waived refuses
// the run with an *AgentConfigError (with report set, a dry run, it is
// only reported). An agent that cannot be read is reported and skipped.
func (r *runner) agentConfigPreflight(ctx context.Context, c planner.Cluster, report bool) error {
	selves := map[string]map[string]map[string]any{}
	versions := map[string]string{}
	for _, s := range c.Servers {
		versions[s.Name] = s.Version
	}
	for _, cl := range c.Clients {
		versions[cl.Name] = cl.Version
	}
	read := func(who string, cons Consul) {
		self, err := cons.AgentSelf(ctx)
		if err != nil {
			r.emit(ctx, Event{Kind: EventPreflight, Node: who, Err: err, Detail: fmt.Sprintf("configuration of %s not checked: its /v1/agent/self could not be read", orUnknown(who))})
			return
		}
		name := selfString(self, "NodeName")
		if name == "" {
			name = who
		}
		selves[name] = self
	}
	for _, dc := range r.datacenters() {
		read("the agent of "+r.dcName(dc), r.consul(dc))
	}
	if r.cfg.ServerAPI != nil {
		for _, s := range c.Servers {
			if _, done := selves[s.Name]; done {
				continue
			}
			sc, err := r.cfg.ServerAPI(s.Name, s.Address)
			if err != nil {
				r.emit(ctx, Event{Kind: EventPreflight, Node: s.Name, Err: err, Detail: fmt.Sprintf("configuration of %s not checked: its HTTP API cannot be reached", s.Name)})
				continue
			}
			read(s.Name, sc)
		}
	}
	problems := agentConfigProblems(selves, versions, r.cfg.Target, r.cfg.Policy)
	refuse := false
	for _, p := range problems {
		r.emit(ctx, Event{Kind: EventPreflight, Node: p.Node, Detail: string(p.Severity) + ": " + p.String()})
		refuse = refuse || (p.Severity == planner.Blocking && !p.Waived)
	}
	r.emit(ctx, Event{Kind: EventPreflight, Detail: fmt.Sprintf("configuration of %d agent(s) checked against %d option(s) releases on the path removed or changed: %d problem(s)", len(selves), len(agentOptions), len(problems))})
	if !refuse || report {
		return nil
	}
	return &AgentConfigError{Problems: problems}
}
