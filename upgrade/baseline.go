package upgrade

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// Baseline defaults: autopilot's, standing in where a cluster has no
// autopilot configuration to read.
const (
	// DefaultStabilizationTime is autopilot's default
	// ServerStabilizationTime, used when the configuration names none.
	DefaultStabilizationTime = 10 * time.Second
	// DefaultMaxTrailingLogs is autopilot's default MaxTrailingLogs, used
	// when the configuration names none. Without autopilot it also bounds
	// how far a server's commit index may trail the leader's.
	DefaultMaxTrailingLogs = 250
	// DefaultLastContactThreshold is autopilot's default
	// LastContactThreshold: a follower that has not heard from the leader
	// for longer is unhealthy.
	DefaultLastContactThreshold = 200 * time.Millisecond
)

// Baseline is what the cluster looked like before the run: the gates compare
// against it.
type Baseline struct {
	// FailureTolerance is autopilot's FailureTolerance before the run; the
	// failure-tolerance gate waits until it is back.
	FailureTolerance int `json:"failure_tolerance"`
	// MaxTrailingLogs is autopilot's MaxTrailingLogs (0 in a baseline that
	// was never measured, Taken zero: the gates use DefaultMaxTrailingLogs).
	MaxTrailingLogs uint64 `json:"max_trailing_logs"`
	// ServerStabilizationTime is autopilot's ServerStabilizationTime (0 in
	// a baseline that was never measured, Taken zero: the gates use
	// DefaultStabilizationTime; a measured 0 is kept).
	ServerStabilizationTime time.Duration `json:"server_stabilization_time"`
	// LastContactThreshold is autopilot's LastContactThreshold (0 in a
	// baseline never measured: the gates use DefaultLastContactThreshold).
	LastContactThreshold time.Duration `json:"last_contact_threshold"`
	// Healthy is autopilot's cluster-wide verdict before the run (without
	// autopilot: a leader was known and every voter was alive in serf).
	Healthy bool `json:"healthy"`
	// Era is the API era the baseline was measured in.
	Era Era `json:"era,omitempty"`
	// Taken is when the baseline was measured.
	Taken time.Time `json:"taken"`
}

// MeasureBaseline reads autopilot's health and configuration. In an era
// without autopilot health (before 0.8, or 0.8+ on raft protocol 2) the
// failure tolerance is counted from the peer set (voters alive in serf, less
// a quorum), the autopilot configuration is read where it exists (0.8+) and
// otherwise autopilot's defaults stand in for it.
func MeasureBaseline(ctx context.Context, c Consul) (Baseline, error) {
	var b Baseline
	members, err := c.Members(ctx)
	if err != nil {
		return b, fmt.Errorf("measure baseline: %w", err)
	}
	v, err := observeViews(ctx, c, members)
	if err != nil {
		return b, fmt.Errorf("measure baseline (%s era): %w", v.era, err)
	}
	b.Era = v.era
	b.MaxTrailingLogs = DefaultMaxTrailingLogs
	b.ServerStabilizationTime = DefaultStabilizationTime
	b.LastContactThreshold = DefaultLastContactThreshold
	if v.era.Autopilot() {
		b.FailureTolerance = v.health.FailureTolerance
		b.Healthy = v.health.Healthy
	} else {
		leader, err := c.Leader(ctx)
		if err != nil {
			return b, fmt.Errorf("measure baseline: %w", err)
		}
		voters, alive := peerTolerance(v.raft, members)
		b.FailureTolerance = max(0, alive-(voters/2+1))
		b.Healthy = leader != "" && voters > 0 && alive == voters
	}
	if v.era == EraAutopilot || v.era == EraRaftProtocol2 {
		ac, err := c.AutopilotConfiguration(ctx)
		if err != nil && !errors.Is(err, ErrEndpointMissing) {
			return b, fmt.Errorf("measure baseline: %w", err)
		}
		if err == nil {
			if ac.MaxTrailingLogs != 0 {
				b.MaxTrailingLogs = ac.MaxTrailingLogs
			}
			if ac.ServerStabilizationTime != nil {
				b.ServerStabilizationTime = ac.ServerStabilizationTime.Duration()
			}
			if ac.LastContactThreshold != nil && ac.LastContactThreshold.Duration() > 0 {
				b.LastContactThreshold = ac.LastContactThreshold.Duration()
			}
		}
	}
	b.Taken = time.Now()
	return b, nil
}

// peerTolerance counts the voters of the Raft configuration and those of
// them alive in serf.
func peerTolerance(raft *api.RaftConfiguration, members []*api.AgentMember) (voters, alive int) {
	if raft == nil {
		return 0, 0
	}
	for _, rs := range raft.Servers {
		if rs == nil || !rs.Voter {
			continue
		}
		voters++
		for _, m := range members {
			if m != nil && m.Tags["role"] == "consul" && (m.Name == rs.Node || raftAddr(m) == rs.Address) && m.Status == serfAlive {
				alive++
				break
			}
		}
	}
	return voters, alive
}

// withDefaults fills what a baseline that was never measured (Taken zero)
// leaves out with autopilot's defaults; a measured 0 stabilization time is
// kept. A LastContactThreshold of 0 is always the default.
func (b Baseline) withDefaults() Baseline {
	if b.Taken.IsZero() {
		if b.MaxTrailingLogs == 0 {
			b.MaxTrailingLogs = DefaultMaxTrailingLogs
		}
		if b.ServerStabilizationTime == 0 {
			b.ServerStabilizationTime = DefaultStabilizationTime
		}
	}
	if b.LastContactThreshold <= 0 {
		b.LastContactThreshold = DefaultLastContactThreshold
	}
	return b
}
