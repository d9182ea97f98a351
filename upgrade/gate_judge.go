package upgrade

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// Judging is pure: each condition is a function of the step, the baseline,
// one attempt's inputs (the time among them) and the stability count carried
// from earlier attempts. No IO, no clock.

// verdict is the judgement of one condition in one attempt.
type verdict struct {
	Cond planner.GateCheck `json:"condition"`
	OK   bool              `json:"ok"`
	// Node is the node the condition is about ("" for a cluster-wide one).
	Node string `json:"node,omitempty"`
	// Detail is what was observed against what is wanted.
	Detail string `json:"detail,omitempty"`
	// Err is why the condition could not be judged: a read that failed
	// (tried again in the next attempt) or, of kind readUncheckable, a
	// condition that can never be checked (the gate stops).
	Err *readError `json:"error,omitempty"`
	// Unhealthy: the stable condition failed because the server is not
	// seen healthy, not merely healthy for too short a time.
	Unhealthy bool `json:"unhealthy,omitempty"`
	// Stable is the stability count as the stable condition carries it
	// on to the next attempt.
	Stable *stability `json:"stable_count,omitempty"`
	// Halt: the condition failed for good (an election storm: a term
	// never comes down again), and the gate stops at once.
	Halt bool `json:"halt,omitempty"`
}

// fatal reports whether the condition can never be checked.
func (v verdict) fatal() bool { return v.Err != nil && !v.Err.retried() }

// young reports whether the stable condition failed only for want of time:
// the server is seen healthy, not yet for long enough.
func (v verdict) young() bool {
	return v.Cond == planner.GateStable && !v.OK && !v.Unhealthy
}

func pass() verdict { return verdict{OK: true} }

func fail(node, detail string) verdict { return verdict{Node: node, Detail: detail} }

// unread is the verdict of a condition whose inputs could not be read.
func unread(node string, err *readError) verdict {
	v := verdict{Node: node, Err: err}
	if err.retried() {
		v.Detail = err.Error()
	}
	return v
}

// attemptOutcome is how an attempt ends.
type attemptOutcome string

const (
	attemptPassed  attemptOutcome = "passed"  // every condition holds
	attemptWaiting attemptOutcome = "waiting" // a condition does not hold yet: try again
	attemptStopped attemptOutcome = "stopped" // a condition can never be checked
	// attemptCut: a read the condition needed was cut by the gate's
	// context: the attempt says nothing, and the last finished attempt's
	// verdict stands.
	attemptCut attemptOutcome = "cut"
)

// attempt is the judgement of one attempt.
type attempt struct {
	outcome attemptOutcome
	v       verdict   // the verdict it ended on (none when it passed)
	carry   gateCarry // what the next attempt starts from
}

// judgeAttempt judges step's conditions in order on one attempt's inputs:
// the first that fails ends the attempt, except stable failing only for
// want of time, after which the others are judged (a later failing
// condition is the real cause). Any failure but that one starts the
// stability count again.
func judgeAttempt(step planner.Step, base Baseline, in *gateInputs, c gateCarry) attempt {
	c = c.after(in.Outage)
	var young *verdict
	for _, cond := range step.Gate {
		v := judge(cond, judging{step: step, base: base, in: in, carry: c})
		if v.Stable != nil {
			c.Stable = *v.Stable
		}
		switch {
		case v.Err != nil && v.Err.Kind == readCut && c.Last != nil:
			return attempt{outcome: attemptCut, v: v, carry: c}
		case v.fatal() || v.Halt:
			c.Last = &v
			return attempt{outcome: attemptStopped, v: v, carry: c}
		case v.OK:
		case v.young():
			young = &v
		default:
			c.Floor, c.Stable, c.Last = in.Now, stability{}, &v
			return attempt{outcome: attemptWaiting, v: v, carry: c}
		}
	}
	if young == nil {
		return attempt{outcome: attemptPassed, carry: c}
	}
	if in.Outage != nil {
		young.Detail += outageDetail(step.Node, in.Now, *in.Outage)
	}
	c.Last = young
	return attempt{outcome: attemptWaiting, v: *young, carry: c}
}

