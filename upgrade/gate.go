package upgrade

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// Gate defaults.
const (
	DefaultGateTimeout     = 5 * time.Minute
	DefaultGateMaxInterval = 2 * time.Second
	// DefaultStabilizationTime is autopilot's default
	// ServerStabilizationTime, used when the configuration names none.
	DefaultStabilizationTime = 10 * time.Second
	// DefaultMaxTrailingLogs is autopilot's default MaxTrailingLogs, used
	// when the configuration names none.
	DefaultMaxTrailingLogs = 250
)

// Baseline is what the cluster looked like before the run: the gates compare
// against it.
type Baseline struct {
	// FailureTolerance is autopilot's FailureTolerance before the run; the
	// failure-tolerance gate waits until it is back.
	FailureTolerance int `json:"failure_tolerance"`
	// MaxTrailingLogs is autopilot's MaxTrailingLogs (0 in a baseline that
	// was never measured, Taken zero: Gate uses DefaultMaxTrailingLogs).
	MaxTrailingLogs uint64 `json:"max_trailing_logs"`
	// ServerStabilizationTime is autopilot's ServerStabilizationTime (0 in
	// a baseline that was never measured, Taken zero: Gate uses
	// DefaultStabilizationTime; a measured 0 is kept).
	ServerStabilizationTime time.Duration `json:"server_stabilization_time"`
	// Healthy is autopilot's cluster-wide verdict before the run.
	Healthy bool `json:"healthy"`
	// Taken is when the baseline was measured.
	Taken time.Time `json:"taken"`
}

// MeasureBaseline reads autopilot's health and configuration.
func MeasureBaseline(ctx context.Context, c Consul) (Baseline, error) {
	var b Baseline
	h, err := c.AutopilotHealth(ctx)
	if err != nil {
		return b, fmt.Errorf("measure baseline: %w", err)
	}
	ac, err := c.AutopilotConfiguration(ctx)
	if err != nil {
		return b, fmt.Errorf("measure baseline: %w", err)
	}
	b.FailureTolerance = h.FailureTolerance
	b.Healthy = h.Healthy
	b.MaxTrailingLogs = ac.MaxTrailingLogs
	if b.MaxTrailingLogs == 0 {
		b.MaxTrailingLogs = DefaultMaxTrailingLogs
	}
	b.ServerStabilizationTime = DefaultStabilizationTime
	if ac.ServerStabilizationTime != nil {
		b.ServerStabilizationTime = ac.ServerStabilizationTime.Duration()
	}
	b.Taken = time.Now()
	return b, nil
}

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
	// Since is when the step's act finished (the swapped agent started).
	// The stable condition counts from the latest of autopilot's
	// StableSince, Since, and the last attempt of this gate in which another
	// condition failed or the server was unhealthy: autopilot may not have
	// noticed a quick restart at all, and a new leader may report a
	// StableSince from before what the gate saw. Zero Since means: count
	// from StableSince and the gate's own observations.
	Since time.Time
}

