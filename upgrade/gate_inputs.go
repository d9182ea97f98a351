package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// gateInputs is what one attempt of a gate read of the cluster: every answer
// the step's conditions need, or the error its read gave, the alive watch's
// last outage and the time. Gathering it (gather) is the attempt's only IO;
// judging it (judgeAttempt) is a pure function of it. A nil answer was not
// read.
type gateInputs struct {
	// Now is when the attempt's reads ended, on this host's clock.
	Now time.Time `json:"now"`
	// Members is /v1/agent/members: serf's view, the servers' tags (the
	// era).
	Members *answer[[]*api.AgentMember] `json:"members,omitempty"`
	// Leader is /v1/status/leader: the leader's raft address, "" in an
	// election.
	Leader *answer[string] `json:"leader,omitempty"`
	// Raft is /v1/operator/raft/configuration (0.7 and later).
	Raft *answer[*api.RaftConfiguration] `json:"raft,omitempty"`
	// Health is /v1/operator/autopilot/health (autopilot era).
	Health *answer[*api.OperatorHealthReply] `json:"health,omitempty"`
	// Peers is /v1/status/peers, the peer set before 0.7.
	Peers *answer[[]string] `json:"peers,omitempty"`
	// Servers is each server's own raft state, by node name, as its own
	// /v1/agent/self (or stale read) answered it.
	Servers map[string]serverAnswer `json:"servers,omitempty"`
	// Outage is the last time the swapped server's own HTTP API did not
	// answer the alive watch (nil: never, or no watch).
	Outage *outage `json:"outage,omitempty"`
	// Term is the raft term a server reports (gate_term.go).
	Term *answer[termRead] `json:"term,omitempty"`
}

// answer is one read: its value, or why there is none.
type answer[T any] struct {
	Value T          `json:"value,omitempty"`
	Err   *readError `json:"error,omitempty"`
}

// get returns the answer's value or its error; an answer never read is an
// error too (the inputs lack what a condition needs).
func (a *answer[T]) get(what string) (T, *readError) {
	var zero T
	switch {
	case a == nil:
		return zero, &readError{Kind: readNotRead, Message: what + " was not read"}
	case a.Err != nil:
		return zero, a.Err
	}
	return a.Value, nil
}

// missing reports whether the read answered 404: the agent's version does
// not have the endpoint.
func (a *answer[T]) missing() bool { return a != nil && a.Err != nil && a.Err.Kind == readMissing }

// serverAnswer is a server's raft state as it answered itself: the raft
// stats of its /v1/agent/self (0.7 and later), or, before 0.7, what a stale
// read it answered says (see StaleState).
type serverAnswer struct {
	Raft  *raftStats  `json:"raft,omitempty"`
	Stale *StaleState `json:"stale,omitempty"`
	Err   *readError  `json:"error,omitempty"`
}

// outage is a moment the swapped server's own API did not answer.
type outage struct {
	At  time.Time `json:"at"`
	Why string    `json:"why"`
}

// readErrorKind says what a failed read means to a gate.
type readErrorKind string

const (
	// readMissing: the agent answered 404, it has no such endpoint (a
	// *MissingEndpointError): the era is lowered, never an outage.
	readMissing readErrorKind = "missing"
	// readUnreachable: no connection to the agent (refused, reset, no
	// route): retried.
	readUnreachable readErrorKind = "unreachable"
	// readCut: the gate's context ended during the read: it says nothing
	// of the cluster.
	readCut readErrorKind = "cut"
	// readFailed: any other failure (a 500, an answer that is not
	// JSON): retried.
	readFailed readErrorKind = "failed"
	// readUncheckable: the condition can never be checked as the gate is
	// set up (no ServerAPI, another agent answering, a step naming no
	// node): not retried.
	readUncheckable readErrorKind = "uncheckable"
	// readNotRead: the inputs lack an answer the condition needs.
	readNotRead readErrorKind = "not-read"
)

// readError is why a condition could not be judged, kept as data: its kind
// and message, and at run time the error itself, which a *GateError wraps.
type readError struct {
	Kind     readErrorKind `json:"kind"`
	Message  string        `json:"message"`
	Path     string        `json:"path,omitempty"`     // readMissing: the endpoint
	Versions string        `json:"versions,omitempty"` // readMissing: the versions that have it
	err      error
}