// judging is what a condition is judged on.
type judging struct {
	step  planner.Step
	base  Baseline // with defaults (Baseline.withDefaults)
	in    *gateInputs
	carry gateCarry // the stability count so far
}

// judges holds one pure judge per gate condition.
var judges = map[planner.GateCheck]func(j judging) verdict{
	planner.GateLeaderKnown: judgeLeaderKnown,
	planner.GateVersion:     func(j judging) verdict { return judgeMembers(j, false) },
	planner.GateSerfAlive:   func(j judging) verdict { return judgeMembers(j, true) },
	planner.GateVoter:       judgeVoter,
	planner.GateRemoved:     judgeRemoved,

	planner.GateAutopilotHealthy: judgeAutopilotHealthy,
	planner.GateStable:           judgeStable,
	planner.GateTrailingLogs:     judgeTrailingLogs,
	planner.GateCommitIndex:      judgeCommitIndex,
	planner.GateLastContact:      judgeLastContact,
	planner.GateFailureTolerance: judgeFailureTolerance,
	planner.GateRaftTerm:         judgeRaftTerm, // gate_term.go
}

// judge judges condition cond.
func judge(cond planner.GateCheck, j judging) verdict {
	f, ok := judges[cond]
	if !ok {
		v := unread("", uncheckable(fmt.Errorf("unknown gate condition %q (known: leader-known, version, voter, autopilot-healthy, stable, trailing-logs, commit-index, last-contact, failure-tolerance, serf-alive, removed, raft-term)", cond)))
		v.Cond = cond
		return v
	}
	v := f(j)
	v.Cond = cond
	return v
}

// server is the server a per-server condition is about, and the era
// (ok false: v says why the condition cannot be judged).
func (j judging) server() (n string, era Era, v verdict, ok bool) {
	if n = gateSubject(j.step); n == "" {
		return "", "", unread("", uncheckable(fmt.Errorf("step names no server to check"))), false
	}
	era, err := j.in.era()
	if err != nil {
		return n, "", unread(n, err), false
	}
	return n, era, verdict{}, true
}

// judgeLeaderKnown: /v1/status/leader names a leader; for a transfer, the
// step's Target (or another server already on the new version).
func judgeLeaderKnown(j judging) verdict {
	leader, err := j.in.Leader.get("/v1/status/leader")
	if err != nil {
		return unread("", err)
	}
	if leader == "" {
		return fail("", "no raft leader is known")
	}
	s := j.step
	if s.Kind != planner.StepTransferLeader || s.Target == "" {
		return pass()
	}
	name, err := j.in.leaderNode()
	if err != nil {
		return unread("", err)
	}
	if name == s.Target {
		return pass()
	}
	members, err := j.in.Members.get("/v1/agent/members")
	if err != nil {
		return unread("", err)
	}
	// Another voter already on the new version leading serves the
	// transfer as well (see the runner's transferLeader).
	if upgradedLeader(members, s, name) {
		return pass()
	}
	return fail(s.Target, fmt.Sprintf("the leader is %s (%s), want %s or another server on %s", orUnknown(name), leader, s.Target, s.To))
}

// judgeMembers judges version (alive false) and serf-alive (alive true):
// every node of the step is a serf member (alive, for serf-alive) whose
// build tag is the step's To, build metadata ignored.
func judgeMembers(j judging, alive bool) verdict {
	nodes := gateNodes(j.step)
	if len(nodes) == 0 {
		return unread("", uncheckable(fmt.Errorf("step names no node to check")))
	}
	if !alive && j.step.To == "" {
		return unread("", uncheckable(fmt.Errorf("step names no target version to check")))
	}
	members, err := j.in.Members.get("/v1/agent/members")
	if err != nil {
		return unread(nodes[0], err)
	}
	// A client wave names thousands of nodes: index the members once
	// (the first of a name, as findMember) instead of a scan per node.
	byName := make(map[string]*api.AgentMember, len(members))
	for _, m := range members {
		if m == nil {
			continue
		}
		if _, seen := byName[m.Name]; !seen {
			byName[m.Name] = m
		}
	}
	for _, n := range nodes {
		m := byName[n]
		switch {
		case m == nil:
			return fail(n, fmt.Sprintf("%s is not a serf member", n))
		case alive && m.Status != serfAlive:
			return fail(n, fmt.Sprintf("%s is %s in serf, want alive", n, serfStatus(m.Status)))
		case j.step.To != "" && !planner.SameVersion(buildVersion(m.Tags["build"]), j.step.To):
			// Build metadata is ignored: 1.10.12+ent is on a 1.10.12 step.
			who := n
			if m.Status != serfAlive {
				// Its tags are what serf last heard: say that it is not up.
				who = fmt.Sprintf("%s (%s in serf)", n, serfStatus(m.Status))
			}
			return fail(n, fmt.Sprintf("%s reports %s in its serf build tag, want %s", who, orUnknown(buildVersion(m.Tags["build"])), j.step.To))
		}
	}
	return pass()
}

