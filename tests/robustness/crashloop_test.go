package robustness_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// badTarget is a scenario where the binary installed for the target
// version is not a working agent of that version. The run must halt with
// the typed error the scenario names, roll the swapped server back (the
// policy here: Config.Rollback), and touch no other agent: the other
// agents keep their process ids and versions, and the cluster ends
// healthy on the old version.
type badTarget struct {
	name string
	// binary writes the bad binary for hop h into dir and returns its path.
	binary func(t *testing.T, h hop, dir string) string
	// configure adjusts the run (gate timeout, start timeout).
	configure func(cfg *upgrade.Config, cl *consulrig.Cluster)
	// halted judges the run's error when the run halted at the broken
	// server's swap.
	halted func(t *testing.T, h hop, err error)
	// diesAfterGate: the broken agent may die after its gate passed
	// (autopilot can report a dead server healthy for several seconds).
	// The run must then halt before it stops another server: the next
	// decision is refused (server-unhealthy while the dead server is still
	// a voter, no-spare-voter once autopilot removed it: a
	// *planner.RefusedError), or, should it get that far, the stop is
	// (*upgrade.QuorumError); either is a *upgrade.StepRefusedError.
	diesAfterGate bool
}

// crashing returns the bad target whose binary is a wrapper that runs the
// real target agent for 5 s (long enough for the transport to see it
// answer on the target version, so the swap itself succeeds) and kills it.
// With loop, a supervisor starts it again a second later, forever (a crash
// loop); without, it stays down (a crash after the swap). Either way the
// swapped server's gate can never see it stable for ServerStabilizationTime
// (10 s), and the run must halt on the gate's timeout.
func crashing(loop bool) badTarget {
	name, again := "crash-after-swap", "exit 1"
	if loop {
		name, again = "crash-loop", "sleep 1"
	}
	return badTarget{
		name:          name,
		diesAfterGate: !loop, // a crash loop must halt at its own gate
		binary: func(t *testing.T, h hop, dir string) string {
			real := consulrig.Binary(t, h.To)
			path := filepath.Join(dir, "consul-"+h.To+"-"+name)
			script := fmt.Sprintf(`#!/bin/sh
# %s: a consul %s agent killed 5 s after its start (setpriv: the agent
# also dies with this script); asked its version, it answers as the
# target does (the run's pre-flight asks)
if [ "$1" = version ]; then exec %[3]q version; fi
while :; do
	setpriv --pdeathsig KILL %[3]q "$@" &
	pid=$!
	sleep 5
	kill -9 $pid
	wait $pid
	%[4]s
done
`, name, h.To, real, again)
			if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			return path
		},
		configure: func(cfg *upgrade.Config, cl *consulrig.Cluster) {
			cfg.GateTimeout = 45 * time.Second
		},
		halted: func(t *testing.T, h hop, err error) {
			var ge *upgrade.GateError
			if !errors.As(err, &ge) || !errors.Is(err, upgrade.ErrGateTimeout) {
				t.Fatalf("run error %T %v, want a *upgrade.HaltError wrapping a *upgrade.GateError that timed out", err, err)
			}
			t.Logf("the %s server's gate failed on %s: %s", name, ge.Condition, ge.Detail)
		},
	}
}

