package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// RuleLeaderLogAge names the pre-flight check of how far back the leader's
// log reaches: a server restarted during the upgrade catches up from the
// leader's log, and when the entries it needs were already compacted away
// it must install a snapshot instead; a snapshot that takes longer to
// restore than the log covers never lets it catch up
// (hashicorp/consul#9609). Where the leader reports
// consul.raft.leader.oldestLogAge (1.10.0 and later, once it wrote a
// snapshot), the pre-flight warns when the oldest entry is younger than a
// restart (the gate timeout, the longest a swapped server is given to be
// back) plus the last snapshot restore the leader measured
// (consul.raft.fsm.lastRestoreDuration). It warns, and refuses nothing.
const RuleLeaderLogAge planner.RuleID = "leader-log-covers-restart"

// URLLeaderLogAge is the source of RuleLeaderLogAge: the issue, and the
// telemetry reference that defines the metric and what to compare it with.
const URLLeaderLogAge = "https://github.com/hashicorp/consul/issues/9609 (https://github.com/hashicorp/consul/blob/58ef5fdd8f11e4e773977b48bdb6bb196a7c874d/website/content/docs/agent/telemetry.mdx)"

// MetricsReader is the optional part of Consul that reads the agent's
// metrics (/v1/agent/metrics, 0.9.1 and later), for RuleLeaderLogAge.
// NewConsul's Consul implements it, and so do those of Intercept and
// Failover (a call fails with ErrNoMetricsReader when the Consul they
// reach does not).
type MetricsReader interface {
	AgentMetrics(ctx context.Context) (*api.MetricsInfo, error)
}

// ErrNoMetricsReader is the error of a Consul that cannot read metrics.
var ErrNoMetricsReader = errors.New("this Consul does not implement upgrade.MetricsReader (upgrade.NewConsul's does; wrap with upgrade.Intercept to keep it)")

func (a *apiConsul) AgentMetrics(ctx context.Context) (*api.MetricsInfo, error) {
	var out api.MetricsInfo
	if _, err := a.c.Raw().Query("/v1/agent/metrics", &out, q(ctx)); err != nil {
		return nil, fmt.Errorf("read agent metrics: %w", missing(err, "/v1/agent/metrics", "0.9.1 and later"))
	}
	return &out, nil
}

func (w *routed) AgentMetrics(ctx context.Context) (*api.MetricsInfo, error) {
	return via(ctx, w, "AgentMetrics", func(ctx context.Context, c Consul) (*api.MetricsInfo, error) {
		mr, ok := c.(MetricsReader)
		if !ok {
			return nil, ErrNoMetricsReader
		}
		return mr.AgentMetrics(ctx)
	})
}

// gauge returns the value of the gauge whose name ends in suffix (the
// prefix is telemetry.metrics_prefix, "consul" by default).
func gauge(m *api.MetricsInfo, suffix string) (float32, bool) {
	if m == nil {
		return 0, false
	}
	for _, g := range m.Gauges {
		if strings.HasSuffix(g.Name, suffix) {
			return g.Value, true
		}
	}
	return 0, false
}