func (e *readError) Error() string { return e.Message }

// Unwrap returns the error the read gave (nil in inputs read from JSON,
// but for a missing endpoint, which is rebuilt).
func (e *readError) Unwrap() error {
	if e.err == nil && e.Kind == readMissing {
		return &MissingEndpointError{Path: e.Path, Versions: e.Versions}
	}
	return e.err
}

// retried reports whether a condition that could not be read is tried again
// in the next attempt (every kind but readUncheckable).
func (e *readError) retried() bool { return e.Kind != readUncheckable }

// classify keeps err, which a read under ctx gave, as a *readError of the
// kind it is (nil for nil).
func classify(ctx context.Context, err error) *readError {
	if err == nil {
		return nil
	}
	re := &readError{Kind: readFailed, Message: err.Error(), err: err}
	var me *MissingEndpointError
	var oe *net.OpError
	switch {
	case errors.As(err, &me):
		re.Kind, re.Path, re.Versions = readMissing, me.Path, me.Versions
	case ctx.Err() != nil:
		re.Kind = readCut
	case errors.As(err, &oe) && oe.Op == "dial", errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		re.Kind = readUnreachable
	}
	return re
}

// uncheckable is the error of a condition that can never be checked.
func uncheckable(err error) *readError {
	return &readError{Kind: readUncheckable, Message: err.Error(), err: err}
}

// era is the attempt's API era: that of the members' tags, lowered when the
// era's endpoints answered 404 (see Era).
func (in *gateInputs) era() (Era, *readError) {
	members, err := in.Members.get("/v1/agent/members")
	if err != nil {
		return "", err
	}
	e := eraOfMembers(members)
	if e.RaftConfig() && in.Raft.missing() {
		e = EraPeers
	}
	if e.Autopilot() && in.Health.missing() {
		e = EraRaftConfig
	}
	return e, nil
}

// peerSet is the era's view of the Raft peer set: the Raft configuration
// from 0.7, /v1/status/peers before.
func (in *gateInputs) peerSet() (*api.RaftConfiguration, *readError) {
	era, err := in.era()
	if err != nil {
		return nil, err
	}
	if era.RaftConfig() {
		return in.Raft.get("/v1/operator/raft/configuration")
	}
	peers, err := in.Peers.get("/v1/status/peers")
	if err != nil {
		return nil, err
	}
	members, _ := in.Members.get("")
	return raftFromPeers(members, peers), nil
}

// leaderNode names the current leader ("" during an election).
func (in *gateInputs) leaderNode() (string, *readError) {
	leader, err := in.Leader.get("/v1/status/leader")
	if err != nil || leader == "" {
		return "", err
	}
	members, err := in.Members.get("/v1/agent/members")
	if err != nil {
		return "", err
	}
	raft, _ := in.peerSet() // optional: only a fallback for the name
	return leaderName(members, raft, leader), nil
}

// stats is server node's raft state from its own answer; before 0.7 from
// its stale read, the leader being the one /v1/status/leader names.
func (in *gateInputs) stats(node string) (raftStats, *readError) {
	a, ok := in.Servers[node]
	switch {
	case !ok:
		return raftStats{}, &readError{Kind: readNotRead, Message: node + "'s /v1/agent/self was not read"}
	case a.Err != nil:
		return raftStats{}, a.Err
	case a.Raft != nil:
		return *a.Raft, nil
	case a.Stale != nil:
		lead, err := in.leaderNode()
		if err != nil {
			return raftStats{}, err
		}
		return statsFromStale(node, *a.Stale, lead == node), nil
	}
	return raftStats{}, &readError{Kind: readNotRead, Message: node + "'s answer holds neither raft stats nor a stale read"}
}

// gatherer fills one attempt's inputs, reading each endpoint at most once.
type gatherer struct {
	ctx       context.Context
	c         Consul
	serverAPI ServerAPIFunc
	in        *gateInputs
	self      *answer[map[string]map[string]any] // the agent asked: who it is
	eraRead   bool                               // a condition needed the era, and it was read
}

