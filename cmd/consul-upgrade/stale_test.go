package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// The reported scenario, on a simulated cluster: a plan saved on a healthy
// 3-server cluster; s3 is killed and autopilot removes it; apply -step
// refuses the plan before its first step (exit 3), names s3 missing and
// the failure tolerance dropped, and touches nothing.
func TestApplyStepRefusesAPlanSavedBeforeAServerWasKilledAndRemoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 1)
		fake := withSim(t, sim)
		dir := t.TempDir()
		planFile, snaps := filepath.Join(dir, "plan.json"), filepath.Join(dir, "snaps")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		if err := sim.Kill("s3"); err != nil {
			t.Fatal(err)
		}
		if err := sim.RemoveDeadServer("s3"); err != nil {
			t.Fatal(err)
		}
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-step", "-snapshot-dir", snaps)
		if code != exitDiverged {
			t.Fatalf("apply -step: exit %d, want 3\n%s\n%s", code, out, stderr)
		}
		for _, want := range []string{
			"server s3: recorded a healthy voter on 1.12.9, observed missing: s3 (1.12.9, left in serf, not in the Raft configuration)",
			"failure tolerance of dc1: recorded 1, observed 0",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if !strings.Contains(out, "Nothing in the cluster was touched by this run.") {
			t.Errorf("stdout does not say nothing was touched:\n%s", out)
		}
		if s := swaps(fake); len(s) != 0 {
			t.Errorf("swaps %v, want none", s)
		}
		if m, _ := filepath.Glob(filepath.Join(snaps, "*")); len(m) != 0 {
			t.Errorf("snapshots %v, want none: the stale plan is refused before its first step", m)
		}
		if held := sim.HeldLocks(); len(held) != 0 {
			t.Errorf("locks still held: %v", held)
		}
		code, out, _ = cli(t, "status", "-plan", planFile, "-output", "json")
		var rep statusReport
		if code != exitDiverged || json.Unmarshal([]byte(out), &rep) != nil || len(rep.StaleDiffs) == 0 || rep.StaleDiffs[0].Node != "s3" {
			t.Errorf("status -plan: exit %d, %s; want 3 and the stale differences, s3 first", code, out)
		}
	})
}

// plan of the 2 voters left exits 2 naming no-spare-voter, and saves
// nothing; waived by its ID, the plan is made.
func TestPlanRefusesTheTwoVotersLeftAndAcceptsThemWaived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 1)
		withSim(t, sim)
		if err := sim.Kill("s3"); err != nil {
			t.Fatal(err)
		}
		if err := sim.RemoveDeadServer("s3"); err != nil {
			t.Fatal(err)
		}
		planFile := filepath.Join(t.TempDir(), "plan.json")
		code, out, stderr := cli(t, "plan", "-to", "1.13.9", "-out", planFile)
		if code != exitUsage || !strings.Contains(out, "[blocking] no-spare-voter") || !strings.Contains(out, "missing: s3") || !strings.Contains(stderr, "refused") {
			t.Errorf("plan: exit %d\n%s\n%s\nwant 2, refused by no-spare-voter naming s3 missing", code, out, stderr)
		}
		if !strings.Contains(out, "[warning] server-missing  s3") {
			t.Errorf("plan does not name s3 missing:\n%s", out)
		}
		code, _, stderr = cli(t, "plan", "-to", "1.13.9", "-waive", string(planner.PrecheckNoSpareVoter), "-out", planFile)
		if code != exitOK {
			t.Errorf("plan -waive %s: exit %d: %s", planner.PrecheckNoSpareVoter, code, stderr)
		}
	})
}

// A swap record a dead run left is reported first, before the plan, and the
// saved plan records it.
func TestPlanReportsAnUnfinishedSwapFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		withSim(t, sim)
		client, err := sim.Client()
		if err != nil {
			t.Fatal(err)
		}
		rec := upgrade.SwapRecord{Step: planner.Step{Kind: planner.StepSwapServer, Node: "s2", From: "1.12.9", To: "1.13.9"},
			Node: "s2", From: "1.12.9", To: "1.13.9", Holder: "consul-upgrade apply on host, pid 7", Started: time.Now().Add(-time.Minute)}
		data, _ := json.Marshal(rec)
		if err := upgrade.NewConsul(client).(upgrade.KVStore).KVPut(t.Context(), "consul-upgrade/swap", data); err != nil {
			t.Fatal(err)
		}
		planFile := filepath.Join(t.TempDir(), "plan.json")
		code, out, stderr := cli(t, "plan", "-to", "1.13.9", "-out", planFile)
		if code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		want := `Unfinished swap: s2 1.12.9 -> 1.13.9, started 1m0s ago by "consul-upgrade apply on host, pid 7"; the next apply finishes it before anything else (consul-upgrade/swap)`
		if !strings.HasPrefix(out, want) {
			t.Errorf("plan's output does not start with the unfinished swap:\n%s", out)
		}
		p, err := readPlan(planFile)
		if err != nil {
			t.Fatal(err)
		}
		if u := p.Basis.UnfinishedSwap; u == nil || u.Node != "s2" || u.To != "1.13.9" {
			t.Errorf("the plan's basis records %+v, want s2's unfinished swap", u)
		}
	})
}