// logAgeVerdict judges the leader's metrics: "" when its log covers a
// restart of restart plus its last restore, else what is wrong; checked
// false when the metric is not there. Pure.
func logAgeVerdict(leader string, m *api.MetricsInfo, restart time.Duration) (detail string, checked bool) {
	age, ok := gauge(m, ".raft.leader.oldestLogAge")
	if !ok {
		return fmt.Sprintf("%s: not checked: the leader %s reports no raft.leader.oldestLogAge (1.10.0 and later, once it wrote a snapshot)", RuleLeaderLogAge, leader), false
	}
	if age <= 0 {
		// hashicorp/raft sets the gauge to 0 when it cannot date its
		// oldest entry: the read failed, or the entry carries no
		// AppendedAt (written before raft had it, Consul 1.10, or the
		// bootstrap entries, until a snapshot compacts them away;
		// hashicorp/raft#452 calls 0 the graceful degradation). 0 means
		// unknown, not a log 0s long: a fresh 1.12.9 cluster's leader
		// reports it, and the pre-flight warned "0s old" on it.
		return fmt.Sprintf("%s: not checked: the leader %s reports raft.leader.oldestLogAge 0, raft's value when it cannot date its oldest log entry (one written before Consul 1.10, or the cluster's first entries until a snapshot compacts them away)", RuleLeaderLogAge, leader), false
	}
	restore, _ := gauge(m, ".raft.fsm.lastRestoreDuration")
	oldest := time.Duration(age) * time.Millisecond
	want := restart + time.Duration(restore)*time.Millisecond
	if oldest >= want {
		return "", true
	}
	return fmt.Sprintf("%s: the oldest entry of the leader %s's raft log is %s old, less than a restart (%s, the gate timeout) plus its last snapshot restore (%s): a server restarted now may find the entries it needs compacted away and have to install a snapshot it cannot finish in time; keep more of the log (raft_trailing_logs, raft_snapshot_threshold, raft_snapshot_interval) or upgrade at a quieter time (%s)",
		RuleLeaderLogAge, leader, roundAge(oldest), restart, (time.Duration(restore) * time.Millisecond).Round(time.Millisecond), URLLeaderLogAge), true
}

// roundAge rounds to the second, but keeps a log younger than a second
// in milliseconds: "0s old" read as if the age were unknown.
func roundAge(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// logAgePreflight reads the leader's metrics (through Config.ServerAPI, or
// the agent the run talks through when it is the leader) and reports
// RuleLeaderLogAge as an EventPreflight: a warning naming the leader, or
// why it was not checked. It refuses nothing.
func (r *runner) logAgePreflight(ctx context.Context, c planner.Cluster) {
	leader, addr := "", ""
	for _, s := range c.Servers {
		if s.Leader && sameDC(s.Datacenter, r.ownDC) {
			leader, addr = s.Name, s.Address
		}
	}
	if leader == "" {
		return
	}
	var lc Consul
	switch {
	case r.cfg.ServerAPI != nil:
		sc, err := r.cfg.ServerAPI(leader, addr)
		if err != nil {
			r.emit(ctx, Event{Kind: EventPreflight, Node: leader, Err: err, Detail: fmt.Sprintf("%s: not checked: the leader %s's HTTP API cannot be reached: %v", RuleLeaderLogAge, leader, err)})
			return
		}
		lc = sc
	default:
		self, err := r.cfg.Consul.AgentSelf(ctx)
		if err != nil || selfString(self, "NodeName") != leader {
			r.emit(ctx, Event{Kind: EventPreflight, Node: leader, Detail: fmt.Sprintf("%s: not checked: the agent asked is not the leader %s, and Config.ServerAPI is not set to reach it", RuleLeaderLogAge, leader)})
			return
		}
		lc = r.cfg.Consul
	}
	mr, ok := lc.(MetricsReader)
	if !ok {
		r.emit(ctx, Event{Kind: EventPreflight, Node: leader, Err: ErrNoMetricsReader, Detail: fmt.Sprintf("%s: not checked: %T cannot read metrics", RuleLeaderLogAge, lc)})
		return
	}
	m, err := mr.AgentMetrics(ctx)
	if err != nil {
		r.emit(ctx, Event{Kind: EventPreflight, Node: leader, Err: err, Detail: fmt.Sprintf("%s: not checked: the leader %s's metrics could not be read: %v", RuleLeaderLogAge, leader, err)})
		return
	}
	restart := r.cfg.GateTimeout
	if restart <= 0 {
		restart = DefaultGateTimeout
	}
	detail, checked := logAgeVerdict(leader, m, restart)
	switch {
	case detail == "":
		r.emit(ctx, Event{Kind: EventPreflight, Node: leader, Detail: fmt.Sprintf("%s: the leader %s's raft log covers a restart plus a snapshot restore", RuleLeaderLogAge, leader)})
	case checked:
		r.emit(ctx, Event{Kind: EventPreflight, Node: leader, Detail: "warning: " + detail})
	default:
		r.emit(ctx, Event{Kind: EventPreflight, Node: leader, Detail: detail})
	}
}