// wrongVersion: the path the target version resolves to holds the old
// version's agent behind a `version` that answers the target's (a
// mislabelled artifact that the run's pre-flight, which only asks the
// binary its version, cannot tell; an honest one is refused there, before
// anything is touched: see the unit tests of transport/local's
// CheckArtifact). The swapped agent starts and answers, but with the old
// version; transport/local refuses it (*local.StartError: it never
// answered with the target within the start timeout) and the run halts on
// the swap.
var wrongVersion = badTarget{
	name: "wrong-version",
	binary: func(t *testing.T, h hop, dir string) string {
		old := consulrig.Binary(t, h.From)
		path := filepath.Join(dir, "consul-"+h.To+"-holding-"+h.From)
		script := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = version ]; then echo 'Consul v%s'; exit 0; fi\nexec %q \"$@\"\n", h.To, old)
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	},
	configure: func(cfg *upgrade.Config, cl *consulrig.Cluster) {
		cl.Transport().SetStartTimeout(20 * time.Second)
	},
	halted: func(t *testing.T, h hop, err error) {
		var se *local.StartError
		var swe *transport.SwapError
		if !errors.As(err, &swe) || swe.Phase != transport.PhaseStart || !errors.As(err, &se) || !errors.Is(err, transport.ErrNotRunning) {
			t.Fatalf("run error %T %v, want a *upgrade.HaltError wrapping a *transport.SwapError in phase start wrapping a *local.StartError", err, err)
		}
		if se.Version != h.To || !strings.HasSuffix(se.Binary, "-holding-"+h.From) || se.Exited {
			t.Errorf("start error about consul %s from %s (exited %v), want the mislabelled binary still running on %s", se.Version, se.Binary, se.Exited, h.From)
		}
		if want := fmt.Sprintf("reports version %q, want %q", h.From, h.To); !strings.Contains(se.LastAnswer, want) {
			t.Errorf("the start error's last answer is %q, want the agent's wrong version (%s)", se.LastAnswer, want)
		}
	},
}

// TestASwappedServerThatCrashesAfterItsSwapHaltsAndRollsBack: on each hop.
func TestASwappedServerThatCrashesAfterItsSwapHaltsAndRollsBack(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	for _, h := range hops {
		t.Run(h.String(), func(t *testing.T) { badTargetRun(t, h, crashing(false)) })
	}
}

// TestASwappedServerOnTheWrongVersionHaltsAndRollsBack: on each hop.
func TestASwappedServerOnTheWrongVersionHaltsAndRollsBack(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	for _, h := range hops {
		t.Run(h.String(), func(t *testing.T) { badTargetRun(t, h, wrongVersion) })
	}
}

