package robustness_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
)

// The stress mode repeats the upgrade under recorded traffic, on both hops,
// for many rounds, each on a fresh cluster and each history checked for
// linearizability:
//
//	CONSUL_UPGRADE_STRESS_ROUNDS=20 go test -run TestStress -timeout 0 ./robustness/ (in tests/)
//
// CONSUL_UPGRADE_STRESS_FAULTS=kill,partition adds, to every round and
// hop, the fault scenarios named: kill (a follower killed while a swap is
// gated, the run waits), partition (the swapped server cut off right after
// its restart). -count=N repeats the whole test N times as usual. With the
// variables unset (CI) it runs one round without faults: the 1.15.4 ->
// 1.16.1 upgrade under recorded traffic that no other test runs plainly,
// and 1.12.9 -> 1.13.9.
const (
	stressRoundsEnv = "CONSUL_UPGRADE_STRESS_ROUNDS"
	stressFaultsEnv = "CONSUL_UPGRADE_STRESS_FAULTS"
)

// stressTally counts rounds and verdicts over every -count repetition.
var stressTally struct {
	sync.Mutex
	runs, violations, unknown, failed int
	ops, indeterminate, lost          int
}

func stressConfig(t *testing.T) (rounds int, faults []string) {
	rounds = 1
	if v := os.Getenv(stressRoundsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a whole number of rounds, at least 1", stressRoundsEnv, v)
		}
		rounds = n
	}
	if v := os.Getenv(stressFaultsEnv); v != "" {
		for _, f := range strings.Split(v, ",") {
			switch f = strings.TrimSpace(f); f {
			case "kill", "partition":
				faults = append(faults, f)
			default:
				t.Fatalf("%s=%q: unknown fault %q; the faults are kill and partition", stressFaultsEnv, v, f)
			}
		}
	}
	return rounds, faults
}

// TestStressUpgradeUnderRecordedTraffic: see the stress mode above.
func TestStressUpgradeUnderRecordedTraffic(t *testing.T) {
	rounds, faults := stressConfig(t)
	start := time.Now()
	for round := 1; round <= rounds; round++ {
		for _, h := range hops {
			t.Run(fmt.Sprintf("round-%d/%s/plain", round, h), func(t *testing.T) {
				tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
				defer func() { tallyStress(t, tr.Report) }()
				f := scenario.Run(t, scenario.Scenario{From: h.From, To: h.To, During: tr.During})
				t.Logf("FIGURES stress round %d, %s: run wall %s; traffic %s; writer lost %d of %d",
					round, h, f.Wall.Round(100*time.Millisecond), tr.Report, len(f.Lost), len(f.Writes.Acked))
			})
			for _, fault := range faults {
				t.Run(fmt.Sprintf("round-%d/%s/%s", round, h, fault), func(t *testing.T) {
					var r traffic.Report
					defer func() { tallyStress(t, r) }()
					switch fault {
					case "kill":
						killWhileGatedWaits(t, h, &r)
					case "partition":
						partitionedAfterRestart(t, h, 25*time.Second, &r)
					}
				})
			}
		}
	}
	stressTally.Lock()
	defer stressTally.Unlock()
	t.Logf("STRESS %d round(s) x %d hop(s), faults %v, in %s; so far in this process: %d scenario runs, %d failed, %d not linearizable, %d undecided; checked histories: %d ops, %d indeterminate, %d acknowledged writes lost",
		rounds, len(hops), faults, time.Since(start).Round(time.Second), stressTally.runs, stressTally.failed,
		stressTally.violations, stressTally.unknown, stressTally.ops, stressTally.indeterminate, stressTally.lost)
}

// tallyStress counts one scenario run; a run that ended before its
// traffic was checked (no operations) counts as failed only.
func tallyStress(t *testing.T, r traffic.Report) {
	stressTally.Lock()
	defer stressTally.Unlock()
	stressTally.runs++
	if t.Failed() {
		stressTally.failed++
	}
	if r.Ops == 0 {
		return
	}
	switch r.Result {
	case porcupine.Illegal:
		stressTally.violations++
	case porcupine.Ok:
	default:
		stressTally.unknown++
	}
	stressTally.ops += r.Ops
	stressTally.indeterminate += r.Indeterminate
	stressTally.lost += len(r.Lost)
}
