package upgrade

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// Gate defaults: Config.GateTimeout and Config.GateMaxInterval when 0.
const (
	DefaultGateTimeout     = 5 * time.Minute
	DefaultGateMaxInterval = 2 * time.Second
)

// ServerAPIFunc returns a Consul talking to the HTTP API of the server node
// itself, whose serf address is addr (Config.ServerAPI). The gates need it
// in the eras without autopilot health, where a server's Raft state (commit
// index, last contact) is only in its own /v1/agent/self.
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

// ErrNoServerAPI is wrapped by the *GateError of a condition that needs a
// server's own /v1/agent/self when Config.ServerAPI is not set and the
// agent asked is another one.
var ErrNoServerAPI = errors.New("no way to reach the server's own HTTP API")

// gateOptions tune awaitGate. The zero value uses the defaults.
type gateOptions struct {
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
	// TermBefore is the raft term read before the step acted, which
	// raft-term compares with (zero: not read; the condition then says it
	// was not checked).
	TermBefore termRead
	// AgentGone, when set, is asked about the node a waiting version or
	// serf-alive condition names. An error (the node's host says its agent
	// is not running: transport.ErrNotRunning) stops the gate at once with
	// ErrAgentGone: an agent that answered its swap and then exited does
	// not come back by waiting out the timeout. Nil: the gate waits.
	AgentGone func(ctx context.Context, node string) error
}