// judgeVoter: the server is a voter in the Raft configuration (before 0.7:
// in /v1/status/peers).
func judgeVoter(j judging) verdict {
	n, era, v, ok := j.server()
	if !ok {
		return v
	}
	raft, err := j.in.peerSet()
	if err != nil {
		return unread(n, err)
	}
	members, _ := j.in.Members.get("") // optional: matches by raft ID or address too
	rs := raftServerByName(raft, members, n)
	switch {
	case rs == nil && !era.RaftConfig():
		return fail(n, fmt.Sprintf("%s (%s) is not in /v1/status/peers", n, memberRaftAddr(members, n)))
	case rs == nil:
		return fail(n, fmt.Sprintf("%s is not in the raft configuration", n))
	case !rs.Voter:
		return fail(n, fmt.Sprintf("%s is a non-voter in the raft configuration", n))
	}
	return pass()
}

// judgeRemoved: the server is not in the Raft configuration (peer set) and
// not alive or leaving in serf.
func judgeRemoved(j judging) verdict {
	n, _, v, ok := j.server()
	if !ok {
		return v
	}
	raft, err := j.in.peerSet()
	if err != nil {
		return unread(n, err)
	}
	members, err := j.in.Members.get("/v1/agent/members")
	if err != nil {
		return unread(n, err)
	}
	m := findMember(members, n)
	if m != nil && (m.Status == serfAlive || m.Status == serfLeaving) {
		return fail(n, fmt.Sprintf("%s is still %s in serf, want left or gone", n, serfStatus(m.Status)))
	}
	if raft != nil {
		for _, rs := range raft.Servers {
			if rs != nil && (rs.Node == n || (m != nil && raftServer(raft, m) == rs)) {
				return fail(n, fmt.Sprintf("%s is still in the raft configuration (voter %t)", n, rs.Voter))
			}
		}
	}
	return pass()
}

// autopilotServer is server n's entry in autopilot's health (ok false: v
// says why there is none).
func (j judging) autopilotServer(n string) (h *api.OperatorHealthReply, s *api.ServerHealth, v verdict, ok bool) {
	h, err := j.in.Health.get("/v1/operator/autopilot/health")
	if err != nil {
		return nil, nil, unread(n, err), false
	}
	if s = healthByName(h, n); s == nil {
		return h, nil, fail(n, fmt.Sprintf("%s is missing from autopilot health", n)), false
	}
	return h, s, verdict{}, true
}

// judgeAutopilotHealthy: autopilot says the server is healthy; without
// autopilot health, legacyHealth does.
func judgeAutopilotHealthy(j judging) verdict {
	n, era, v, ok := j.server()
	if !ok {
		return v
	}
	if !era.Autopilot() {
		detail, err := legacyHealth(j.in, n, j.base.LastContactThreshold)
		switch {
		case err != nil:
			return unread(n, err)
		case detail != "":
			return fail(n, detail)
		}
		return pass()
	}
	_, s, v, ok := j.autopilotServer(n)
	switch {
	case !ok:
		return v
	case !s.Healthy:
		return fail(n, fmt.Sprintf("autopilot reports %s unhealthy (serf %s, last contact %s, last index %d)", n, orUnknown(s.SerfStatus), lastContact(s), s.LastIndex))
	}
	return pass()
}

