// Package robustness_test upgrades real loopback Consul clusters under
// recorded KV traffic (internal/traffic) and checks every history for
// linearizability with Porcupine: no acknowledged write may be lost and no
// read may see the past, through a client agent or a server, while the
// servers are swapped one by one.
package robustness_test

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
)

// TestUpgradeUnderRecordedTraffic: 3 servers and 1 client, 1.12.9 ->
// 1.13.9 in place (followers first, the leader last), 8 workers at 60
// ops/s in all on 4 keys, 2 workers per agent (c1, s1, s2, s3), besides
// the scenario's writer through c1.
func TestUpgradeUnderRecordedTraffic(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
	f := scenario.Run(t, scenario.Scenario{From: "1.12.9", To: "1.13.9", During: tr.During})
	r := tr.Report
	t.Logf("FIGURES robust 1.12.9 -> 1.13.9: run wall %s; traffic %s; writer lost %d of %d acked",
		f.Wall.Round(100*time.Millisecond), r, len(f.Lost), len(f.Writes.Acked))
	if r.Ops < 1000 || r.Acked < 200 {
		t.Errorf("traffic %s: want at least 1000 operations and 200 acknowledged writes over the upgrade", r)
	}
	// Every agent carried traffic that Consul answered.
	done := map[string]int{}
	for _, op := range tr.History {
		if op.Outcome == traffic.Done {
			done[op.Node]++
		}
	}
	for _, n := range []string{"c1", "s1", "s2", "s3"} {
		if done[n] < 50 {
			t.Errorf("%s answered %d operations, want at least 50 (by agent: %s)", n, done[n], tr.History.ByNode())
		}
	}
	if r.Result != porcupine.Ok {
		t.Errorf("linearizability %s, want Ok", r.Result)
	}
}
