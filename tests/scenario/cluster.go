package scenario

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// The hop the e2e suites of the library (tests/e2e/run, federation,
// replace) take unless they say otherwise.
const (
	FromVersion = "1.12.9"
	ToVersion   = "1.13.9"
)

// APIClient returns a consul/api client talking to node's HTTP address.
func APIClient(t *testing.T, cl *consulrig.Cluster, node string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: cl.HTTPAddr(node)})
	if err != nil {
		t.Fatalf("api client for %s: %v", node, err)
	}
	return c
}

// StartHealthy starts a real cluster and waits until autopilot reports
// every server healthy: an operator starts an upgrade on a healthy cluster,
// and the planner refuses (rightly) to start on a cluster that is still
// forming. It needs autopilot (servers from 0.8).
func StartHealthy(t *testing.T, opt consulrig.Options) *consulrig.Cluster {
	t.Helper()
	cl := consulrig.Start(t, opt)
	op := APIClient(t, cl, cl.Servers()[0]).Operator()
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		h, err := op.AutopilotServerHealth(nil)
		switch {
		case err != nil:
			last = err.Error()
		case h.Healthy && len(h.Servers) == len(cl.Servers()):
			return cl
		default:
			last = fmt.Sprintf("healthy=%v servers=%d failure tolerance=%d", h.Healthy, len(h.Servers), h.FailureTolerance)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("autopilot never reported the new cluster healthy: %s", last)
	return nil
}

// MustLeader returns the cluster's leader, waiting up to about 30 s for one.
func MustLeader(t *testing.T, cl *consulrig.Cluster) string {
	t.Helper()
	var last error
	for i := 0; i < 60; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l, err := cl.Leader(ctx)
		cancel()
		if err == nil && l != "" {
			return l
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("no leader: %v", last)
	return ""
}

// MemberVersions returns node -> version from the serf build tags.
func MemberVersions(t *testing.T, c *api.Client) map[string]string {
	t.Helper()
	ms, err := c.Agent().Members(false)
	if err != nil {
		t.Fatalf("members: %v", err)
	}
	out := map[string]string{}
	for _, m := range ms {
		v, _, _ := strings.Cut(m.Tags["build"], ":")
		out[m.Name] = v
	}
	return out
}

// ElectionsIn counts "entering leader state" lines in the given log files
// (a retired server's log stays on disk until the test ends).
func ElectionsIn(t *testing.T, logs []string) int {
	t.Helper()
	n, err := consulrig.CountInLogs(logs, "entering leader state")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// LeaderElections counts "entering leader state" lines in the logs of the
// cluster's current servers.
func LeaderElections(t *testing.T, cl *consulrig.Cluster) int {
	t.Helper()
	var logs []string
	for _, s := range cl.Servers() {
		logs = append(logs, cl.LogPath(s))
	}
	return ElectionsIn(t, logs)
}

// BaseConfig is a run to ToVersion through node via's agent with the
// transport tr, snapshots into a temporary directory and a 3-minute gate.
func BaseConfig(t *testing.T, cl *consulrig.Cluster, via string, tr transport.Transport) upgrade.Config {
	return upgrade.Config{
		Consul:      upgrade.NewConsul(APIClient(t, cl, via)),
		Transport:   tr,
		Target:      ToVersion,
		Snapshot:    upgrade.SnapshotDir(t.TempDir()),
		GateTimeout: 3 * time.Minute,
	}
}
