package consultest

import (
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
)

// SetLeaderLogAge makes the leader report, in /v1/agent/metrics, the
// gauges consul.raft.leader.oldestLogAge (oldest: how old the oldest entry
// of its raft log is) and consul.raft.fsm.lastRestoreDuration (restore: its
// last snapshot restore), in milliseconds, as Consul 1.10.0 and later do
// once the leader wrote a snapshot. A zero oldest reports neither (the
// default: a leader that has not written a snapshot yet, or an older
// version).
func (c *Cluster) SetLeaderLogAge(oldest, restore time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logAge, c.lastRestore = oldest, restore
}

// serveMetrics answers /v1/agent/metrics for agent a: the leader's raft
// gauges (SetLeaderLogAge), none for any other agent. Callers hold c.mu.
func (c *Cluster) serveMetrics(w http.ResponseWriter, a *node) {
	out := api.MetricsInfo{Timestamp: time.Now().UTC().Format("2006-01-02 15:04:05 -0700 MST"), Gauges: []api.GaugeValue{}, Points: []api.PointValue{},
		Counters: []api.SampledValue{}, Samples: []api.SampledValue{}}
	if a != nil && a.name == c.leader && c.logAge > 0 {
		out.Gauges = append(out.Gauges,
			api.GaugeValue{Name: "consul.raft.leader.oldestLogAge", Value: float32(c.logAge.Milliseconds()), Labels: map[string]string{}},
			api.GaugeValue{Name: "consul.raft.fsm.lastRestoreDuration", Value: float32(c.lastRestore.Milliseconds()), Labels: map[string]string{}})
	}
	writeJSON(w, http.StatusOK, out)
}
