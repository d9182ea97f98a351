package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// Gate defaults.
const (
	DefaultGateTimeout     = 5 * time.Minute
	DefaultGateMaxInterval = 2 * time.Second
)

// ServerAPIFunc returns a Consul talking to the HTTP API of the server node
// itself, whose serf address is addr. Gate needs it in the eras without
// autopilot health, where a server's Raft state (commit index, last
// contact) is only in its own /v1/agent/self.
type ServerAPIFunc func(node, addr string) (Consul, error)

// ServerHTTP returns a ServerAPIFunc that reaches each server at its serf
// address and the given HTTP port (8500 by default in Consul), with the
// client configured otherwise as ConnectAddr does (CONSUL_HTTP_* for token
// and TLS; CONSUL_HTTP_SSL=true makes it https). Clients are made once per
// address.
func ServerHTTP(port int) ServerAPIFunc {
	var mu sync.Mutex
	made := map[string]Consul{}
	return func(node, addr string) (Consul, error) {
		if addr == "" {
			return nil, fmt.Errorf("server %s has no serf address to reach its HTTP API at", node)
		}
		hp := net.JoinHostPort(addr, strconv.Itoa(port))
		mu.Lock()
		defer mu.Unlock()
		if c, ok := made[hp]; ok {
			return c, nil
		}
		c, err := ConnectAddr(hp)
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", node, err)
		}
		made[hp] = c
		return c, nil
	}
}

// ErrNoServerAPI is wrapped by the gate error of a condition that needs a
// server's own /v1/agent/self when GateOptions.ServerAPI is not set and the
// agent asked is another one.
var ErrNoServerAPI = errors.New("no way to reach the server's own HTTP API")

// GateOptions tune Gate. The zero value uses the defaults.
type GateOptions struct {
	// Timeout bounds the wait (0: DefaultGateTimeout).
	Timeout time.Duration
	// MaxInterval caps the backoff between attempts (0:
	// DefaultGateMaxInterval).
	MaxInterval time.Duration
	// OnWaiting is called when the reason for waiting changes: the first
	// condition that does not hold, the node it is about ("" for
	// cluster-wide conditions) and what was observed.
	OnWaiting func(cond planner.GateCheck, node, detail string)
	// RepeatWaiting, when positive, has OnWaiting called again for an
	// unchanged reason once RepeatWaiting has passed since the last call,
	// so a progress display sees a long wait go on.
	RepeatWaiting time.Duration
	// Since is when the step's act finished (the swapped agent started).
	// The stable condition is counted on this host's monotonic clock from
	// observations, never by comparing this host's clock with a server's:
	// from the first attempt of this gate that saw the server healthy
	// (every earlier condition holding) since it last saw otherwise, and
	// no earlier than Since. Autopilot's StableSince (a time on the
	// servers' clocks) only restarts the count when it changes between
	// two attempts (the server was unhealthy in between, unseen by the
	// gate). So a gate always waits at least the stabilization time, and
	// a clock ahead of or behind the servers' changes nothing. Zero Since:
	// count from the gate's observations alone.
	Since time.Time
	// ServerAPI reaches each server's own HTTP API. Eras without autopilot
	// health read a server's commit index and last contact from its own
	// /v1/agent/self (Consul answers that for the agent asked only). Nil:
	// only the agent asked can be read, and a condition about another
	// server fails at once with ErrNoServerAPI. See ServerHTTP.
	ServerAPI ServerAPIFunc
	// OnEra is called with the API era whose checks an attempt applied,
	// first and whenever it changes (an upgrade moves a cluster to a later
	// era).
	OnEra func(Era)
}

