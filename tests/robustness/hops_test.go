package robustness_test

import (
	"context"
	"testing"
	"time"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
)

// hop is one upgrade the fault scenarios run: 1.12.9 -> 1.13.9 (the
// autopilot era of 1.x before 1.14's peering and gRPC TLS changes) and
// 1.15.4 -> 1.16.1 (the newest releases the project builds).
type hop struct{ From, To string }

func (h hop) String() string { return h.From + "-" + h.To }

var hops = []hop{{"1.12.9", "1.13.9"}, {"1.15.4", "1.16.1"}}

// pidsOf returns the live process id of every node of the cluster.
func pidsOf(cl *consulrig.Cluster) map[string]int {
	out := map[string]int{}
	for _, n := range cl.Nodes() {
		out[n] = cl.Transport().PID(n)
	}
	return out
}

// healthyAfter runs fix (nil: nothing) and fails t unless the cluster is
// then healthy (a leader every agent agrees on, every member alive on the
// version its transport runs) within two minutes.
func healthyAfter(t *testing.T, cl *consulrig.Cluster, what string, fix func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if fix != nil {
		if err := fix(ctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	start := time.Now()
	if err := cl.WaitHealthy(ctx); err != nil {
		t.Fatalf("the cluster is not healthy at the end (after %s): %v", what, err)
	}
	t.Logf("healthy at the end (%s) after %s", what, time.Since(start).Round(100*time.Millisecond))
}