// awaitGate waits until every condition in step.Gate holds, bound by
// opt.Timeout and ctx, and returns nil, or else a *GateError naming the
// step, node, condition and API era with the last observed value. Each
// attempt gathers what the conditions need (gateInputs: each endpoint read
// at most once, by the means of the cluster's API era; errors kept as data)
// and judges them in order (judgeAttempt: pure, the time an input); the
// attempts are spaced by exponential backoff, and this loop is the only
// part that sleeps. A read that the gate's own deadline cut says nothing
// of the cluster: the gate then fails on what the last finished attempt
// saw. An endpoint the agent does not have (*MissingEndpointError) lowers
// the era; it is never taken for an outage. Raft stats of a server other
// than the agent asked need opt.ServerAPI.
//
// Conditions are about the step's node (swap-server; the new leader for
// transfer-leader; the new or the retired server for add-server and
// retire-server) or each node of a wave (swap-clients). This is the one
// list of what each means, one judge each in gate_judge.go:
//
//   - leader-known: /v1/status/leader names a leader (for transfer-leader:
//     the step's Target, or another server already on step.To)
//   - version: the node's serf build tag is step.To's release (build
//     metadata ignored: 1.10.12+ent passes a 1.10.12 step)
//   - serf-alive: the node is alive in serf (and reports step.To, if set)
//   - voter: the node is a voter in the Raft configuration (before 0.7: in
//     /v1/status/peers)
//   - autopilot-healthy: autopilot says the node is healthy; without
//     autopilot health: alive in serf, in the peer set, a leader or
//     follower in its raft stats with its last contact within
//     base.LastContactThreshold
//   - stable: it has been seen healthy for base.ServerStabilizationTime,
//     counted from the gate's own observations on this host's monotonic
//     clock, never from a server's clock (see gateOptions.Since); an
//     attempt that does not see it healthy, or an outage of its own API
//     (the alive watch), starts the count again
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
//   - removed: the node is not in the Raft configuration (peer set) and not
//     alive (or leaving) in serf: a retired server has left
//   - raft-term: the raft term (the leader's raft stats through
//     opt.ServerAPI, else the agent asked's when it is a server; 0.7 and
//     later) rose
//     since opt.TermBefore by at most MaxTermRise elections; more is an
//     election storm, and the gate stops at once (ErrElectionStorm). Not
//     checkable (before 0.7, no server's stats in reach): it holds, saying
//     so. The runner adds it to every server step's gate
func awaitGate(ctx context.Context, c Consul, step planner.Step, base Baseline, opt gateOptions) error {
	timeout := cmp.Or(max(opt.Timeout, 0), DefaultGateTimeout)
	maxInterval := cmp.Or(max(opt.MaxInterval, 0), DefaultGateMaxInterval)
	if len(step.Gate) == 0 {
		return nil
	}
	base = base.withDefaults()
	gctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	carry := gateCarry{Start: time.Now(), Floor: opt.Since, TermBefore: opt.TermBefore.Term, TermFrom: opt.TermBefore.Node}
	var alive *aliveWatch
	if watchesAlive(step, opt) {
		alive = watchAlive(gctx, c, step.Node, opt.ServerAPI, AliveInterval)
	}
	rep := &gateReporter{opt: opt}
	var gone error // AgentGone's answer that stopped the gate
	op := func() error {
		g := newGatherer(gctx, c, opt.ServerAPI)
		in := g.gather(step, alive)
		a := judgeAttempt(step, base, in, carry)
		carry = a.carry
		if g.eraRead {
			rep.era(in) // before the waiting report, which may name the era
		}
		switch a.outcome {
		case attemptPassed:
			return nil
		case attemptStopped:
			return backoff.Permanent(a.v.Err)
		case attemptWaiting:
			rep.waiting(a.v)
			if opt.AgentGone != nil && a.v.Node != "" && (a.v.Cond == planner.GateVersion || a.v.Cond == planner.GateSerfAlive) {
				if err := opt.AgentGone(gctx, a.v.Node); err != nil {
					gone = fmt.Errorf("%w: %s's host says its agent is not running: %w", ErrAgentGone, a.v.Node, err)
					return backoff.Permanent(gone)
				}
			}
		}
		return errNotYet
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = min(250*time.Millisecond, maxInterval)
	b.MaxInterval = maxInterval
	b.MaxElapsedTime = 0 // bound by gctx instead
	if err := backoff.Retry(op, backoff.WithContext(b, gctx)); err == nil {
		return nil
	}
	ge := gateError(ctx, step, carry.Last, timeout, rep.lastEra)
	if gone != nil {
		ge.Err = gone
	}
	return ge
}

// ErrAgentGone: a node a swap step's gate waits for has no running agent on
// its host, as the transport (a transport.VersionReporter) reports it, so
// the gate stopped before its timeout: the agent answered its swap and then
// exited. Its log says why.
var ErrAgentGone = errors.New("agent not running after its swap")

// gateError is the error of a gate that did not pass: the verdict the last
// finished attempt failed on (nil: none finished).
func gateError(ctx context.Context, step planner.Step, last *verdict, timeout time.Duration, era Era) *GateError {
	var v verdict
	if last != nil {
		v = *last
	}
	ge := &GateError{Step: step, Node: v.Node, Condition: v.Cond, Detail: v.Detail, Timeout: timeout, Era: era}
	if ge.Node == "" && step.Kind != planner.StepSwapClients {
		ge.Node = gateSubject(step) // a cluster-wide condition still names the step's node
	}
	switch {
	case v.Halt:
		ge.Err = ErrElectionStorm
	case v.fatal():
		ge.Err = v.Err
	case ctx.Err() != nil:
		ge.Err = ctx.Err()
	case v.Err != nil:
		ge.Err = fmt.Errorf("%w: last error: %w", ErrGateTimeout, v.Err)
	default:
		ge.Err = ErrGateTimeout
	}
	return ge
}

// gateReporter calls gateOptions.OnEra when the era changes and OnWaiting
// when the reason for waiting does (or RepeatWaiting has passed).
type gateReporter struct {
	opt     gateOptions
	lastEra Era
	cond    planner.GateCheck
	node    string
	set     bool
	at      time.Time
}

func (r *gateReporter) era(in *gateInputs) {
	if e, err := in.era(); err == nil && e != r.lastEra {
		r.lastEra = e
		if r.opt.OnEra != nil {
			r.opt.OnEra(e)
		}
	}
}

func (r *gateReporter) waiting(v verdict) {
	changed := !r.set || r.cond != v.Cond || r.node != v.Node
	again := r.opt.RepeatWaiting > 0 && time.Since(r.at) >= r.opt.RepeatWaiting
	if r.opt.OnWaiting != nil && (changed || again) {
		r.cond, r.node, r.set, r.at = v.Cond, v.Node, true, time.Now()
		r.opt.OnWaiting(v.Cond, v.Node, v.Detail)
	}
}

var errNotYet = errors.New("gate condition does not hold yet")