// Gate waits until every condition in step.Gate holds, checking them in
// order with exponential backoff, bound by opt.Timeout and ctx. Each attempt
// asks Consul each question at most once. It returns nil when all hold, and
// otherwise a *GateError naming the step, node, condition and API era with
// the last observed value.
//
// Conditions are about the step's node (swap-server; the new leader for
// transfer-leader) or each node of a wave (swap-clients). Each attempt first
// observes the cluster's API era (see Era and ObserveEra) and checks each
// condition with that era's means:
//
//   - leader-known: /v1/status/leader names a leader (for transfer-leader:
//     the step's Target)
//   - version: the node's serf build tag is step.To's release (build
//     metadata ignored: 1.10.12+ent passes a 1.10.12 step)
//   - voter: the node is a voter in the Raft configuration (before 0.7: in
//     /v1/status/peers)
//   - autopilot-healthy: autopilot says the node is healthy; without
//     autopilot health: alive in serf, in the peer set, a leader or
//     follower in its raft stats with its last contact within
//     base.LastContactThreshold
//   - stable: it has been healthy for base.ServerStabilizationTime,
//     counted from the gate's own observations on this host's monotonic
//     clock, never from a server's clock (see GateOptions.Since)
//   - trailing-logs: it trails the current leader by at most
//     base.MaxTrailingLogs entries (without autopilot: last_log_index in
//     the raft stats of both)
//   - commit-index: its commit_index is within base.MaxTrailingLogs of the
//     leader's (raft stats of both, from each one's /v1/agent/self; before
//     0.7, which has none, the catalog index of a stale read each answers)
//   - last-contact: it heard from the leader within
//     base.LastContactThreshold (autopilot's LastContact, else its raft
//     stats); the leader itself passes
//   - failure-tolerance: autopilot FailureTolerance >= base.FailureTolerance
//     (without autopilot: voters alive in serf less a quorum)
//   - serf-alive: the node is alive in serf (and reports step.To, if set)
//   - removed: the node is not in the Raft configuration (peer set) and not
//     alive (or leaving) in serf: a retired server has left (for add-server
//     and retire-server steps, step.Node is the new or the retired server)
//
// An endpoint the agent does not have (*MissingEndpointError) lowers the
// era for that attempt; it is never taken for an outage. Raft stats of a
// server other than the agent asked need opt.ServerAPI.
func Gate(ctx context.Context, c Consul, step planner.Step, base Baseline, opt GateOptions) error {
	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = DefaultGateTimeout
	}
	maxInterval := opt.MaxInterval
	if maxInterval <= 0 {
		maxInterval = DefaultGateMaxInterval
	}
	if len(step.Gate) == 0 {
		return nil
	}
	base = base.withDefaults()
	gctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var last oldVerdict
	var lastEra Era
	var reported struct {
		cond planner.GateCheck
		node string
		set  bool
		at   time.Time
	}
	// floor is the earliest moment stability may count from: the swap, and
	// then every attempt in which another condition failed or the server
	// was seen unhealthy. A StableSince older than what this gate itself saw
	// (a new leader's autopilot may report one) proves nothing.
	floor := opt.Since
	start := time.Now()
	var stab stability // reset whenever an attempt fails for another reason
	var cur *observation
	var alive *aliveWatch
	if watchesAlive(step, opt) {
		alive = watchAlive(gctx, c, step.Node, opt.ServerAPI, AliveInterval)
	}
	reportEra := func() {
		if cur == nil || !cur.g.eraRead {
			return
		}
		if e, err := cur.g.in.era(); err == nil && e != lastEra {
			lastEra = e
			if opt.OnEra != nil {
				opt.OnEra(e)
			}
		}
	}
	wait := func(v oldVerdict) error {
		last = v
		reportEra() // before the waiting report, which may name the era
		changed := !reported.set || reported.cond != v.cond || reported.node != v.node
		again := opt.RepeatWaiting > 0 && time.Since(reported.at) >= opt.RepeatWaiting
		if opt.OnWaiting != nil && (changed || again) {
			reported.cond, reported.node, reported.set, reported.at = v.cond, v.node, true, time.Now()
			opt.OnWaiting(v.cond, v.node, v.detail)
		}
		return errNotYet
	}
	op := func() error {
		out, outWhy := alive.last()
		if out.After(floor) { // the server's agent was down since: count again
			floor = out
			stab = stability{}
		}
		prev := last // the oldVerdict the last finished attempt failed on
		o := &observation{g: newGatherer(gctx, c, opt.ServerAPI), since: floor, start: start, stab: &stab}
		cur = o
		defer reportEra()
		var young *oldVerdict // stable failed only for want of time
		for _, cond := range step.Gate {
			v := o.check(step, base, cond)
			if v.apiErr != nil && gctx.Err() != nil && prev.cond != "" {
				// The gate's own deadline cut this read short: it says
				// nothing of the cluster, and the oldVerdict of the last
				// attempt that finished stays the reason the gate failed.
				last = prev
				return errNotYet
			}
			last = v
			switch {
			case v.fatal != nil:
				return backoff.Permanent(v.fatal)
			case v.ok:
			case cond == planner.GateStable && !v.unhealthy:
				young = &v // look on: a later failing condition is the real cause
			default:
				floor = time.Now()
				stab = stability{}
				return wait(v)
			}
		}
		if young != nil {
			if !out.IsZero() {
				young.detail += outageDetail(step.Node, out, outWhy)
			}
			return wait(*young) // every other condition holds: the server needs time
		}
		return nil
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = min(250*time.Millisecond, maxInterval)
	b.MaxInterval = maxInterval
	b.MaxElapsedTime = 0 // bound by gctx instead
	err := backoff.Retry(op, backoff.WithContext(b, gctx))
	if err == nil {
		return nil
	}
	ge := &GateError{Step: step, Node: last.node, Condition: last.cond, Detail: last.detail, Timeout: timeout, Era: lastEra}
	if ge.Node == "" && step.Kind != planner.StepSwapClients {
		ge.Node = gateSubject(step) // a cluster-wide condition still names the step's node
	}
	switch {
	case last.fatal != nil:
		ge.Err = last.fatal
	case ctx.Err() != nil:
		ge.Err = ctx.Err()
	case last.apiErr != nil:
		ge.Err = fmt.Errorf("%w: last error: %w", ErrGateTimeout, last.apiErr)
	default:
		ge.Err = ErrGateTimeout
	}
	return ge
}

