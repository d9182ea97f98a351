package planner

import (
	"fmt"
	"strings"
)

// VersionError reports a version string that cannot be parsed.
type VersionError struct {
	Node  string // "" when the version is not a node's (a target, say)
	Value string
	Err   error
}

func (e *VersionError) Error() string {
	subject := "target"
	if e.Node != "" {
		subject = e.Node
	}
	return fmt.Sprintf("%s: version %q is not a Consul version (want X.Y.Z, e.g. 1.12.9): %v", subject, e.Value, e.Err)
}

func (e *VersionError) Unwrap() error { return e.Err }

// DowngradeError reports a target older than the version running.
type DowngradeError struct {
	Node string // "" for Path(from, to)
	From string
	To   string
}

func (e *DowngradeError) Error() string {
	subject := "path"
	if e.Node != "" {
		subject = e.Node
	}
	return fmt.Sprintf("%s: %s -> %s is a downgrade (target must be >= the running version); restore a snapshot taken on %s instead, or choose a target >= %s", subject, e.From, e.To, e.To, e.From)
}

// RefusedError is returned by Next and Plan when Check found blocking
// findings that the policy did not waive. Nothing should be touched.
// errors.As reaches a *DowngradeError through it for each agent (or group
// of clients) that runs a version newer than the target, and an
// *UnknownReleaseError when the target is not a Consul release.
type RefusedError struct {
	Findings Findings // the unwaived blocking findings

	downgrades []error
}

// Unwrap returns a *DowngradeError for each unwaived downgrade finding and
// an *UnknownReleaseError for an unwaived unknown-release finding.
func (e *RefusedError) Unwrap() []error { return e.downgrades }

// refusal is fs.Err() with the downgrades and the unknown release of the
// target made reachable.
func refusal(fs Findings, target string) error {
	err := fs.Err()
	re, ok := err.(*RefusedError)
	if !ok {
		return err
	}
	for _, f := range re.Findings {
		switch f.Rule {
		case PrecheckDowngrade:
			re.downgrades = append(re.downgrades, &DowngradeError{Node: f.Node, From: f.Value, To: target})
		case PrecheckUnknownRelease:
			if v, err := parseVersion(target); err == nil {
				re.downgrades = append(re.downgrades, unknownRelease(target, v))
			}
		}
	}
	return re
}

// WaiverError reports waived rule IDs that name no rule, built-in or the
// policy's own: a misspelt waiver would otherwise waive nothing, silently.
type WaiverError struct {
	// IDs are the unknown IDs, in the policy's order.
	IDs []RuleID
	// Suggest maps an unknown ID to a known one it resembles, when there
	// is one.
	Suggest map[RuleID]RuleID
}

func (e *WaiverError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy waive: %d unknown rule ID(s):", len(e.IDs))
	for i, id := range e.IDs {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %q", id)
		if s := e.Suggest[id]; s != "" {
			fmt.Fprintf(&b, " (did you mean %q?)", s)
		}
	}
	b.WriteString("; waive the rule IDs that findings name (planner.Catalogue lists the built-in ones; a policy rule's own ID counts too)")
	return b.String()
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "plan refused: %d blocking finding(s)", len(e.Findings))
	for i, f := range e.Findings {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.Findings)-i)
			break
		}
		b.WriteString("; ")
		b.WriteString(f.String())
	}
	return b.String()
}

// String renders a finding on one line: rule, node, value, limit, hint.
func (f Finding) String() string {
	var b strings.Builder
	if f.Node != "" {
		b.WriteString(f.Node)
		b.WriteString(": ")
	}
	b.WriteString(f.Message)
	if f.Value != "" || f.Limit != "" {
		b.WriteString(" (")
		b.WriteString(string(f.Rule))
		if f.Value != "" {
			b.WriteString(": value ")
			b.WriteString(f.Value)
		}
		if f.Limit != "" {
			b.WriteString(", limit ")
			b.WriteString(f.Limit)
		}
		b.WriteString(")")
	} else {
		b.WriteString(" (" + string(f.Rule) + ")")
	}
	if f.Hint != "" {
		b.WriteString("; ")
		b.WriteString(f.Hint)
	}
	return b.String()
}

// Blocking returns the blocking findings that are not waived.
func (fs Findings) Blocking() Findings {
	var out Findings
	for _, f := range fs {
		if f.Severity == Blocking && !f.Waived {
			out = append(out, f)
		}
	}
	return out
}

// Err returns a *RefusedError when there are unwaived blocking findings,
// else nil.
func (fs Findings) Err() error {
	if b := fs.Blocking(); len(b) > 0 {
		return &RefusedError{Findings: b}
	}
	return nil
}

// ReleaseError reports a stepping stone the path needs that the policy's
// Releases do not list.
type ReleaseError struct {
	// Need is the version ("1.2.4") or the minor lines ("1.14.x or
	// 1.13.x") the path must stop at.
	Need string
	// Rule is the rule that places the stone, and Reason why.
	Rule   RuleID
	Reason string
}

func (e *ReleaseError) Error() string {
	return fmt.Sprintf("the path needs a stepping stone on %s (%s: %s), and the policy's releases list none; add one to releases (and make its binary available to the transport)", e.Need, e.Rule, e.Reason)
}
