package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// MaxTermRise is how many elections (raft term increments) one server
// step may cause before its gate calls it an election storm
// (planner.GateRaftTerm): a step explains one (the leader stopped or
// transferred, or a restarted follower standing once before it hears from
// the leader), and nine more are tolerated: split votes, heartbeats late
// on a loaded host, and a server cut off during the step, which stands
// again each election timeout and, once back, makes the leader step down
// for its higher term (six, on a CI run, for a 25 s partition without pre-vote,
// which Consul's Raft lacks before 1.18). A storm keeps rising past that
// well before the gate's timeout. The elections a
// transfer's own asks start are not counted (the count starts from the
// new leader's term). Servers that keep
// standing and none winning for long is how a mixed-version cluster that
// cannot agree shows itself (a leaving server drives its term up and
// forces leader changes: hashicorp/consul PR 17758), and each election
// fails writes; going on with the next server only makes it worse.
const MaxTermRise = 10

// URLElectionStorm is the source of the raft-term gate condition.
const URLElectionStorm = "https://github.com/hashicorp/consul/pull/17758"

// ErrElectionStorm is the Err of the *GateError of a raft-term condition
// that failed: the raft term rose by more than MaxTermRise during the
// step. The gate stops at once (a term never comes down); the run halts,
// rolling back with Config.Rollback.
var ErrElectionStorm = errors.New("election storm: the raft term rose by more elections than the step explains")

// termRead is a raft term and the server that reported it.
type termRead struct {
	Node string `json:"node"`
	Term uint64 `json:"term"`
}

// serverGateSteps are the steps that raft-term is added to: those that stop,
// start, add, retire or move the leadership of a server.
var serverGateSteps = []planner.StepKind{planner.StepSwapServer, planner.StepTransferLeader, planner.StepAddServer, planner.StepRetireServer}

// withTermCheck is step with raft-term at the end of its gate, for a server
// step whose gate does not list it yet.
func withTermCheck(step planner.Step) planner.Step {
	if !slices.Contains(serverGateSteps, step.Kind) || len(step.Gate) == 0 || slices.Contains(step.Gate, planner.GateRaftTerm) {
		return step
	}
	step.Gate = append(slices.Clone(step.Gate), planner.GateRaftTerm)
	return step
}

// term reads the raft term: the leader's own (its /v1/agent/self, 0.7 and
// later) through the ServerAPI, read once with the other conditions' raft
// stats; without a ServerAPI, the agent asked's when it is a server. Else
// it is uncheckable.
func (g *gatherer) term() {
	if g.in.Term == nil {
		g.in.Term = g.readTerm()
	}
}

func (g *gatherer) readTerm() *answer[termRead] {
	if g.self == nil && g.serverAPI == nil {
		v, err := g.c.AgentSelf(g.ctx)
		g.self = &answer[map[string]map[string]any]{Value: v, Err: classify(g.ctx, err)}
	}
	if g.serverAPI == nil {
		self, rerr := g.self.get("/v1/agent/self")
		if rerr != nil {
			return &answer[termRead]{Err: rerr}
		}
		rs, err := parseRaftStats(self)
		switch {
		case err != nil:
			return &answer[termRead]{Err: uncheckable(fmt.Errorf("no server's raft term is in reach: the agent asked (%s) reports no raft stats (a client, or a server before 0.7) and Config.ServerAPI is not set", orUnknown(selfString(self, "NodeName"))))}
		case rs.Term == 0:
			return &answer[termRead]{Err: uncheckable(fmt.Errorf("the raft stats of %s carry no term", orUnknown(rs.Node)))}
		}
		return &answer[termRead]{Value: termRead{Node: rs.Node, Term: rs.Term}}
	}
	lead := g.leaderNode()
	if lead == "" {
		return &answer[termRead]{Err: &readError{Kind: readFailed, Message: "no leader is known to read the raft term from"}}
	}
	g.stats(lead, fmt.Sprintf("%s (the leader's term)", planner.GateRaftTerm))
	a := g.in.Servers[lead]
	switch {
	case a.Err != nil:
		return &answer[termRead]{Err: a.Err}
	case a.Raft == nil || a.Raft.Term == 0:
		return &answer[termRead]{Err: uncheckable(fmt.Errorf("the leader %s reports no raft term over HTTP (before 0.7 /v1/agent/self has no raft stats)", lead))}
	}
	return &answer[termRead]{Value: termRead{Node: lead, Term: a.Raft.Term}}
}

// judgeRaftTerm: the raft term rose since the step began by at most
// MaxTermRise elections. A term that cannot be read where it never can be
// (before 0.7, nothing in reach) holds, saying it was not checked.
func judgeRaftTerm(j judging) verdict {
	t, err := j.in.Term.get("the raft term")
	switch {
	case err != nil && !err.retried():
		return verdict{OK: true, Detail: "not checked: " + err.Message}
	case err != nil:
		return unread("", err)
	case j.carry.TermBefore == 0:
		return verdict{OK: true, Detail: "not checked: the raft term before the step was not read"}
	case t.Term <= j.carry.TermBefore+MaxTermRise:
		return pass()
	}
	rise := t.Term - j.carry.TermBefore
	v := fail("", fmt.Sprintf("the raft term rose from %d (%s, before the step) to %d (%s): %d elections during the step, more than the %d one server step explains (MaxTermRise): an election storm; the servers cannot settle on a leader, and each election fails writes: look at the servers' logs (consul monitor) before anything else is restarted (%s)",
		j.carry.TermBefore, orUnknown(j.carry.TermFrom), t.Term, orUnknown(t.Node), rise, MaxTermRise, URLElectionStorm))
	v.Halt = true
	return v
}

// termBefore reads the raft term before step acts, for its gate's
// raft-term; the zero termRead when it cannot be read (the condition then
// says it was not checked).
func (r *runner) termBefore(ctx context.Context, step planner.Step) termRead {
	if !slices.Contains(serverGateSteps, step.Kind) {
		return termRead{}
	}
	g := newGatherer(ctx, r.consul(step.Datacenter), r.cfg.ServerAPI)
	g.term()
	t, err := g.in.Term.get("")
	if err != nil {
		return termRead{}
	}
	return t
}