// judgeTrailingLogs: the server trails the current leader by at most
// MaxTrailingLogs entries (autopilot's LastIndex, else last_log_index in
// the raft stats of both).
func judgeTrailingLogs(j judging) verdict {
	n, era, v, ok := j.server()
	if !ok {
		return v
	}
	if !era.Autopilot() {
		return j.index(n, "last_log_index", func(s raftStats) uint64 { return s.LastLogIndex })
	}
	h, s, v, ok := j.autopilotServer(n)
	if !ok {
		return v
	}
	var lead *api.ServerHealth
	for i := range h.Servers {
		if h.Servers[i].Leader {
			lead = &h.Servers[i]
		}
	}
	switch {
	case lead == nil:
		return fail(n, "autopilot health names no leader to compare log indexes with")
	case lead.LastIndex > s.LastIndex && lead.LastIndex-s.LastIndex > j.base.MaxTrailingLogs:
		return fail(n, fmt.Sprintf("%s trails the leader %s by %d log entries (MaxTrailingLogs: at most %d)", n, lead.Name, lead.LastIndex-s.LastIndex, j.base.MaxTrailingLogs))
	}
	return pass()
}

// judgeCommitIndex: the server's commit_index is within MaxTrailingLogs of
// the leader's (before 0.7, the catalog index of a stale read each answers).
func judgeCommitIndex(j judging) verdict {
	n, _, v, ok := j.server()
	if !ok {
		return v
	}
	return j.index(n, "commit_index", func(s raftStats) uint64 { return s.CommitIndex })
}

// index compares a raft stats index of server n with the leader's: n may
// trail by at most MaxTrailingLogs.
func (j judging) index(n, stat string, index func(raftStats) uint64) verdict {
	lead, err := j.in.leaderNode()
	if err != nil {
		return unread(n, err)
	}
	if lead == "" {
		return fail(n, fmt.Sprintf("no leader is known to compare %s's %s with", n, stat))
	}
	a, err := j.in.stats(n)
	if err != nil {
		return unread(n, err)
	}
	if lead == n {
		return pass() // the leader is its own reference
	}
	l, err := j.in.stats(lead)
	if err != nil {
		return unread(n, err)
	}
	li, si := index(l), index(a)
	if a.Stale || l.Stale {
		stat = "catalog index (X-Consul-Index of a stale read: no raft stats over HTTP before 0.7)"
	}
	if li > si && li-si > j.base.MaxTrailingLogs {
		return fail(n, fmt.Sprintf("%s's %s is %d, the leader %s's %d: %d behind (at most %d, MaxTrailingLogs)", n, stat, si, lead, li, li-si, j.base.MaxTrailingLogs))
	}
	return pass()
}

// judgeLastContact: the server heard from the leader within
// LastContactThreshold (autopilot's LastContact, else its raft stats); the
// leader passes.
func judgeLastContact(j judging) verdict {
	n, era, v, ok := j.server()
	if !ok {
		return v
	}
	if !era.Autopilot() {
		s, err := j.in.stats(n)
		if err != nil {
			return unread(n, err)
		}
		if d := contactProblem(s, j.base.LastContactThreshold); d != "" {
			return fail(n, n+" "+d)
		}
		return pass()
	}
	_, s, v, ok := j.autopilotServer(n)
	switch {
	case !ok:
		return v
	case !s.Leader && (s.LastContact == nil || s.LastContact.Duration() > j.base.LastContactThreshold):
		return fail(n, fmt.Sprintf("%s last heard from the leader %s ago (LastContactThreshold: at most %s)", n, lastContact(s), j.base.LastContactThreshold))
	}
	return pass()
}

// judgeFailureTolerance: autopilot's FailureTolerance is back to the
// baseline's (without autopilot: the voters alive in serf less a quorum).
func judgeFailureTolerance(j judging) verdict {
	era, err := j.in.era()
	if err != nil {
		return unread("", err)
	}
	if era.Autopilot() {
		h, err := j.in.Health.get("/v1/operator/autopilot/health")
		if err != nil {
			return unread("", err)
		}
		if h.FailureTolerance < j.base.FailureTolerance {
			return fail("", fmt.Sprintf("failure tolerance is %d, was %d before the upgrade", h.FailureTolerance, j.base.FailureTolerance))
		}
		return pass()
	}
	raft, err := j.in.peerSet()
	if err != nil {
		return unread("", err)
	}
	members, err := j.in.Members.get("/v1/agent/members")
	if err != nil {
		return unread("", err)
	}
	voters, alive := peerTolerance(raft, members)
	if ft := max(0, alive-(voters/2+1)); ft < j.base.FailureTolerance {
		return fail("", fmt.Sprintf("failure tolerance is %d (%d of %d voters alive in serf), was %d before the upgrade", ft, alive, voters, j.base.FailureTolerance))
	}
	return pass()
}