var errNotYet = errors.New("gate condition does not hold yet")

// oldVerdict is the outcome of one condition in one attempt.
type oldVerdict struct {
	cond   planner.GateCheck
	ok     bool
	node   string
	detail string
	apiErr error // the condition could not be read this time (retried)
	// unhealthy: the stable condition failed because the server is not
	// healthy (not merely healthy for too short a time).
	unhealthy bool
	fatal     error // the condition can never be checked (not retried)
}

// observation is one attempt: its inputs, gathered as the conditions ask
// for them (each read made at most once), and the stability count carried
// across attempts.
type observation struct {
	g     *gatherer
	since time.Time  // stability counts from no earlier than this (see Gate)
	start time.Time  // the gate's start: without autopilot, stability counts from no earlier
	stab  *stability // the gate's count of the server's stability, across attempts
}

// asErr turns a *readError into an error, nil for nil.
func asErr(e *readError) error {
	if e == nil {
		return nil
	}
	return e
}

func (o *observation) getHealth() (*api.OperatorHealthReply, error) {
	o.g.health()
	h, err := o.g.in.Health.get("")
	return h, asErr(err)
}

// getEra is the attempt's API era: the members' tags, lowered when the era's
// endpoints answer 404.
func (o *observation) getEra() (Era, error) {
	o.g.era()
	e, err := o.g.in.era()
	return e, asErr(err)
}

