// Package replace_test runs the replace (blue/green) strategy on real
// Consul agents (tests/rig/consul).
package replace_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// TestRunReplacesRealServers is the replace (blue/green) strategy on real
// Consul: 3 servers + 1 client on 1.12.9 -> 1.13.9 while a writer puts a key
// through the client agent every 20 ms. Three new servers are provisioned on
// 1.13.9 (one at a time, each a stable voter before an old one leaves), the
// old ones retire followers first and the leader last, the client is
// swapped in place. No acknowledged write may be lost, autopilot's failure
// tolerance sampled between steps never drops below 1, and every server at
// the end is a new one on 1.13.9.
func TestRunReplacesRealServers(t *testing.T) {
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 3, Clients: 1, Version: scenario.FromVersion})
	if err := cl.ProvisionServers(3); err != nil {
		t.Fatal(err)
	}
	client := scenario.APIClient(t, cl, "c1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	old := cl.Servers()
	var logs []string
	for _, s := range old {
		logs = append(logs, cl.LogPath(s))
	}
	leaderBefore := scenario.MustLeader(t, cl)
	electionsBefore := scenario.ElectionsIn(t, logs)
	w := cl.StartWriter("c1", "replace-writer", 20*time.Millisecond)
	writerStopped := false
	defer func() {
		if !writerStopped {
			w.Stop()
		}
	}()

	cfg := scenario.BaseConfig(t, cl, "c1", cl.Transport())
	cfg.Policy.Strategy = planner.Replace

	var (
		violations []string
		retired    []string // in order
		leaderOut  []string // retired servers that led when retired
		added      []string
		minFT      = 99
		samples    int
	)
	sampleFT := func(when string) {
		h, err := client.Operator().AutopilotServerHealth(nil)
		if err != nil {
			violations = append(violations, fmt.Sprintf("autopilot health %s: %v", when, err))
			return
		}
		samples++
		minFT = min(minFT, h.FailureTolerance)
		if h.FailureTolerance < 1 {
			violations = append(violations, fmt.Sprintf("failure tolerance %d %s (want >= 1)", h.FailureTolerance, when))
		}
	}
	cfg.OnEvent = func(e upgrade.Event) {
		t.Logf("event %-14s %-14s %s %s %s", e.Kind, e.Step.Kind, e.Step.Node, e.Condition, e.Detail)
		switch e.Kind {
		case upgrade.EventStepStarted:
			sampleFT("before " + string(e.Step.Kind) + " " + e.Step.Node)
			if e.Step.Kind == planner.StepSwapServer {
				violations = append(violations, fmt.Sprintf("server %s swapped in place under the replace strategy", e.Step.Node))
			}
			if e.Step.Kind != planner.StepRetireServer {
				break
			}
			leader := scenario.MustLeader(t, cl)
			if e.Step.Node == leader {
				leaderOut = append(leaderOut, leader)
				for _, s := range cl.Servers() {
					if s != leader && slices.Contains(old, s) {
						violations = append(violations, fmt.Sprintf("leader %s retired while the old server %s remains", leader, s))
					}
				}
			}
			retired = append(retired, e.Step.Node)
		case upgrade.EventProvisioned:
			added = append(added, e.Step.Node)
			logs = append(logs, cl.LogPath(e.Step.Node))
		case upgrade.EventDone:
			sampleFT("at the end")
		}
	}

	start := time.Now()
	res, err := upgrade.Run(ctx, cfg)
	wall := time.Since(start)
	ws := w.Stop()
	writerStopped = true
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, v := range violations {
		t.Error(v)
	}

	slices.Sort(retired)
	if want := slices.Sorted(slices.Values(old)); !slices.Equal(retired, want) {
		t.Errorf("retired %v, want every old server %v", retired, want)
	}
	if len(leaderOut) != 1 {
		t.Errorf("servers retired while leading: %v, want exactly one (the last old server)", leaderOut)
	}
	if len(added) != 3 {
		t.Errorf("servers provisioned: %v, want 3", added)
	}
	servers := cl.Servers()
	versions := scenario.MemberVersions(t, client)
	if len(servers) != 3 {
		t.Errorf("servers at the end: %v, want 3", servers)
	}
	for _, s := range servers {
		if slices.Contains(old, s) || versions[s] != scenario.ToVersion {
			t.Errorf("server %s at the end runs %s; want a new server on %s", s, versions[s], scenario.ToVersion)
		}
	}
	if v := versions["c1"]; v != scenario.ToVersion {
		t.Errorf("client c1 ends on %s, want %s", v, scenario.ToVersion)
	}
	raft, err := client.Operator().RaftGetConfiguration(nil)
	if err != nil {
		t.Fatalf("raft configuration: %v", err)
	}
	var inRaft []string
	for _, s := range raft.Servers {
		inRaft = append(inRaft, s.Node)
		if !s.Voter {
			t.Errorf("%s is a non-voter at the end", s.Node)
		}
	}
	slices.Sort(inRaft)
	if !slices.Equal(inRaft, slices.Sorted(slices.Values(servers))) {
		t.Errorf("raft configuration lists %v, want the new servers %v", inRaft, servers)
	}
	if samples < len(res.Steps) {
		t.Errorf("failure tolerance sampled %d times for %d steps", samples, len(res.Steps))
	}
	missing, err := cl.MissingWrites(ctx, "c1", "replace-writer", ws.Acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Errorf("%d acknowledged writes lost, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	electionsAfter := scenario.ElectionsIn(t, logs)

	t.Logf("FIGURES replace: wall %s; steps %d; provisioned %v; retired in order %v (leader before the run %s, retired while leading %v); writes acked %d, failed %d in %d burst(s), longest burst %s (e.g. %q); lost %d; failure tolerance min %d over %d samples; leader elections in logs %d",
		wall.Round(100*time.Millisecond), len(res.Steps), added, retiredOrder(res), leaderBefore, leaderOut, len(ws.Acked), ws.Failed, ws.Bursts, ws.LongestBurst.Round(time.Millisecond), ws.Errors, len(missing), minFT, samples, electionsAfter-electionsBefore)
	if len(ws.Acked) < 100 {
		t.Errorf("the writer acknowledged only %d writes; it did not run through the upgrade", len(ws.Acked))
	}
}

// retiredOrder lists the retire-server steps' nodes in the order they ran.
func retiredOrder(res *upgrade.Result) []string {
	var out []string
	for _, s := range res.Steps {
		if s.Step.Kind == planner.StepRetireServer {
			out = append(out, s.Step.Node)
		}
	}
	return out
}
