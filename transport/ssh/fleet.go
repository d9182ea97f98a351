package ssh

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// Node is one node of a cluster as a Fleet resolves it: what the catalog
// says of it.
type Node struct {
	Name string
	// Address is the catalog's address of the node (an IP or a host name,
	// no port): where its host is reached unless a rule sets Addr.
	Address    string
	Role       transport.Role // transport.RoleServer or transport.RoleClient
	Datacenter string
	Meta       map[string]string // the node's node meta
}

// Settings are the parts of a Host that a Fleet sets by rule. A zero field
// is not set: the node gets it from a rule below (a group listed earlier,
// then the defaults) or, if none sets it, the Host default.
type Settings struct {
	// Addr replaces the catalog's address of the node (a management
	// network, a bastion-reachable name): a host name or IP, without a
	// port (Port gives it).
	Addr string
	// Port is the SSH port (default 22).
	Port       int
	User       string
	BinaryPath string
	Service    Service
	Unit       string
	KeyFile    string

	Systemctl, Journalctl                   []string
	StopCmd, StartCmd, CheckCmd, VersionCmd []string

	CommandTimeout, StopTimeout, StartTimeout, DialTimeout, UnitSettle time.Duration
	SkipRemoteTimeout                                                  *bool
}

// Match says which nodes a Group applies to: those with every condition
// given. A Match must give at least one.
type Match struct {
	// Role is transport.RoleServer or transport.RoleClient ("": any).
	Role transport.Role `json:"role,omitempty"`
	// Datacenter is the node's datacenter ("": any).
	Datacenter string `json:"datacenter,omitempty"`
	// Meta are node-meta pairs the node must all carry, e.g. {"rack":
	// "r1"}.
	Meta map[string]string `json:"meta,omitempty"`
}