// Gate waits until every condition in step.Gate holds, checking them in
// order with exponential backoff, bound by opt.Timeout and ctx. Each attempt
// asks Consul each question at most once. It returns nil when all hold, and
// otherwise a *GateError naming the step, node and condition with the last
// observed value.
//
// Conditions are about the step's node (swap-server; the new leader for
// transfer-leader) or each node of a wave (swap-clients):
//
//   - leader-known: /v1/status/leader names a leader (for transfer-leader:
//     the step's Target)
//   - version: the node's serf build tag is step.To's release (build
//     metadata ignored: 1.10.12+ent passes a 1.10.12 step)
//   - voter: the node is a voter in the Raft configuration
//   - autopilot-healthy: autopilot says the node is healthy
//   - stable: it has been healthy for base.ServerStabilizationTime
//   - trailing-logs: it trails the current leader by at most
//     base.MaxTrailingLogs entries
//   - failure-tolerance: autopilot FailureTolerance >= base.FailureTolerance
//   - serf-alive: the node is alive in serf (and reports step.To, if set)
//   - removed: the node is not in the Raft configuration and not alive (or
//     leaving) in serf: a retired server has left (for add-server and
//     retire-server steps, step.Node is the new or the retired server)
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
	if base.Taken.IsZero() { // not measured: autopilot's defaults
		if base.MaxTrailingLogs == 0 {
			base.MaxTrailingLogs = DefaultMaxTrailingLogs
		}
		if base.ServerStabilizationTime == 0 {
			base.ServerStabilizationTime = DefaultStabilizationTime
		}
	}
	gctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var last verdict
	var reported struct {
		cond planner.GateCheck
		node string
		set  bool
	}
	// floor is the earliest moment stability may count from: the swap, and
	// then every attempt in which another condition failed or the server
	// was seen unhealthy. A StableSince older than what this gate itself saw
	// (a new leader's autopilot may report one) proves nothing.
	floor := opt.Since
	wait := func(v verdict) error {
		last = v
		if opt.OnWaiting != nil && (!reported.set || reported.cond != v.cond || reported.node != v.node) {
			reported.cond, reported.node, reported.set = v.cond, v.node, true
			opt.OnWaiting(v.cond, v.node, v.detail)
		}
		return errNotYet
	}
	op := func() error {
		o := &observation{ctx: gctx, c: c, since: floor}
		var young *verdict // stable failed only for want of time
		for _, cond := range step.Gate {
			v := o.check(step, base, cond)
			last = v
			switch {
			case v.fatal != nil:
				return backoff.Permanent(v.fatal)
			case v.ok:
			case cond == planner.GateStable && !v.unhealthy:
				young = &v // look on: a later failing condition is the real cause
			default:
				floor = time.Now()
				return wait(v)
			}
		}
		if young != nil {
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
	ge := &GateError{Step: step, Node: last.node, Condition: last.cond, Detail: last.detail, Timeout: timeout}
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

// verdict is the outcome of one condition in one attempt.
type verdict struct {
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

// observation memoizes one attempt's answers so that each Consul call is
// made at most once per attempt.
type observation struct {
	ctx   context.Context
	c     Consul
	since time.Time // stability counts from no earlier than this (see Gate)

	members    []*api.AgentMember
	membersErr error
	membersOK  bool

	leader    string
	leaderErr error
	leaderOK  bool

	raft    *api.RaftConfiguration
	raftErr error
	raftOK  bool

	health    *api.OperatorHealthReply
	healthErr error
	healthOK  bool
}

func (o *observation) getMembers() ([]*api.AgentMember, error) {
	if !o.membersOK {
		o.members, o.membersErr = o.c.Members(o.ctx)
		o.membersOK = true
	}
	return o.members, o.membersErr
}

func (o *observation) getLeader() (string, error) {
	if !o.leaderOK {
		o.leader, o.leaderErr = o.c.Leader(o.ctx)
		o.leaderOK = true
	}
	return o.leader, o.leaderErr
}

func (o *observation) getRaft() (*api.RaftConfiguration, error) {
	if !o.raftOK {
		o.raft, o.raftErr = o.c.RaftConfiguration(o.ctx)
		o.raftOK = true
	}
	return o.raft, o.raftErr
}

func (o *observation) getHealth() (*api.OperatorHealthReply, error) {
	if !o.healthOK {
		o.health, o.healthErr = o.c.AutopilotHealth(o.ctx)
		o.healthOK = true
	}
	return o.health, o.healthErr
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

func (o *observation) check(step planner.Step, base Baseline, cond planner.GateCheck) verdict {
	v := verdict{cond: cond}
	apiFail := func(node string, err error) verdict {
		v.node, v.apiErr, v.detail = node, err, err.Error()
		return v
	}
	// The per-server conditions are about the step's one server.
	var n string
	switch cond {
	case planner.GateVoter, planner.GateAutopilotHealthy, planner.GateStable, planner.GateTrailingLogs, planner.GateRemoved:
		if n = gateSubject(step); n == "" {
			v.fatal = fmt.Errorf("step names no server to check")
			return v
		}
		v.node = n
	}
	switch cond {
	case planner.GateLeaderKnown:
		leader, err := o.getLeader()
		if err != nil {
			return apiFail("", err)
		}
		if leader == "" {
			v.detail = "no raft leader is known"
			return v
		}
		if step.Kind == planner.StepTransferLeader && step.Target != "" {
			members, err := o.getMembers()
			if err != nil {
				return apiFail("", err)
			}
			raft, _ := o.getRaft() // optional: only a fallback for the name
			name := leaderName(members, raft, leader)
			if name != step.Target {
				v.node = step.Target
				v.detail = fmt.Sprintf("the leader is %s (%s), want %s", orUnknown(name), leader, step.Target)
				return v
			}
		}
		v.ok = true
		return v

	case planner.GateVersion, planner.GateSerfAlive:
		nodes := gateNodes(step)
		if len(nodes) == 0 {
			v.fatal = fmt.Errorf("step names no node to check")
			return v
		}
		if cond == planner.GateVersion && step.To == "" {
			v.fatal = fmt.Errorf("step names no target version to check")
			return v
		}
		members, err := o.getMembers()
		if err != nil {
			return apiFail(nodes[0], err)
		}
		for _, n := range nodes {
			m := findMember(members, n)
			v.node = n
			switch {
			case m == nil:
				v.detail = fmt.Sprintf("%s is not a serf member", n)
				return v
			case cond == planner.GateSerfAlive && m.Status != serfAlive:
				v.detail = fmt.Sprintf("%s is %s in serf, want alive", n, serfStatus(m.Status))
				return v
			case step.To != "" && !planner.SameVersion(buildVersion(m.Tags["build"]), step.To):
				// Build metadata is ignored: 1.10.12+ent is on a 1.10.12 step.
				v.detail = fmt.Sprintf("%s reports %s in its serf build tag, want %s", n, orUnknown(buildVersion(m.Tags["build"])), step.To)
				return v
			}
		}
		v.node = ""
		v.ok = true
		return v

	case planner.GateVoter:
		raft, err := o.getRaft()
		if err != nil {
			return apiFail(n, err)
		}
		members, _ := o.getMembers() // optional: matches by raft ID or address too
		rs := raftServerByName(raft, members, n)
		switch {
		case rs == nil:
			v.detail = fmt.Sprintf("%s is not in the raft configuration", n)
		case !rs.Voter:
			v.detail = fmt.Sprintf("%s is a non-voter in the raft configuration", n)
		default:
			v.ok = true
		}
		return v

	case planner.GateAutopilotHealthy, planner.GateStable, planner.GateTrailingLogs:
		h, err := o.getHealth()
		if err != nil {
			return apiFail(n, err)
		}
		s := healthByName(h, n)
		if s == nil {
			v.detail = fmt.Sprintf("%s is missing from autopilot health", n)
			return v
		}
		switch cond {
		case planner.GateAutopilotHealthy:
			if !s.Healthy {
				v.detail = fmt.Sprintf("autopilot reports %s unhealthy (serf %s, last contact %s, last index %d)", n, orUnknown(s.SerfStatus), lastContact(s), s.LastIndex)
				return v
			}
		case planner.GateStable:
			if !s.Healthy || s.StableSince.IsZero() {
				v.detail = fmt.Sprintf("%s is not healthy yet, so not stable (needs %s healthy, ServerStabilizationTime)", n, base.ServerStabilizationTime)
				v.unhealthy = true
				return v
			}
			from := s.StableSince
			if o.since.After(from) {
				from = o.since
			}
			if since := time.Since(from); since < base.ServerStabilizationTime {
				v.detail = fmt.Sprintf("%s healthy for %s, needs %s (ServerStabilizationTime)", n, since.Round(time.Millisecond), base.ServerStabilizationTime)
				return v
			}
		case planner.GateTrailingLogs:
			var lead *api.ServerHealth
			for i := range h.Servers {
				if h.Servers[i].Leader {
					lead = &h.Servers[i]
				}
			}
			if lead == nil {
				v.detail = "autopilot health names no leader to compare log indexes with"
				return v
			}
			if lead.LastIndex > s.LastIndex && lead.LastIndex-s.LastIndex > base.MaxTrailingLogs {
				v.detail = fmt.Sprintf("%s trails the leader %s by %d log entries (MaxTrailingLogs: at most %d)", n, lead.Name, lead.LastIndex-s.LastIndex, base.MaxTrailingLogs)
				return v
			}
		}
		v.ok = true
		return v

	case planner.GateFailureTolerance:
		h, err := o.getHealth()
		if err != nil {
			return apiFail("", err)
		}
		if h.FailureTolerance < base.FailureTolerance {
			v.detail = fmt.Sprintf("failure tolerance is %d, was %d before the upgrade", h.FailureTolerance, base.FailureTolerance)
			return v
		}
		v.ok = true
		return v

	case planner.GateRemoved:
		raft, err := o.getRaft()
		if err != nil {
			return apiFail(n, err)
		}
		members, err := o.getMembers()
		if err != nil {
			return apiFail(n, err)
		}
		m := findMember(members, n)
		if m != nil && (m.Status == serfAlive || m.Status == serfLeaving) {
			v.detail = fmt.Sprintf("%s is still %s in serf, want left or gone", n, serfStatus(m.Status))
			return v
		}
		if raft != nil {
			for _, rs := range raft.Servers {
				if rs != nil && (rs.Node == n || (m != nil && raftServer(raft, m) == rs)) {
					v.detail = fmt.Sprintf("%s is still in the raft configuration (voter %t)", n, rs.Voter)
					return v
				}
			}
		}
		v.ok = true
		return v
	}
	v.fatal = fmt.Errorf("unknown gate condition %q (known: leader-known, version, voter, autopilot-healthy, stable, trailing-logs, failure-tolerance, serf-alive, removed)", cond)
	return v
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
