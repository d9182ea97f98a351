package upgrade

import (
	"fmt"
	"slices"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// StepDecision is what Config.BeforeStep decides about the step it is shown.
type StepDecision int

const (
	// Approve carries the step out. It is the zero value.
	Approve StepDecision = iota
	// StopHere ends the run cleanly before the step: nothing of it is touched,
	// Run returns a Result with Stopped set and the steps left in
	// Remaining, and a nil error. A later run resumes at this step.
	StopHere
	// Abort ends the run before the step with an *AbortedError.
	Abort
)

// String is "approve", "stop-here" or "abort".
func (d StepDecision) String() string {
	switch d {
	case Approve:
		return "approve"
	case StopHere:
		return "stop-here"
	case Abort:
		return "abort"
	}
	return fmt.Sprintf("StepDecision(%d)", int(d))
}

// StepInfo is what Config.BeforeStep is shown before a step.
type StepInfo struct {
	// Index is the step's 0-based position: in Config.Plan.Steps when the
	// run follows an approved plan, else the number of steps this run has
	// done before it.
	Index int
	// Total is the number of steps: len(Config.Plan.Steps) with an approved
	// plan, else Index plus the steps that the plan of the cluster as
	// observed at the start of the run still counted (an estimate; never
	// less than Index+1).
	Total int
	// Step is the step about to be carried out, as the run decided it
	// from the cluster observed just now.
	Step planner.Step
}

// AbortedError is returned by Run when Config.BeforeStep answered Abort
// (or an error). Nothing of the step was touched; Touched is what the steps
// before it touched.
type AbortedError struct {
	Index int
	Total int
	Step  planner.Step
	// Err is the error BeforeStep returned (nil for Abort).
	Err     error
	Touched Touched
}

func (e *AbortedError) Error() string {
	msg := fmt.Sprintf("upgrade aborted before step %d of %d (%s); nothing of that step was touched", e.Index+1, e.Total, e.Step)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + "; run again to resume from it"
}

func (e *AbortedError) Unwrap() error { return e.Err }

// PlanDivergedError is returned by Run and a Session when the cluster no
// longer matches Config.Plan: the step the observed cluster needs next is
// not the next step of the approved plan that is not yet done, or an agent
// runs a version the plan's path does not contain; and by Session.Execute
// given a step that is not the one the cluster needs now (Want is the step
// given, Got the one decided; the Session goes on). It is returned before
// that step touches anything.
type PlanDivergedError struct {
	// Index is the 0-based index in the plan's steps of the step the plan
	// expected next (len(Steps) when the plan has none left; -1 when the
	// cluster was refused at the start because of an agent's version).
	Index int
	// Total is the number of steps of the plan.
	Total int
	// Node is the node where the plan and the cluster differ ("" when the
	// difference is not about one node).
	Node string
	// Want is the plan's step (zero when the plan has none left, or at the
	// start). Got is the step the observed cluster needs (zero at the
	// start).
	Want planner.Step
	Got  planner.Step
	// Reason says what differs.
	Reason string

	given bool // Session.Execute's: Want is the step it was given
}

func (e *PlanDivergedError) Error() string {
	if e.given {
		return fmt.Sprintf("the step given to Execute (%s) is not the one the cluster needs now (%s): %s; it was not touched: ask Next for the step", e.Want, e.Got, e.Reason)
	}
	var b strings.Builder
	b.WriteString("the cluster has diverged from the approved plan")
	if e.Index >= 0 {
		fmt.Fprintf(&b, " at step %d of %d", e.Index+1, e.Total)
	}
	if e.Node != "" {
		fmt.Fprintf(&b, " (node %s)", e.Node)
	}
	b.WriteString(": " + e.Reason)
	if e.Index >= 0 {
		want := "no step (the plan is finished)"
		if e.Want.Kind != "" {
			want = e.Want.String()
		}
		fmt.Fprintf(&b, "; the plan says %s, the cluster needs %s", want, e.Got)
	}
	b.WriteString("; that step was not touched: re-plan and review")
	return b.String()
}

// checkPlanStart refuses, at the start of a run, a cluster that an approved
// plan does not describe: another target, or an agent on a version that no
// hop of the plan's path starts or ends at.
func checkPlanStart(p *planner.UpgradePlan, c planner.Cluster, target string) error {
	diverged := func(node, reason string) error {
		return &PlanDivergedError{Index: -1, Total: len(p.Steps), Node: node, Reason: reason}
	}
	if !planner.SameVersion(p.Target, target) {
		return diverged("", fmt.Sprintf("the plan's target is %s, the run's is %s", p.Target, target))
	}
	var on []string
	for _, h := range p.Path {
		on = append(on, h.From, h.To)
	}
	onPlan := func(v string) bool {
		if planner.SameVersion(v, p.Target) {
			return true
		}
		return slices.ContainsFunc(on, func(s string) bool { return planner.SameVersion(s, v) })
	}
	// A step in a datacenter the run does not observe would never be
	// asked for: the run would end "done" with it untouched.
	for i, st := range p.Steps {
		if st.Datacenter == "" || slices.ContainsFunc(c.Datacenters, func(d planner.Datacenter) bool { return d.Name == st.Datacenter }) {
			continue
		}
		observed := make([]string, len(c.Datacenters))
		for j, d := range c.Datacenters {
			observed[j] = d.Name
		}
		return &PlanDivergedError{Index: -1, Total: len(p.Steps), Node: st.Node, Want: st,
			Reason: fmt.Sprintf("step %d of the plan (%s) is in datacenter %s, which this run does not observe (it observes %s); add that datacenter's agent to Config.Datacenters (the CLI's -dc %s=ADDRESS)",
				i+1, st, st.Datacenter, strings.Join(observed, ", "), st.Datacenter)}
	}
	path := pathString(p.Path)
	for _, s := range c.Servers {
		if !onPlan(s.Version) {
			return diverged(s.Name, fmt.Sprintf("server %s runs %s, a version the plan's path (%s) does not contain", s.Name, s.Version, path))
		}
	}
	if p.Policy.Clients.Mode == planner.ClientLeaveBehind {
		return nil
	}
	for _, cl := range c.Clients {
		if !onPlan(cl.Version) {
			return diverged(cl.Name, fmt.Sprintf("client %s runs %s, a version the plan's path (%s) does not contain", cl.Name, cl.Version, path))
		}
	}
	return nil
}

func pathString(path []planner.Hop) string {
	if len(path) == 0 {
		return "empty"
	}
	parts := []string{path[0].From}
	for _, h := range path {
		parts = append(parts, h.To)
	}
	return strings.Join(parts, " -> ")
}

// matchPlan finds got in the approved plan: the steps from index from on
// that are already done in c are passed over, and the first that is not
// must be got. It returns that step's index, or a *PlanDivergedError.
func matchPlan(p *planner.UpgradePlan, from int, c planner.Cluster, got planner.Step) (int, error) {
	i := from
	for i < len(p.Steps) && stepDone(c, p.Steps, i) {
		i++
	}
	if i == len(p.Steps) {
		return i, &PlanDivergedError{Index: i, Total: len(p.Steps), Node: got.Node, Got: got,
			Reason: "every step of the plan is done, and the cluster still needs another"}
	}
	want := p.Steps[i]
	if node, reason := stepDiff(c, want, got); reason != "" {
		return i, &PlanDivergedError{Index: i, Total: len(p.Steps), Node: node, Want: want, Got: got, Reason: reason}
	}
	return i, nil
}

// stepDone reports whether steps[i] is already done in c (see
// planner.StepDoneIn, which CheckBasis shares).
func stepDone(c planner.Cluster, steps []planner.Step, i int) bool {
	return planner.StepDoneIn(c, steps, i)
}

// pendingClients are the clients of wave s that are in c and below s.To.
func pendingClients(c planner.Cluster, s planner.Step) []string {
	ver := make(map[string]string, len(c.Clients))
	for _, cl := range c.Clients {
		ver[cl.Name] = cl.Version
	}
	var out []string
	for _, n := range s.Nodes {
		if v, ok := ver[n]; ok && !atLeast(v, s.To) {
			out = append(out, n)
		}
	}
	return out
}

// stepDiff says how got differs from the plan's want ("" when it is the
// same step), and the node concerned.
func stepDiff(c planner.Cluster, want, got planner.Step) (node, reason string) {
	node = want.Node
	if node == "" {
		node = got.Node
	}
	switch {
	case want.Kind != got.Kind:
		return node, fmt.Sprintf("the plan's next step is a %s, the cluster needs a %s", want.Kind, got.Kind)
	case !sameDC(want.Datacenter, got.Datacenter):
		return node, fmt.Sprintf("the plan works on datacenter %s next, the cluster needs %s", orUnknown(want.Datacenter), orUnknown(got.Datacenter))
	case want.Node != got.Node:
		return node, fmt.Sprintf("the plan's next %s is on %s, the cluster needs it on %s", want.Kind, orNone(want.Node), orNone(got.Node))
	case want.Target != got.Target:
		return want.Target, fmt.Sprintf("the plan hands leadership to %s, the cluster needs %s", want.Target, got.Target)
	case !planner.SameVersion(want.To, got.To):
		return node, fmt.Sprintf("the plan goes to %s, the cluster needs %s", want.To, got.To)
	case want.From != "" && got.From != "" && !planner.SameVersion(want.From, got.From):
		return node, fmt.Sprintf("the plan starts from %s, the cluster runs %s", want.From, got.From)
	}
	if want.Kind == planner.StepSwapClients {
		pending := pendingClients(c, want)
		if !slices.Equal(pending, got.Nodes) {
			for k := 0; k < max(len(pending), len(got.Nodes)); k++ {
				if k >= len(pending) || k >= len(got.Nodes) || pending[k] != got.Nodes[k] {
					if k < len(got.Nodes) {
						node = got.Nodes[k]
					} else {
						node = pending[k]
					}
					break
				}
			}
			return node, fmt.Sprintf("the plan's wave still has %d client(s) to swap, the cluster's wave %d", len(pending), len(got.Nodes))
		}
	}
	return "", ""
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// sameDC compares datacenter names, "" being the default dc1.
func sameDC(a, b string) bool {
	if a == "" {
		a = "dc1"
	}
	if b == "" {
		b = "dc1"
	}
	return a == b
}

// atLeast reports whether version v is at least want (false when either
// does not parse).
func atLeast(v, want string) bool {
	a, err := planner.ParseVersion(v)
	if err != nil {
		return false
	}
	b, err := planner.ParseVersion(want)
	if err != nil {
		return false
	}
	return !a.Core().LessThan(b.Core())
}
