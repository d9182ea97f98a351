package planner

import "strings"

// Severity says whether a finding stops a plan.
type Severity string

const (
	// Blocking findings refuse the plan unless waived by rule ID.
	Blocking Severity = "blocking"
	// Warning findings are shown and do not stop the plan.
	Warning Severity = "warning"
	// Info findings explain a choice the planner made.
	Info Severity = "info"
)

// Kind is what a rule changes.
type Kind string

const (
	KindOrdering      Kind = "ordering"
	KindSteppingStone Kind = "stepping-stone"
	KindWindow        Kind = "window"
	KindPrecheck      Kind = "precheck"
	KindConfig        Kind = "config"
	KindACL           Kind = "acl"
	KindRaft          Kind = "raft"
)

// Scope says which nodes a rule's findings name.
type Scope string

const (
	// ScopeCluster: one finding for the cluster (node "").
	ScopeCluster Scope = "cluster"
	// ScopeServers: one finding per server whose version matches From.
	ScopeServers Scope = "servers"
	// ScopeClients: one finding for all clients whose version matches From
	// (naming how many and the first few).
	ScopeClients Scope = "clients"
)

// RuleID names a rule: a built-in one (the Rule* and Precheck* constants,
// listed by Catalogue) or a policy's own. IDs are stable: findings carry
// them, operators waive blocking findings by them (Policy.Waive), and they
// print and marshal as the plain string ("max-majors-per-hop").
type RuleID string

// joinRuleIDs joins ids with sep, like strings.Join.
func joinRuleIDs(ids []RuleID, sep string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = string(id)
	}
	return strings.Join(s, sep)
}

// Rule is one upgrade rule as data. A rule applies to a hop (from -> to)
// when From matches the version a node runs before the hop, To matches the
// hop's target, and When (if set) holds. Both constraints use go-version
// syntax (">= 0.5.0, < 0.5.1"), and several joined by "||" match when any
// of them does ("< 1.8.13 || >= 1.9.0, < 1.9.7"); "" matches every version.
type Rule struct {
	ID       RuleID   `json:"id"`
	Kind     Kind     `json:"kind"`
	Severity Severity `json:"severity"`
	Scope    Scope    `json:"scope,omitempty"`
	From     string   `json:"from,omitempty"`
	To       string   `json:"to,omitempty"`
	// Summary says what the rule is about, in one line.
	Summary string `json:"summary"`
	// Hint says what to do.
	Hint string `json:"hint"`
	// URL is the public source of the rule.
	URL string `json:"url"`
	// When narrows the rule to clusters and policies it concerns (ACLs on,
	// Enterprise, Envoy in use, ...). nil means always.
	When func(RuleContext) bool `json:"-"`
}

// RuleContext is what a rule's When sees.
type RuleContext struct {
	Cluster *Cluster
	Policy  *Policy
	Hop     Hop
}

// Finding is one thing Check found: which rule, how bad, which node and
// value, the limit, what to do and where the rule comes from.
type Finding struct {
	Rule     RuleID   `json:"rule"`
	Severity Severity `json:"severity"`
	Kind     Kind     `json:"kind"`
	// Node is the server or client concerned ("" for the whole cluster).
	Node string `json:"node,omitempty"`
	// Value is the offending value (a version, a count, a setting).
	Value string `json:"value,omitempty"`
	// Limit is what the rule allows.
	Limit string `json:"limit,omitempty"`
	// Hop is the hop concerned ("1.6.10 -> 1.8.19"), if any.
	Hop     string `json:"hop,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	URL     string `json:"url,omitempty"`
	// Waived is true when the policy waived this blocking finding.
	Waived bool `json:"waived,omitempty"`
}

// Findings is every finding of a check, in a stable order.
type Findings []Finding