func newGatherer(ctx context.Context, c Consul, serverAPI ServerAPIFunc) *gatherer {
	return &gatherer{ctx: ctx, c: c, serverAPI: serverAPI, in: &gateInputs{Servers: map[string]serverAnswer{}}}
}

// gather reads what step's conditions need, in the cluster's API era,
// and the alive watch's last outage.
func (g *gatherer) gather(step planner.Step, alive *aliveWatch) *gateInputs {
	if at, why := alive.last(); !at.IsZero() {
		g.in.Outage = &outage{At: at, Why: fmt.Sprint(why)}
	}
	for _, cond := range step.Gate {
		g.need(step, cond)
	}
	g.in.Now = time.Now()
	return g.in
}

// need reads what condition cond of step needs, as far as the era has it.
func (g *gatherer) need(step planner.Step, cond planner.GateCheck) {
	n := gateSubject(step)
	switch cond {
	case planner.GateLeaderKnown:
		g.leader()
		if step.Kind == planner.StepTransferLeader && step.Target != "" {
			g.leaderNode()
		}
	case planner.GateVersion, planner.GateSerfAlive:
		g.members()
	case planner.GateVoter, planner.GateRemoved:
		g.peerSet()
	case planner.GateAutopilotHealthy, planner.GateStable, planner.GateLastContact:
		if g.era().Autopilot() {
			g.health()
		} else if cond == planner.GateLastContact {
			g.stats(n, fmt.Sprintf("%s of %s", cond, n))
		} else {
			g.peerSet()
			g.stats(n, fmt.Sprintf("%s of %s", cond, n))
		}
	case planner.GateTrailingLogs:
		if g.era().Autopilot() {
			g.health()
		} else {
			g.indexes(n, cond, "last_log_index")
		}
	case planner.GateCommitIndex:
		g.era()
		g.indexes(n, cond, "commit_index")
	case planner.GateFailureTolerance:
		if g.era().Autopilot() {
			g.health()
		} else {
			g.peerSet()
		}
	case planner.GateRaftTerm:
		g.term() // gate_term.go
	}
}

// indexes reads the raft stats of server n and of the leader, to compare
// an index of theirs.
func (g *gatherer) indexes(n string, cond planner.GateCheck, stat string) {
	lead := g.leaderNode()
	if lead == "" || n == "" {
		return
	}
	g.stats(n, fmt.Sprintf("%s of %s", cond, n))
	if lead != n {
		g.stats(lead, fmt.Sprintf("%s of %s (the leader's %s to compare with)", cond, n, stat))
	}
}

func (g *gatherer) members() ([]*api.AgentMember, *readError) {
	if g.in.Members == nil {
		v, err := g.c.Members(g.ctx)
		g.in.Members = &answer[[]*api.AgentMember]{Value: v, Err: classify(g.ctx, err)}
	}
	return g.in.Members.get("")
}

func (g *gatherer) leader() (string, *readError) {
	if g.in.Leader == nil {
		v, err := g.c.Leader(g.ctx)
		g.in.Leader = &answer[string]{Value: v, Err: classify(g.ctx, err)}
	}
	return g.in.Leader.get("")
}

func (g *gatherer) raft() {
	if g.in.Raft == nil {
		v, err := g.c.RaftConfiguration(g.ctx)
		g.in.Raft = &answer[*api.RaftConfiguration]{Value: v, Err: classify(g.ctx, err)}
	}
}

func (g *gatherer) health() {
	if g.in.Health == nil {
		v, err := g.c.AutopilotHealth(g.ctx)
		g.in.Health = &answer[*api.OperatorHealthReply]{Value: v, Err: classify(g.ctx, err)}
	}
}

// era reads what the era is decided on: the members, and the era's
// endpoints, which lower it when they answer 404 ("" when the members
// could not be read).
func (g *gatherer) era() Era {
	members, err := g.members()
	if err != nil {
		return ""
	}
	g.eraRead = true
	if eraOfMembers(members).RaftConfig() {
		g.raft()
	}
	if e, _ := g.in.era(); e.Autopilot() {
		g.health()
	}
	e, _ := g.in.era()
	return e
}