func (m Match) matches(n Node) bool {
	if m.Role != "" && m.Role != n.Role {
		return false
	}
	if m.Datacenter != "" && m.Datacenter != n.Datacenter {
		return false
	}
	for k, v := range m.Meta {
		if got, ok := n.Meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (m Match) String() string {
	var parts []string
	if m.Role != "" {
		parts = append(parts, "role "+string(m.Role))
	}
	if m.Datacenter != "" {
		parts = append(parts, "datacenter "+m.Datacenter)
	}
	if len(m.Meta) > 0 {
		parts = append(parts, "meta "+metaText(m.Meta))
	}
	return strings.Join(parts, ", ")
}

func metaText(meta map[string]string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		kv = append(kv, k+"="+meta[k])
	}
	return strings.Join(kv, " ")
}

// Group sets Settings for the nodes its Match selects.
type Group struct {
	// Name names the group in errors ("servers", "rack r1").
	Name  string   `json:"name"`
	Match Match    `json:"match"`
	Set   Settings `json:"set"`
}

// Fleet describes the hosts of a whole cluster by rules instead of host by
// host: Resolve turns it, with the nodes the catalog lists, into the hosts
// New takes. Each field of a node's Host comes from, highest first:
//
//  1. Nodes[name], the node's own entry;
//  2. the Groups whose Match selects the node, a later group over an
//     earlier one (list general groups first, specific ones after);
//  3. Defaults;
//  4. the Host default (port 22, the default commands, timeouts).
//
// The address is the catalog's unless a rule sets Addr. A node the catalog
// lists that no group selects gets the defaults.
type Fleet struct {
	Defaults Settings            `json:"defaults"`
	Groups   []Group             `json:"groups,omitempty"`
	Nodes    map[string]Settings `json:"nodes,omitempty"`
}

// FleetProblem is one thing Resolve refuses.
type FleetProblem struct {
	// Node is the node concerned; "" for a problem of a rule itself.
	Node string
	// Rule is where the value was set: "defaults", `group "servers"`,
	// `nodes["c7"]`, or "the catalog".
	Rule string
	// Field is the Settings or Match field concerned.
	Field   string
	Problem string
	Fix     string
}

func (p FleetProblem) String() string {
	var b strings.Builder
	if p.Node != "" {
		fmt.Fprintf(&b, "node %s: ", p.Node)
	}
	if p.Rule != "" {
		fmt.Fprintf(&b, "%s: ", p.Rule)
	}
	if p.Field != "" {
		fmt.Fprintf(&b, "%s ", p.Field)
	}
	b.WriteString(p.Problem)
	if p.Fix != "" {
		b.WriteString("; " + p.Fix)
	}
	return b.String()
}

// FleetError lists every problem Resolve found (not only the first), each
// naming the node, the rule, the field and the fix.
type FleetError struct {
	Problems []FleetProblem
}

func (e *FleetError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fleet: %d problem(s)", len(e.Problems))
	for i, p := range e.Problems {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-i)
			break
		}
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Validate checks the rules alone, without nodes: what Resolve refuses
// whatever the catalog lists (a group without a name or a match, a bad
// port or role, an Addr with a port, an unknown Service). It returns a
// *FleetError or nil.
func (f Fleet) Validate() error {
	if ps := f.ruleProblems(); len(ps) > 0 {
		return &FleetError{Problems: ps}
	}
	return nil
}

func (f Fleet) ruleProblems() []FleetProblem {
	var problems []FleetProblem
	add := func(p FleetProblem) { problems = append(problems, p) }
	checkSettings := func(rule string, s Settings) {
		if s.Port < 0 || s.Port > 65535 {
			add(FleetProblem{Rule: rule, Field: "Port", Problem: fmt.Sprintf("is %d", s.Port), Fix: "give a port from 1 to 65535, or 0 for 22"})
		}
		if s.Addr != "" {
			if _, _, err := net.SplitHostPort(s.Addr); err == nil {
				add(FleetProblem{Rule: rule, Field: "Addr", Problem: fmt.Sprintf("%q holds a port", s.Addr), Fix: "give the host alone in Addr and the port in Port"})
			} else if strings.ContainsAny(s.Addr, " /@") {
				add(FleetProblem{Rule: rule, Field: "Addr", Problem: fmt.Sprintf("%q is not a host name or IP", s.Addr), Fix: "give e.g. 10.0.0.5 or consul-s1.internal"})
			}
		}
		switch s.Service {
		case "", ServiceCommands, ServiceSupervisor, ServiceSystemd:
		default:
			add(FleetProblem{Rule: rule, Field: "Service", Problem: fmt.Sprintf("%q is not a service manager", s.Service), Fix: fmt.Sprintf("give %q, %q or %q", ServiceCommands, ServiceSupervisor, ServiceSystemd)})
		}
	}
	checkSettings("defaults", f.Defaults)
	seenGroup := map[string]bool{}
	for i, g := range f.Groups {
		rule := fmt.Sprintf("group %q", g.Name)
		if g.Name == "" {
			rule = fmt.Sprintf("group #%d", i+1)
			add(FleetProblem{Rule: rule, Field: "name", Problem: "is empty", Fix: "name the group (errors name it), e.g. \"servers\" or \"rack r1\""})
		} else if seenGroup[g.Name] {
			add(FleetProblem{Rule: rule, Field: "name", Problem: "is used by two groups", Fix: "give each group a name of its own"})
		}
		seenGroup[g.Name] = true
		m := g.Match
		switch {
		case m.Role == "" && m.Datacenter == "" && len(m.Meta) == 0:
			add(FleetProblem{Rule: rule, Field: "match", Problem: "is empty, so it selects every node", Fix: "give a role, a datacenter or node meta to match, or put these settings in defaults"})
		case m.Role != "" && m.Role != transport.RoleServer && m.Role != transport.RoleClient:
			add(FleetProblem{Rule: rule, Field: "match.role", Problem: fmt.Sprintf("%q is not a role", m.Role), Fix: fmt.Sprintf("give %q or %q", transport.RoleServer, transport.RoleClient)})
		}
		for _, k := range slices.Sorted(maps.Keys(m.Meta)) {
			if k == "" || m.Meta[k] == "" {
				add(FleetProblem{Rule: rule, Field: "match.meta", Problem: fmt.Sprintf("has an empty key or value (%q: %q)", k, m.Meta[k]), Fix: "give both, e.g. {\"rack\": \"r1\"}"})
			}
		}
		checkSettings(rule, g.Set)
	}

	for _, name := range slices.Sorted(maps.Keys(f.Nodes)) {
		if err := transport.ValidateNode(name); err != nil {
			add(FleetProblem{Node: name, Rule: fmt.Sprintf("nodes[%q]", name), Problem: fmt.Sprintf("is not a node name: %v", err), Fix: "give the node's name as the catalog lists it"})
			continue
		}
		checkSettings(fmt.Sprintf("nodes[%q]", name), f.Nodes[name])
	}
	return problems
}

// Resolve returns the host of every node, by the rules of the fleet (see
// Fleet). Every problem found is returned at once in a *FleetError: a rule
// that is malformed (a group without a name or a match, a bad port or
// role, an Addr with a port), an entry in Nodes for a node the list does
// not hold, a node no rule gives a user or binary path, a node without an
// address, and settings that contradict each other (ServiceSystemd with
// StopCmd). The hosts are then checked as New checks them.
func (f Fleet) Resolve(nodes []Node) (map[string]Host, error) {
	problems := f.ruleProblems()
	add := func(p FleetProblem) { problems = append(problems, p) }

	byName := map[string]Node{}
	for i, n := range nodes {
		rule := "the catalog"
		switch {
		case transport.ValidateNode(n.Name) != nil:
			add(FleetProblem{Node: n.Name, Rule: rule, Field: "node name", Problem: fmt.Sprintf("(#%d) is not a name the transport takes: %v", i+1, transport.ValidateNode(n.Name)), Fix: "rename the node, or drop it from the list"})
			continue
		case n.Role != transport.RoleServer && n.Role != transport.RoleClient:
			add(FleetProblem{Node: n.Name, Rule: rule, Field: "role", Problem: fmt.Sprintf("%q is not %q or %q", n.Role, transport.RoleServer, transport.RoleClient), Fix: "give each node its role (servers carry the serf tag role=consul)"})
		}
		if _, dup := byName[n.Name]; dup {
			add(FleetProblem{Node: n.Name, Rule: rule, Problem: "is listed twice", Fix: "list each node once (node names are unique within a cluster, and across a WAN federation)"})
		}
		byName[n.Name] = n
	}
	for _, name := range slices.Sorted(maps.Keys(f.Nodes)) {
		rule := fmt.Sprintf("nodes[%q]", name)
		if _, ok := byName[name]; !ok {
			add(FleetProblem{Node: name, Rule: rule, Problem: fmt.Sprintf("names a node the catalog does not list (it lists %d: %s)", len(byName), sample(slices.Sorted(maps.Keys(byName)), 8)), Fix: "fix the name, or remove the entry"})
		}
	}

	hosts := map[string]Host{}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		n := byName[name]
		r := resolved{from: map[string]string{}}
		r.apply("defaults", f.Defaults)
		for i, g := range f.Groups {
			if g.Match.matches(n) {
				label := fmt.Sprintf("group %q", g.Name)
				if g.Name == "" {
					label = fmt.Sprintf("group #%d", i+1)
				}
				r.apply(label, g.Set)
			}
		}
		if s, ok := f.Nodes[name]; ok {
			r.apply(fmt.Sprintf("nodes[%q]", name), s)
		}
		where := fmt.Sprintf("set it in defaults, in a group that selects %s (a %s in %s", name, n.Role, orDash(n.Datacenter))
		if len(n.Meta) > 0 {
			where += " with meta " + metaText(n.Meta)
		}
		where += fmt.Sprintf("), or in nodes[%q]", name)
		s := r.s
		addr := s.Addr
		if addr == "" {
			addr = n.Address
		}
		if addr == "" {
			add(FleetProblem{Node: name, Rule: "the catalog", Field: "Address", Problem: "is empty and no rule sets Addr", Fix: "set Addr in nodes[\"" + name + "\"]"})
		}
		if s.User == "" {
			add(FleetProblem{Node: name, Field: "User", Problem: "is set by no rule", Fix: where})
		}
		if s.BinaryPath == "" {
			add(FleetProblem{Node: name, Field: "BinaryPath", Problem: "is set by no rule", Fix: where})
		}
		if s.Service == ServiceSystemd {
			for _, c := range []struct {
				field string
				set   bool
			}{{"StopCmd", s.StopCmd != nil}, {"StartCmd", s.StartCmd != nil}, {"CheckCmd", s.CheckCmd != nil}} {
				if c.set {
					add(FleetProblem{Node: name, Rule: r.from[c.field], Field: c.field,
						Problem: fmt.Sprintf("is set, but Service is %q (from %s), which drives the unit through systemctl", ServiceSystemd, r.from["Service"]),
						Fix:     fmt.Sprintf("drop %s from %s, or set Service %q for this node to run your own commands", c.field, r.from[c.field], ServiceCommands)})
				}
			}
		} else {
			for _, c := range []struct {
				field string
				set   bool
			}{{"Unit", s.Unit != ""}, {"Systemctl", s.Systemctl != nil}, {"Journalctl", s.Journalctl != nil}} {
				if c.set {
					svc := "the default (commands)"
					if s.Service != "" {
						svc = fmt.Sprintf("%q (from %s)", s.Service, r.from["Service"])
					}
					add(FleetProblem{Node: name, Rule: r.from[c.field], Field: c.field,
						Problem: fmt.Sprintf("is set, but Service is %s", svc),
						Fix:     fmt.Sprintf("set Service %q for this node, or drop %s", ServiceSystemd, c.field)})
				}
			}
		}
		port := s.Port
		if port == 0 {
			port = 22
		}
		h := Host{
			Addr: net.JoinHostPort(addr, strconv.Itoa(port)), User: s.User, BinaryPath: s.BinaryPath,
			StopCmd: s.StopCmd, StartCmd: s.StartCmd, CheckCmd: s.CheckCmd, VersionCmd: s.VersionCmd,
			CommandTimeout: s.CommandTimeout, StopTimeout: s.StopTimeout, StartTimeout: s.StartTimeout, DialTimeout: s.DialTimeout,
			Service: s.Service, Unit: s.Unit, Systemctl: s.Systemctl, Journalctl: s.Journalctl, UnitSettle: s.UnitSettle, KeyFile: s.KeyFile,
		}
		if s.SkipRemoteTimeout != nil {
			h.SkipRemoteTimeout = *s.SkipRemoteTimeout
		}
		hosts[name] = h
	}
	if len(problems) > 0 {
		return nil, &FleetError{Problems: problems}
	}
	// What New would refuse (a relative BinaryPath, a template typo), now,
	// naming the node.
	for _, name := range slices.Sorted(maps.Keys(hosts)) {
		if _, err := hosts[name].prepare(name); err != nil {
			add(FleetProblem{Node: name, Problem: err.Error(), Fix: "fix the rule that sets it"})
		}
	}
	if len(problems) > 0 {
		return nil, &FleetError{Problems: problems}
	}
	return hosts, nil
}

