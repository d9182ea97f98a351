package robustness_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
)

// TestTheCheckerCatchesStaleReadsOnARealCluster is the negative control of
// the robustness tests: the same traffic with ?stale reads (any server
// answers from its own state, possibly behind the leader) through the
// three servers of a real 1.12.9 cluster must be found NOT linearizable.
// Rounds of 15 s, each on fresh keys, until the checker finds a violation
// (at most 4).
func TestTheCheckerCatchesStaleReadsOnARealCluster(t *testing.T) {
	cl := consulrig.Start(t, consulrig.Options{Version: "1.12.9"})
	var eps []traffic.Endpoint
	for _, s := range cl.Servers() {
		eps = append(eps, traffic.Endpoint{Name: s, Addr: cl.HTTPAddr(s)})
	}
	for round := 1; round <= 4; round++ {
		rec, err := traffic.Start(traffic.Config{
			Endpoints: eps, Prefix: fmt.Sprintf("stale%d", round), Keys: 2, Workers: 6, Rate: 100,
			Reads: traffic.ReadStale, MaxDuration: 15 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		h, err := rec.Stop(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		r, err := traffic.Check(h, t.TempDir(), 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("FIGURES stale reads, round %d: %s", round, r)
		if r.Result == porcupine.Illegal {
			return
		}
	}
	t.Errorf("60 s of ?stale reads through 3 servers were all found linearizable: the checker (or the traffic) cannot tell a stale read on a real cluster")
}