// legacyHealth is a server's health without autopilot: alive in serf, in
// the peer set, leader or follower in its raft stats and in recent contact
// with the leader. It returns what is wrong ("" when healthy).
func legacyHealth(in *gateInputs, n string, threshold time.Duration) (string, *readError) {
	members, err := in.Members.get("/v1/agent/members")
	if err != nil {
		return "", err
	}
	m := findMember(members, n)
	switch {
	case m == nil:
		return fmt.Sprintf("%s is not a serf member", n), nil
	case m.Status != serfAlive:
		return fmt.Sprintf("%s is %s in serf", n, serfStatus(m.Status)), nil
	}
	raft, err := in.peerSet()
	if err != nil {
		return "", err
	}
	if raftServerByName(raft, members, n) == nil {
		return fmt.Sprintf("%s (%s) is not in the raft peer set", n, raftAddr(m)), nil
	}
	s, err := in.stats(n)
	if err != nil {
		return "", err
	}
	if st := s.State; !strings.EqualFold(st, "leader") && !strings.EqualFold(st, "follower") {
		return fmt.Sprintf("%s is in raft state %s, want Leader or Follower", n, orUnknown(st)), nil
	}
	if d := contactProblem(s, threshold); d != "" {
		return n + " " + d, nil
	}
	return "", nil
}

// judgeStable: the server has been seen healthy for ServerStabilizationTime,
// counted from the gate's own observations (see gateOptions.Since); any
// attempt that does not see it healthy counts as not healthy.
func judgeStable(j judging) verdict {
	n, era, v, ok := j.server()
	if !ok {
		v.Unhealthy = true
		return v
	}
	var autopilotSince time.Time
	if era.Autopilot() {
		_, s, v, ok := j.autopilotServer(n)
		switch {
		case !ok:
			v.Unhealthy = true
			return v
		case !s.Healthy || s.StableSince.IsZero():
			v = fail(n, fmt.Sprintf("%s is not healthy yet, so not stable (needs %s healthy, ServerStabilizationTime)", n, j.base.ServerStabilizationTime))
			v.Unhealthy = true
			return v
		}
		autopilotSince = s.StableSince
	} else {
		detail, err := legacyHealth(j.in, n, j.base.LastContactThreshold)
		if err != nil || detail != "" {
			v = fail(n, detail+", so not stable")
			if err != nil {
				v = unread(n, err)
			}
			v.Unhealthy = true
			return v
		}
	}
	count := j.carry.Stable.seen(j.in.Now, autopilotSince)
	from := latest(count.First, j.carry.Floor)
	how := "ServerStabilizationTime"
	if !era.Autopilot() {
		from = latest(from, j.carry.Start)
		how = "counted from this gate's observations: no autopilot"
	}
	v = pass()
	if since := j.in.Now.Sub(from); since < j.base.ServerStabilizationTime {
		seen := "healthy"
		if !era.Autopilot() {
			seen = "seen healthy"
		}
		v = fail(n, fmt.Sprintf("%s %s for %s, needs %s (%s)", n, seen, since.Round(time.Millisecond), j.base.ServerStabilizationTime, how))
	}
	v.Stable = &count
	return v
}

// gateCarry is what a gate carries from one attempt to the next.
type gateCarry struct {
	// Start is the gate's first attempt: without autopilot, stability
	// counts from no earlier.
	Start time.Time `json:"start"`
	// Floor is the earliest moment stability may count from: the swap
	// (gateOptions.Since), then every attempt in which a condition failed
	// or the server's own API did not answer.
	Floor time.Time `json:"floor"`
	// Stable is the gate's own count of the server's stability.
	Stable stability `json:"stable"`
	// Last is the verdict the last finished attempt failed on (nil: none
	// yet).
	Last *verdict `json:"last,omitempty"`
	// TermBefore is the raft term read before the step acted, and
	// TermFrom the server that reported it (0, "": not read); see
	// gate_term.go.
	TermBefore uint64 `json:"term_before,omitempty"`
	TermFrom   string `json:"term_from,omitempty"`
}

