// Package transfer_test proves leadership transfer on real Consul
// agents: 1.15.4 -> 1.16.1 with the transfer (the default) and without it,
// 1.14.8 -> 1.15.4 where the old side cannot transfer, and a replace
// (blue/green) run that hands leadership to a new server before the old
// leader retires. Each run has 3 servers and 1 client on loopback and a
// writer putting a key through the client every 20 ms (tests/scenario).
// The tests never skip: a missing or unbuildable binary fails them.
//
// The figures of each run are logged on a line starting with FIGURES.
package transfer_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

func transfers(f scenario.Figures) []planner.Step { return f.Kinds(planner.StepTransferLeader) }

// countLostElections makes sc count the asks the run repeated because the
// target lost the election the transfer started (Raft's race with a write
// in flight; see upgrade.ErrTransferElectionLost).
func countLostElections(sc *scenario.Scenario) *atomic.Int32 {
	var n atomic.Int32
	configure := sc.Configure
	sc.Configure = func(cfg *upgrade.Config, cl *consulrig.Cluster) {
		if configure != nil {
			configure(cfg, cl)
		}
		prev := cfg.OnEvent
		cfg.OnEvent = func(e upgrade.Event) {
			prev(e)
			if e.Step.Kind == planner.StepTransferLeader && strings.Contains(e.Detail, upgrade.ErrTransferElectionLost.Error()) {
				n.Add(1)
			}
		}
	}
	return &n
}

// checkOneMove asserts what a transfer promises: leadership moves once,
// from the step's old leader to its target, by the one election the
// transfer starts, and no write fails for a second or more. When Raft's
// race made the target lose an election (rare, and outside the runner's
// control), each lost election is one more election, the old leader
// re-elected, and its writes fail for up to an election timeout: the
// check is then that the runner recognised each, asked again, and
// leadership still ended on the target.
func checkOneMove(t *testing.T, f scenario.Figures, tr planner.Step, lost int) {
	t.Helper()
	if len(f.Leaders) != 2 || f.Leaders[0] != tr.Node || f.Leaders[1] != tr.Target {
		t.Errorf("leaders seen %v, want exactly [%s %s]: one move, to the server the step named", f.Leaders, tr.Node, tr.Target)
	}
	if f.Elections != 1+lost {
		t.Errorf("%d leader elections in the servers' logs, want %d (the transfer, and %d lost to Raft's race)", f.Elections, 1+lost, lost)
	}
	burst := time.Second
	if lost > 0 {
		t.Logf("the target lost %d election(s) the transfer started (a write in flight; upgrade.ErrTransferElectionLost); the runner asked again", lost)
		burst = time.Duration(lost) * 12 * time.Second // an election timeout (5 to 10 s) each, and a poll
	}
	if f.Writes.LongestBurst >= burst {
		t.Errorf("writes failed for %s in a row, want under %s with the transfer (errors: %q)", f.Writes.LongestBurst, burst, f.Writes.Errors)
	}
}

func lastNode(steps []planner.Step) string {
	if len(steps) == 0 {
		return ""
	}
	return steps[len(steps)-1].Node
}

// With the transfer (the default), the leader hands over to an upgraded
// server before it is swapped: leadership moves exactly once, to the
// server the step named, and no write fails for a second or more.
func TestTransferOn_1_15_4_to_1_16_1(t *testing.T) {
	sc := scenario.Scenario{From: "1.15.4", To: "1.16.1"}
	lost := countLostElections(&sc)
	f := scenario.Run(t, sc)
	trs := transfers(f)
	if len(trs) != 1 {
		t.Fatalf("transfer-leader steps %v, want exactly one", trs)
	}
	tr := trs[0]
	checkOneMove(t, f, tr, int(lost.Load()))
	if last := lastNode(f.Kinds(planner.StepSwapServer)); last != tr.Node {
		t.Errorf("the last server swapped is %s, want the old leader %s (swapped as a follower after the transfer)", last, tr.Node)
	}
}

// Without the transfer the leader is swapped last and the cluster elects
// a new one: no write is lost, but writes fail while it does.
func TestTransferOff_1_15_4_to_1_16_1(t *testing.T) {
	f := scenario.Run(t, scenario.Scenario{From: "1.15.4", To: "1.16.1", Policy: planner.Policy{NoTransferLeadership: true}})
	if trs := transfers(f); len(trs) != 0 {
		t.Errorf("transfer-leader steps %v with the transfer turned off", trs)
	}
	if f.Elections < 1 {
		t.Errorf("%d leader elections in the servers' logs: stopping the leader must have caused one (the restarted old leader may win it)", f.Elections)
	}
	scenario.LeaderSwappedLast(t, f)
}

// 1.14 cannot transfer leadership: the plan swaps the leader last, and the
// 1.15.4 servers read the raft log 1.14.8 wrote.
func TestNoTransferPossible_1_14_8_to_1_15_4(t *testing.T) {
	f := scenario.Run(t, scenario.Scenario{From: "1.14.8", To: "1.15.4"})
	if trs := transfers(f); len(trs) != 0 {
		t.Errorf("transfer-leader steps %v, but 1.14.8 cannot transfer leadership", trs)
	}
	scenario.LeaderSwappedLast(t, f)
}

// Replace (blue/green): new 1.16.1 servers join and the old 1.15.4 ones
// retire; before the old leader retires, leadership moves to a new server.
func TestReplaceTransfersToANewServer_1_15_4_to_1_16_1(t *testing.T) {
	sc := scenario.Scenario{From: "1.15.4", To: "1.16.1", Policy: planner.Policy{Strategy: planner.Replace}}
	lost := countLostElections(&sc)
	f := scenario.Run(t, sc)
	trs := transfers(f)
	if len(trs) != 1 {
		t.Fatalf("transfer-leader steps %v, want exactly one", trs)
	}
	tr := trs[0]
	if !strings.HasPrefix(tr.Target, "n") {
		t.Errorf("leadership went to %s, want a new server (n1..n3)", tr.Target)
	}
	retired := f.Kinds(planner.StepRetireServer)
	if len(retired) != 3 || retired[2].Node != tr.Node {
		t.Errorf("retired %v, want three with the old leader %s last", retired, tr.Node)
	}
	checkOneMove(t, f, tr, int(lost.Load()))
}
