package upgrade

import (
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// The property test of the orchestrator (issue 18, item 6): random
// clusters under random faults, each seed a scenario played in its own
// testing/synctest bubble, every event checked against the invariants of
// DESIGN.md. The scenarios are drawn in property_gen_test.go; the world,
// the faults and the checks are in property_world_test.go.
//
//	go test ./upgrade/ -run TestPropertyOrchestrator -property.seeds=5000
//	go test ./upgrade/ -run TestPropertyOrchestrator -property.seed=N -v   (replay one seed, with its log)

var (
	propSeeds    = flag.Int("property.seeds", 0, "how many seeds the property test plays (0: propDefaultSeeds)")
	propSeed     = flag.String("property.seed", "", "play this one seed of the property test and log its scenario and events")
	propBase     = flag.String("property.base", "", "the first seed the property test plays (default: drawn at random, and logged)")
	propFaults   = flag.String("property.faults", "", "with -property.seed: keep only these faults of the scenario (their 0-based indexes, comma-separated, as a shrunk failure prints them)")
	propFind     = flag.String("property.find", "", "log the seeds one of whose runs or faults (as -v's tally names them) contains this text")
	propBudget   = flag.Duration("property.budget", propDefaultBudget, "the wall-clock time after which the property test starts no new seed (0: none)")
	propFailures = flag.Int("property.failures", 3, "how many failing seeds the property test reports before it stops")
)

// propDefaultSeeds is how many seeds a run of the test plays: about 45 s
// on two idle cores (some 65 seeds/s); propDefaultBudget bounds it on a
// loaded machine (at a load of 9 on two cores the rate falls to some 18
// seeds/s), so the test stays within two minutes. -short plays
// propShortSeeds.
const (
	propDefaultSeeds  = 3000
	propShortSeeds    = 300
	propDefaultBudget = 100 * time.Second
)

// propOutcome is what playing one seed found.
type propOutcome struct {
	scenario string
	viol     []string
	log      []string
	tally    []string // how each run ended, each fault that fired
}

// propPlay plays the scenario of seed in a bubble of its own; keep, when
// not nil, keeps only those faults of it (by index).
func propPlay(t *testing.T, seed uint64, keep []int) propOutcome {
	var out propOutcome
	synctest.Test(t, func(t *testing.T) {
		sc := newPropScenario(seed)
		if keep != nil {
			var kept []propFault
			for _, i := range keep {
				if i >= 0 && i < len(sc.Faults) {
					kept = append(kept, sc.Faults[i])
				}
			}
			sc.Faults = kept
		}
		out.scenario = sc.String()
		w, err := newPropWorld(sc)
		if err != nil {
			out.viol = []string{"the scenario cannot be built: " + err.Error()}
			return
		}
		w.play(t.Context())
		w.mu.Lock()
		defer w.mu.Unlock()
		out.viol, out.log, out.tally = w.viol, w.log, w.tally
	})
	return out
}

// propShrink drops the faults of a failing seed one at a time, keeping a
// drop when the scenario still breaks an invariant without it, and returns
// the faults kept (nil when none could be dropped) with the outcome of
// playing only them.
func propShrink(t *testing.T, seed uint64, o propOutcome) ([]int, propOutcome) {
	n := len(newPropScenario(seed).Faults)
	keep := make([]int, n)
	for i := range keep {
		keep[i] = i
	}
	shrunk := false
	for i := 0; i < len(keep); {
		try := slices.Delete(slices.Clone(keep), i, i+1)
		if to := propPlay(t, seed, try); len(to.viol) > 0 {
			keep, o, shrunk = try, to, true
			continue
		}
		i++
	}
	if !shrunk {
		return nil, o
	}
	return keep, o
}

func propFaultList(keep []int) string {
	parts := make([]string, len(keep))
	for i, k := range keep {
		parts[i] = strconv.Itoa(k)
	}
	return strings.Join(parts, ",")
}

// propReport is the failure message of a seed: the seed, the command that
// replays it, the scenario, what broke and the end of the event log.
func propReport(seed uint64, keep []int, o propOutcome, logLines int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d breaks the orchestrator's invariants; replay it with\n\tgo test ./upgrade/ -run 'TestPropertyOrchestrator' -property.seed=%d -v\n", seed, seed)
	if keep != nil {
		fmt.Fprintf(&b, "it breaks them with only faults %s of its scenario, as below; replay that with\n\tgo test ./upgrade/ -run 'TestPropertyOrchestrator' -property.seed=%d -property.faults=%s -v\n", propFaultList(keep), seed, propFaultList(keep))
	}
	fmt.Fprintf(&b, "scenario: %s\n", o.scenario)
	b.WriteString("violations:\n")
	for _, v := range o.viol {
		b.WriteString("\t" + v + "\n")
	}
	lines := o.log
	if logLines > 0 && len(lines) > logLines {
		fmt.Fprintf(&b, "event log (the last %d of %d lines; replay for all):\n", logLines, len(lines))
		lines = lines[len(lines)-logLines:]
	} else {
		b.WriteString("event log:\n")
	}
	for _, l := range lines {
		b.WriteString("\t" + l + "\n")
	}
	return b.String()
}

// TestPropertyOrchestratorKeepsItsInvariantsUnderRandomClustersAndFaults
// plays random scenarios (1-7 servers per datacenter, one or two
// datacenters, every simulated era, approved plans or not, rollback or
// not, one or several runs) under random faults injected between and
// during steps, and checks after every event, every stop and every run:
//
//	(a) no stop leaves fewer voters of the current Raft configuration up
//	    than a quorum, but for a datacenter's planned outage;
//	(b) no two servers of a datacenter are down at once because of the run;
//	(c) a server the run left down has the swap record;
//	(d) with an approved plan, every step carried out is the plan's step at
//	    its index, and the plan's basis holds for the cluster as it is just
//	    before the step is carried out;
//	(e) every error after a touch is a *HaltError or an *AbortedError, every
//	    error is one of the documented types (or the context's) or was
//	    returned before anything was touched, and the touch record names
//	    exactly the nodes the transport stopped; a refusal touched nothing;
//	(f) the run gives the lock back (or says it could not, and the lock
//	    then expires with its session), and it does not lose the lock to
//	    its own stops (a lost lock is a fault's doing, or the stop of the
//	    last server of the lock's datacenter, where there is nowhere to
//	    move it);
//
// and that Run never panics. A failing seed is printed with the command
// that replays it, its scenario and its event log. A seed plays the same
// scenario and the same sequence of events each time; only the virtual
// times differ (the gates' backoff has jitter).
func TestPropertyOrchestratorKeepsItsInvariantsUnderRandomClustersAndFaults(t *testing.T) {
	if *propSeed != "" {
		seed, err := strconv.ParseUint(*propSeed, 10, 64)
		if err != nil {
			t.Fatalf("-property.seed=%q: %v; pass the seed a failure printed", *propSeed, err)
		}
		var keep []int
		if *propFaults != "" {
			keep = []int{}
			for _, f := range strings.Split(*propFaults, ",") {
				i, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil {
					t.Fatalf("-property.faults=%q: %v; pass the indexes a shrunk failure printed", *propFaults, err)
				}
				keep = append(keep, i)
			}
		}
		o := propPlay(t, seed, keep)
		t.Logf("scenario: %s", o.scenario)
		for _, l := range o.log {
			t.Log(l)
		}
		if len(o.viol) > 0 {
			t.Error(propReport(seed, nil, o, 0))
		}
		return
	}
	n := *propSeeds
	switch {
	case n > 0:
	case testing.Short():
		n = propShortSeeds
	default:
		n = propDefaultSeeds
	}
	base := rand.Uint64() >> 1
	if *propBase != "" {
		var err error
		if base, err = strconv.ParseUint(*propBase, 10, 64); err != nil {
			t.Fatalf("-property.base=%q: %v", *propBase, err)
		}
	}
	t.Logf("playing %d seeds from %d (-property.base=%d)", n, base, base)

	var (
		next      atomic.Int64
		failures  atomic.Int64
		played    atomic.Int64
		budgetHit atomic.Bool
		mu        sync.Mutex
		tally     = map[string]int{}
	)
	begin := time.Now()
	workers := runtime.GOMAXPROCS(0)
	for k := range workers {
		t.Run(fmt.Sprintf("worker-%d", k), func(t *testing.T) {
			t.Parallel()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || failures.Load() >= int64(*propFailures) {
					return
				}
				if *propBudget > 0 && time.Since(begin) > *propBudget {
					budgetHit.Store(true)
					return
				}
				seed := base + uint64(i)
				o := propPlay(t, seed, nil)
				played.Add(1)
				mu.Lock()
				found := false
				for _, k := range o.tally {
					tally[k]++
					found = found || (*propFind != "" && strings.Contains(k, *propFind))
				}
				mu.Unlock()
				if found {
					t.Logf("seed %d: %s", seed, strings.Join(o.tally, "; "))
				}
				if len(o.viol) > 0 {
					failures.Add(1)
					keep, so := propShrink(t, seed, o)
					t.Error(propReport(seed, keep, so, 150))
				}
			}
		})
	}
	t.Cleanup(func() {
		el := time.Since(begin)
		if testing.Verbose() {
			keys := slices.Sorted(maps.Keys(tally))
			for _, k := range keys {
				t.Logf("%6d %s", tally[k], k)
			}
		}
		budget := ""
		if budgetHit.Load() {
			budget = fmt.Sprintf(" (the %s budget ran out before the %d asked for)", *propBudget, n)
		}
		t.Logf("played %d seeds in %s (%.1f seeds/s on %d workers)%s; %d failed", played.Load(), el.Round(time.Millisecond), float64(played.Load())/el.Seconds(), workers, budget, failures.Load())
	})
}