// peerSet reads the era's peer set (and the members it is matched with).
func (g *gatherer) peerSet() {
	era := g.era()
	switch {
	case era == "" || era.RaftConfig():
	case g.in.Peers == nil:
		er, err := eraReader(g.c, "read the peer set (before 0.7)")
		var peers []string
		if err == nil {
			peers, err = er.Peers(g.ctx)
		}
		g.in.Peers = &answer[[]string]{Value: peers, Err: classify(g.ctx, err)}
	}
}

// leaderNode reads what naming the leader takes and names it.
func (g *gatherer) leaderNode() string {
	if l, err := g.leader(); err != nil || l == "" {
		return ""
	}
	g.peerSet()
	name, _ := g.in.leaderNode()
	return name
}

// stats reads server node's own /v1/agent/self (why: the condition that
// needs it, for the error when it cannot be reached).
func (g *gatherer) stats(node, why string) {
	if _, ok := g.in.Servers[node]; ok || node == "" {
		return
	}
	g.in.Servers[node] = g.readServer(node, why)
}

func (g *gatherer) readServer(node, why string) serverAnswer {
	c, self, rerr := g.serverSelf(node, why)
	if rerr != nil {
		return serverAnswer{Err: rerr}
	}
	if got := selfString(self, "NodeName"); got != "" && got != node {
		return serverAnswer{Err: uncheckable(fmt.Errorf("the HTTP API reached for %s answers as %s; check Config.ServerAPI's address and port", node, got))}
	}
	rs, err := parseRaftStats(self)
	switch {
	case err == nil:
		return serverAnswer{Raft: &rs}
	case errors.Is(err, ErrNoRaftStats) && selfBool(self, "Server"):
		// Before 0.7 a server's /v1/agent/self has no stats: a stale read
		// it answers itself tells its catalog index and last contact.
		er, serr := eraReader(c, "read a pre-0.7 server's state")
		var ss StaleState
		if serr == nil {
			ss, serr = er.StaleState(g.ctx)
		}
		if serr != nil {
			return serverAnswer{Err: classify(g.ctx, fmt.Errorf("%s's stale read: %w", node, serr))}
		}
		g.leaderNode() // which one leads, to judge its stale read by
		return serverAnswer{Stale: &ss}
	}
	return serverAnswer{Err: uncheckable(fmt.Errorf("%s: %w", node, err))}
}

// serverSelf reads node's own /v1/agent/self: through the ServerAPI, or
// from the agent asked when it is that server. Without a way to reach it,
// the condition is uncheckable.
func (g *gatherer) serverSelf(node, why string) (Consul, map[string]map[string]any, *readError) {
	if g.serverAPI == nil {
		if g.self == nil {
			v, err := g.c.AgentSelf(g.ctx)
			g.self = &answer[map[string]map[string]any]{Value: v, Err: classify(g.ctx, err)}
		}
		self, err := g.self.get("")
		if err != nil {
			return nil, nil, err
		}
		if asked := selfString(self, "NodeName"); asked != node {
			return nil, nil, uncheckable(fmt.Errorf("%s needs %s's own /v1/agent/self, and the agent asked is %s: %w; set Config.ServerAPI, e.g. upgrade.ServerHTTP(8500)", why, node, orUnknown(asked), ErrNoServerAPI))
		}
		return g.c, self, nil
	}
	members, rerr := g.members()
	if rerr != nil {
		return nil, nil, rerr
	}
	addr := ""
	if m := findMember(members, node); m != nil {
		addr = m.Addr
	}
	c, err := g.serverAPI(node, addr)
	if err != nil {
		return nil, nil, classify(g.ctx, fmt.Errorf("reach %s's HTTP API: %w", node, err))
	}
	self, err := c.AgentSelf(g.ctx)
	if err != nil {
		return nil, nil, classify(g.ctx, fmt.Errorf("%s's /v1/agent/self: %w", node, err))
	}
	return c, self, nil
}

func selfBool(self map[string]map[string]any, key string) bool {
	b, _ := self["Config"][key].(bool)
	return b
}