func selfBool(self map[string]map[string]any, key string) bool {
	b, _ := self["Config"][key].(bool)
	return b
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

func (o *observation) check(step planner.Step, base Baseline, cond planner.GateCheck) oldVerdict {
	if judged(cond) {
		o.g.need(step, cond)
		nv := judge(cond, judging{step: step, base: base, in: o.g.in})
		v := oldVerdict{cond: cond, ok: nv.OK, node: nv.Node, detail: nv.Detail}
		switch {
		case nv.fatal():
			v.fatal = nv.Err
		case nv.Err != nil:
			v.apiErr = nv.Err
		}
		return v
	}
	if cond != planner.GateStable {
		v := oldVerdict{cond: cond}
		v.fatal = fmt.Errorf("unknown gate condition %q (known: leader-known, version, voter, autopilot-healthy, stable, trailing-logs, commit-index, last-contact, failure-tolerance, serf-alive, removed)", cond)
		return v
	}
	o.g.need(step, cond)
	v := oldVerdict{cond: cond}
	apiFail := func(node string, err error) oldVerdict {
		v.node, v.apiErr, v.detail = node, err, err.Error()
		return v
	}
	n := gateSubject(step)
	if n == "" {
		v.fatal = fmt.Errorf("step names no server to check")
		return v
	}
	v.node = n
	era, err := o.getEra()
	if err != nil {
		return apiFail(n, err)
	}
	if !era.Autopilot() {
		return o.checkWithoutAutopilot(v, n, base)
	}
	h, err := o.getHealth()
	if err != nil {
		return apiFail(n, err)
	}
	s := healthByName(h, n)
	if s == nil {
		v.detail = fmt.Sprintf("%s is missing from autopilot health", n)
		return v
	}
	if !s.Healthy || s.StableSince.IsZero() {
		v.detail = fmt.Sprintf("%s is not healthy yet, so not stable (needs %s healthy, ServerStabilizationTime)", n, base.ServerStabilizationTime)
		v.unhealthy = true
		return v
	}
	from := o.stableFrom(s.StableSince)
	if since := time.Since(from); since < base.ServerStabilizationTime {
		v.detail = fmt.Sprintf("%s healthy for %s, needs %s (ServerStabilizationTime)", n, since.Round(time.Millisecond), base.ServerStabilizationTime)
		return v
	}
	v.ok = true
	return v
}

// stability is a gate's own count of how long the server has been seen
// healthy, on this host's monotonic clock.
type stability struct {
	// first is when an attempt of this gate first saw the server healthy
	// (with every earlier condition holding) since it last saw otherwise;
	// zero: not yet.
	first time.Time
	// autopilotSince is autopilot's StableSince at that attempt (zero
	// without autopilot). It is compared only with later values of
	// itself: a change means autopilot saw the server unhealthy between
	// two attempts, and the count starts again.
	autopilotSince time.Time
}

// stableFrom returns when the server's stability counts from: the first
// attempt of this gate that saw it healthy with the current autopilot
// StableSince, and no earlier than the gate's floor (the swap, the last
// attempt in which something failed). Autopilot's StableSince is a time on
// the servers' clocks: it is never compared with this host's clock, which
// may be ahead of or behind theirs by any amount, so the count can be
// neither cut short nor stretched by a skew. Counting from an attempt that
// saw the server healthy (never from one before it) errs on the long side.
func (o *observation) stableFrom(autopilotSince time.Time) time.Time {
	st := o.stab
	if st == nil {
		st = &stability{}
		o.stab = st
	}
	if st.first.IsZero() || !st.autopilotSince.Equal(autopilotSince) {
		st.first, st.autopilotSince = time.Now(), autopilotSince
	}
	if o.since.After(st.first) {
		return o.since
	}
	return st.first
}

// checkWithoutAutopilot checks autopilot-healthy, stable and trailing-logs
// the way Consul's upgrade guide does before autopilot: from the peer set,
// serf and the raft stats of the server (and the leader).
func (o *observation) checkWithoutAutopilot(v oldVerdict, n string, base Baseline) oldVerdict {
	detail, err := legacyHealth(o.g.in, n, base.LastContactThreshold)
	switch {
	case err != nil && !err.retried():
		v.fatal = err
		return v
	case err != nil:
		v.apiErr, v.detail = err, err.Error()
		return v
	case detail != "":
		v.detail = detail + ", so not stable"
		v.unhealthy = true
		return v
	}
	from := o.stableFrom(time.Time{})
	if from.Before(o.start) {
		from = o.start
	}
	if since := time.Since(from); since < base.ServerStabilizationTime {
		v.detail = fmt.Sprintf("%s seen healthy for %s, needs %s (counted from this gate's observations: no autopilot)", n, since.Round(time.Millisecond), base.ServerStabilizationTime)
		return v
	}
	v.ok = true
	return v
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

// judged reports whether cond has a judge of its own (gate_judge.go).
func judged(cond planner.GateCheck) bool {
	_, ok := judges[cond]
	return ok
}