// resolved is a node's settings as the rules set them, and which rule set
// each field.
type resolved struct {
	s    Settings
	from map[string]string
}

func (r *resolved) apply(rule string, s Settings) {
	str := func(field string, dst *string, v string) {
		if v != "" {
			*dst, r.from[field] = v, rule
		}
	}
	list := func(field string, dst *[]string, v []string) {
		if v != nil {
			*dst, r.from[field] = v, rule
		}
	}
	dur := func(field string, dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst, r.from[field] = v, rule
		}
	}
	str("Addr", &r.s.Addr, s.Addr)
	if s.Port != 0 {
		r.s.Port, r.from["Port"] = s.Port, rule
	}
	str("User", &r.s.User, s.User)
	str("BinaryPath", &r.s.BinaryPath, s.BinaryPath)
	if s.Service != "" {
		r.s.Service, r.from["Service"] = s.Service, rule
	}
	str("Unit", &r.s.Unit, s.Unit)
	str("KeyFile", &r.s.KeyFile, s.KeyFile)
	list("Systemctl", &r.s.Systemctl, s.Systemctl)
	list("Journalctl", &r.s.Journalctl, s.Journalctl)
	list("StopCmd", &r.s.StopCmd, s.StopCmd)
	list("StartCmd", &r.s.StartCmd, s.StartCmd)
	list("CheckCmd", &r.s.CheckCmd, s.CheckCmd)
	list("VersionCmd", &r.s.VersionCmd, s.VersionCmd)
	dur("CommandTimeout", &r.s.CommandTimeout, s.CommandTimeout)
	dur("StopTimeout", &r.s.StopTimeout, s.StopTimeout)
	dur("StartTimeout", &r.s.StartTimeout, s.StartTimeout)
	dur("DialTimeout", &r.s.DialTimeout, s.DialTimeout)
	dur("UnitSettle", &r.s.UnitSettle, s.UnitSettle)
	if s.SkipRemoteTimeout != nil {
		r.s.SkipRemoteTimeout, r.from["SkipRemoteTimeout"] = s.SkipRemoteTimeout, rule
	}
}

func sample(names []string, n int) string {
	if len(names) == 0 {
		return "none"
	}
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(", and %d more", len(names)-n)
}

func orDash(dc string) string {
	if dc == "" {
		return "no named datacenter"
	}
	return "datacenter " + dc
}