func badTargetRun(t *testing.T, h hop, bt badTarget) {
	bad := bt.binary(t, h, t.TempDir())
	real := consulrig.Resolver(t)
	resolver := func(v string) (string, error) {
		if v == h.To {
			return bad, nil
		}
		return real(v)
	}
	tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
	var (
		g        *guard
		cl       *consulrig.Cluster
		before   map[string]int
		halt     *upgrade.HaltError
		late     *upgrade.StepRefusedError // the run's error when it stopped before the step after the broken server's
		rolled   []string                  // rolled-back events
		swapped  string
		lateHalt bool // halted before stopping the next server, not at the broken one
	)
	fig := scenario.Run(t, scenario.Scenario{
		From: h.From, To: h.To, During: tr.During,
		Rig: consulrig.Options{Resolver: resolver},
		Configure: func(cfg *upgrade.Config, c *consulrig.Cluster) {
			cl = c
			before = pidsOf(c)
			g = &guard{Transport: c.Transport(), cl: c}
			cfg.Transport = g
			cfg.Rollback = true
			bt.configure(cfg, c)
			prev := cfg.OnEvent
			cfg.OnEvent = func(e upgrade.Event) {
				prev(e)
				switch {
				case e.Kind == upgrade.EventStepStarted && e.Step.Kind == planner.StepSwapServer && swapped == "":
					swapped = e.Step.Node
				case e.Kind == upgrade.EventRolledBack:
					rolled = append(rolled, e.Detail)
				}
			}
		},
		Halted: func(t *testing.T, err error) {
			// The broken agent died after its gate passed: the run stopped
			// before its next step, touching nothing of it (the next
			// decision refused, or the next stop refused for the quorum).
			var notStarted *upgrade.StepRefusedError
			if errors.As(err, &notStarted) {
				g.mu.Lock()
				acts := g.acts
				g.mu.Unlock()
				var re *planner.RefusedError
				var refused *upgrade.QuorumError
				refusedPlan := errors.As(err, &re) && refusedOnlyBy(re, planner.PrecheckServerUnhealthy, planner.PrecheckNoSpareVoter)
				refusedStop := errors.As(err, &refused) && refused.Node == notStarted.Step.Node && notStarted.Step.Node != swapped
				if !bt.diesAfterGate || !(refusedPlan || refusedStop) || len(acts) != 1 {
					t.Fatalf("the run asked the transport for %v about the broken %s, then stopped before %q: %v", acts, swapped, notStarted.Step, err)
				}
				lateHalt, late = true, notStarted
				t.Logf("OUTCOME the gate of the broken %s passed (its agent died after autopilot last saw it); the run stopped before its next step, touching nothing of it: %v", swapped, firstLine(err.Error()))
				return
			}
			if !errors.As(err, &halt) {
				t.Fatalf("run error %T %v, want a *upgrade.HaltError (or a *upgrade.StepRefusedError after the broken server's gate passed)", err, err)
			}
			if halt.Step.Node != swapped {
				t.Fatalf("the run went past the broken %s and halted at %s %s: %v", swapped, halt.Step.Kind, halt.Step.Node, err)
			}
			bt.halted(t, h, err)
		},
	})
	if halt == nil && late == nil {
		t.Fatal("the run did not halt")
	}
	wantActs := []string{"swap " + swapped, "rollback " + swapped}
	switch {
	case lateHalt:
		// Nothing rolled back (the broken server's step had passed): the
		// operator rolls it back by hand.
		wantActs = wantActs[:1]
		if len(rolled) > 0 {
			t.Errorf("rolled back %q at a step that stopped nothing", rolled)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := cl.Transport().Rollback(ctx, swapped)
		cancel()
		if err != nil {
			t.Fatalf("rolling the broken %s back by hand: %v", swapped, err)
		}
	case halt.Step.Node != swapped || halt.Step.Kind != planner.StepSwapServer:
		t.Errorf("halted at %s %s, want the swap of %s, the first server swapped", halt.Step.Kind, halt.Step.Node, swapped)
	case !halt.RolledBack || !slices.Equal(halt.RolledBackNodes, []string{swapped}):
		t.Errorf("rolled back %v (RolledBack %v, rollback error %v), want exactly %s", halt.RolledBackNodes, halt.RolledBack, halt.RollbackErr, swapped)
	}
	g.mu.Lock()
	acts := g.acts
	for _, v := range g.violations {
		t.Errorf("the run stopped a second server: %s", v)
	}
	g.mu.Unlock()
	if !slices.Equal(acts, wantActs) {
		t.Errorf("server swaps and rollbacks asked of the transport: %v, want %v", acts, wantActs)
	}
	// Nothing else touched: every other agent keeps its process.
	after := pidsOf(cl)
	for n, pid := range before {
		if n != swapped && after[n] != pid {
			t.Errorf("%s was restarted (pid %d -> %d); only %s was to be touched", n, pid, after[n], swapped)
		}
	}
	if after[swapped] == before[swapped] || after[swapped] == 0 {
		t.Errorf("%s has pid %d after its rollback (before the run %d): want a new, live process", swapped, after[swapped], before[swapped])
	}
	healthyAfter(t, cl, "the halt and rollback", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	members, err := cl.Members(ctx, cl.Clients()[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Status == 1 && m.Build() != h.From {
			t.Errorf("%s runs %s after the rollback, want %s (every agent on the old version)", m.Name, m.Build(), h.From)
		}
	}
	var at, why string
	var back []string
	if late != nil {
		at, why = late.Step.Node, firstLine(late.Error())
	} else {
		at, why, back = halt.Step.Node, firstLine(halt.Error()), halt.RolledBackNodes
	}
	t.Logf("FIGURES %s, %s: run wall %s; halted at %s (late halt %v): %v; rolled back %v (events %q); traffic %s; writer lost %d of %d",
		bt.name, h, fig.Wall.Round(100*time.Millisecond), at, lateHalt, why, back, rolled, tr.Report, len(fig.Lost), len(fig.Writes.Acked))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// refusedOnlyBy reports whether every finding of the refusal is one of ids.
func refusedOnlyBy(re *planner.RefusedError, ids ...planner.RuleID) bool {
	for _, f := range re.Findings {
		if !slices.Contains(ids, f.Rule) {
			return false
		}
	}
	return len(re.Findings) > 0
}