// after is the carry once the alive watch's last outage is taken in: a
// server whose own API did not answer since the floor counts again from
// then.
func (c gateCarry) after(o *outage) gateCarry {
	if o != nil && o.At.After(c.Floor) {
		c.Floor, c.Stable = o.At, stability{}
	}
	return c
}

// stability is a gate's own count of how long the server has been seen
// healthy, on this host's monotonic clock.
type stability struct {
	// First is when an attempt of this gate first saw the server healthy
	// (with every earlier condition holding) since it last saw otherwise;
	// zero: not yet.
	First time.Time `json:"first"`
	// AutopilotSince is autopilot's StableSince at that attempt (zero
	// without autopilot). It is compared only with later values of
	// itself: a change means autopilot saw the server unhealthy between
	// two attempts, and the count starts again.
	AutopilotSince time.Time `json:"autopilot_since"`
}

// seen is the count after an attempt at now saw the server healthy with
// autopilot's StableSince (zero without autopilot): started now, unless it
// had started with the same StableSince.
func (s stability) seen(now, autopilotSince time.Time) stability {
	if s.First.IsZero() || !s.AutopilotSince.Equal(autopilotSince) {
		return stability{First: now, AutopilotSince: autopilotSince}
	}
	return s
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// gateSubject is the server a step's server conditions are about.
func gateSubject(step planner.Step) string {
	if step.Kind == planner.StepTransferLeader && step.Target != "" {
		return step.Target
	}
	return step.Node
}

// gateNodes are the nodes a step's per-node conditions are about.
func gateNodes(step planner.Step) []string {
	if step.Kind == planner.StepSwapClients {
		return step.Nodes
	}
	if n := gateSubject(step); n != "" {
		return []string{n}
	}
	return nil
}

// contactProblem says what is wrong with a server's last contact ("" when
// it is recent enough or the server leads).
func contactProblem(s raftStats, threshold time.Duration) string {
	switch {
	case s.Leader:
		return ""
	case s.Never && s.Stale:
		return "knows no leader (X-Consul-KnownLeader: false in a stale read)"
	case s.Never:
		return "has never heard from a leader (raft last_contact: never)"
	case s.LastContact > threshold && s.Stale:
		return fmt.Sprintf("last heard from the leader %s ago (X-Consul-LastContact of a stale read; at most %s)", s.LastContact, threshold)
	case s.LastContact > threshold:
		return fmt.Sprintf("last heard from the leader %s ago (raft last_contact; at most %s)", s.LastContact, threshold)
	}
	return ""
}

func memberRaftAddr(members []*api.AgentMember, name string) string {
	if m := findMember(members, name); m != nil {
		return raftAddr(m)
	}
	return "no serf member"
}

func raftServerByName(raft *api.RaftConfiguration, members []*api.AgentMember, name string) *api.RaftServer {
	if m := findMember(members, name); m != nil {
		return raftServer(raft, m)
	}
	if raft == nil {
		return nil
	}
	for _, rs := range raft.Servers {
		if rs != nil && rs.Node == name {
			return rs
		}
	}
	return nil
}

func healthByName(h *api.OperatorHealthReply, name string) *api.ServerHealth {
	if h == nil {
		return nil
	}
	for i := range h.Servers {
		if h.Servers[i].Name == name {
			return &h.Servers[i]
		}
	}
	return nil
}

func lastContact(s *api.ServerHealth) string {
	if s.LastContact == nil {
		return "unknown"
	}
	return s.LastContact.Duration().String()
}

func serfStatus(st int) string {
	switch st {
	case serfAlive:
		return "alive"
	case serfLeaving:
		return "leaving"
	case serfLeft:
		return "left"
	case serfFailed:
		return "failed"
	}
	return fmt.Sprintf("status %d", st)
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
