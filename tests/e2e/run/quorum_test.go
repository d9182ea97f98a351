package run_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// killAndAwaitRemoval kills a follower of cl (not the leader, so the
// leader does not move) by its pid, as kill -9 does, and waits until
// autopilot's dead-server cleanup has taken it out of the Raft
// configuration (two voters left), bounded by ctx. It returns the victim.
func killAndAwaitRemoval(t *testing.T, ctx context.Context, cl *consulrig.Cluster, c *api.Client) string {
	t.Helper()
	leader, err := c.Status().Leader()
	if err != nil {
		t.Fatalf("leader: %v", err)
	}
	victim := ""
	for _, s := range cl.Servers() {
		if !strings.HasPrefix(leader, cl.Address(s)+":") {
			victim = s // the last follower by name
		}
	}
	pid := cl.Transport().PID(victim)
	if pid <= 0 {
		t.Fatalf("no pid for %s", victim)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (%s): %v", pid, victim, err)
	}
	killed := time.Now()
	var last string
	for {
		rc, err := c.Operator().RaftGetConfiguration(nil)
		voters := 0
		if err == nil {
			var in []string
			for _, s := range rc.Servers {
				if s.Voter {
					voters++
				}
				in = append(in, s.Node)
			}
			last = fmt.Sprintf("raft configuration %v", in)
		} else {
			last = err.Error()
		}
		if err == nil && voters == 2 {
			t.Logf("FAULT %s (pid %d) killed; autopilot removed it from the Raft configuration %s later", victim, pid, time.Since(killed).Round(100*time.Millisecond))
			return victim
		}
		select {
		case <-ctx.Done():
			t.Fatalf("autopilot never removed the killed %s from the Raft configuration: %s", victim, last)
		case <-time.After(time.Second):
		}
	}
}

// TestRealRunRefusesTheTwoVotersLeftAfterAServerDied: 3 servers and a
// client on 1.12.9; a follower is killed and autopilot removes it. Run to
// 1.13.9 is refused by no-spare-voter (a *planner.RefusedError naming the
// missing server) and touches nothing: no agent restarted, no snapshot,
// the lock free.
func TestRealRunRefusesTheTwoVotersLeftAfterAServerDied(t *testing.T) {
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 3, Clients: 1, Version: scenario.FromVersion})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	via := cl.Clients()[0]
	victim := killAndAwaitRemoval(t, ctx, cl, scenario.APIClient(t, cl, via))
	pids := map[string]int{}
	for _, n := range cl.Nodes() {
		if n != victim {
			pids[n] = cl.Transport().PID(n)
		}
	}

	cfg := scenario.BaseConfig(t, cl, via, cl.Transport())
	snapDir := t.TempDir()
	cfg.Snapshot = upgrade.SnapshotDir(snapDir)
	start := time.Now()
	_, err := upgrade.Run(ctx, cfg)
	var re *planner.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("Run: %v, want a *planner.RefusedError", err)
	}
	if len(re.Findings) != 1 || re.Findings[0].Rule != planner.PrecheckNoSpareVoter {
		t.Errorf("refused by %v, want only %s", re.Findings, planner.PrecheckNoSpareVoter)
	}
	if !strings.Contains(err.Error(), "missing: "+victim) {
		t.Errorf("refusal %q should name %s missing", err, victim)
	}
	t.Logf("FIGURES Run refused in %s: %v", time.Since(start).Round(time.Millisecond), err)

	for n, pid := range pids {
		if got := cl.Transport().PID(n); got != pid {
			t.Errorf("%s: pid %d, was %d: a refused run restarted it", n, got, pid)
		}
	}
	for n, v := range scenario.MemberVersions(t, scenario.APIClient(t, cl, via)) {
		if n != victim && v != scenario.FromVersion {
			t.Errorf("%s runs %s, want %s", n, v, scenario.FromVersion)
		}
	}
	if entries, _ := os.ReadDir(snapDir); len(entries) != 0 {
		t.Errorf("snapshot dir holds %d file(s): a refused run took a snapshot", len(entries))
	}
	if kv, _, err := scenario.APIClient(t, cl, via).KV().Get(upgrade.DefaultLockKey, nil); err != nil || (kv != nil && kv.Session != "") {
		t.Errorf("the upgrade lock: %+v (%v), want free", kv, err)
	}
}

// TestARealStopIsRefusedWhileAnotherVoterKilledAMomentAgoStillLooksAlive:
// found on the demo cluster, where a follower killed 3.8 s before the
// run's first server stop was still alive in serf and healthy in autopilot
// (on 1.13.9 both said so for 6-7 s after kill -9), so the quorum check
// counted it up and the run stopped the other follower: one voter of
// three, no leader for the whole gate. Here 3 servers and a client on
// 1.12.9: a Session takes its snapshot and decides the first server swap;
// then the other follower is killed by its pid and the swap is executed at
// once. The hosts of the voters counted up are asked (the local
// transport's RunningVersion): the stop is refused with a *QuorumError
// naming the killed server not running, and the step's server keeps its
// process.
func TestARealStopIsRefusedWhileAnotherVoterKilledAMomentAgoStillLooksAlive(t *testing.T) {
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 3, Clients: 1, Version: scenario.FromVersion})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	via := cl.Clients()[0]
	c := scenario.APIClient(t, cl, via)
	cfg := scenario.BaseConfig(t, cl, via, cl.Transport())
	cfg.Snapshot = upgrade.SnapshotDir(t.TempDir())
	s, err := upgrade.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close(ctx)
	step, err := s.Next(ctx)
	if err == nil && step.Kind == planner.StepSnapshot {
		if _, err = s.Execute(ctx, step); err == nil {
			step, err = s.Next(ctx)
		}
	}
	if err != nil || step.Kind != planner.StepSwapServer {
		t.Fatalf("the step after the snapshot: %+v, %v; want a server swap", step, err)
	}
	leader, err := c.Status().Leader()
	if err != nil {
		t.Fatal(err)
	}
	victim := ""
	for _, n := range cl.Servers() {
		if n != step.Node && !strings.HasPrefix(leader, cl.Address(n)+":") {
			victim = n
		}
	}
	if victim == "" {
		t.Fatalf("no follower besides %s (leader %s)", step.Node, leader)
	}
	pid, victimPID := cl.Transport().PID(step.Node), cl.Transport().PID(victim)
	if err := syscall.Kill(victimPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (%s): %v", victimPID, victim, err)
	}
	killed := time.Now()
	_, err = s.Execute(ctx, step)
	took := time.Since(killed)
	serf := "not listed"
	if ms, merr := c.Agent().Members(false); merr == nil {
		for _, m := range ms {
			if m.Name == victim {
				serf = fmt.Sprintf("serf status %d", m.Status)
			}
		}
	}
	t.Logf("FIGURES %s killed; the stop of %s refused %s later (%s then): %v", victim, step.Node, took.Round(time.Millisecond), serf, err)

	var refused *upgrade.QuorumError
	var sr *upgrade.StepRefusedError
	if !errors.As(err, &sr) || !errors.As(err, &refused) || refused.Rollback {
		t.Fatalf("Execute(%s) = %v, want a *StepRefusedError wrapping a *QuorumError", step, err)
	}
	if refused.Node != step.Node || len(refused.NotRunning) != 1 || refused.NotRunning[0] != victim || len(refused.Up) != 1 {
		t.Errorf("refusal %+v: want %s not stopped, %s not running, the leader alone up", refused, step.Node, victim)
	}
	if !strings.Contains(err.Error(), victim+": alive in serf and healthy in autopilot, but the transport finds no agent running on the host") {
		t.Errorf("refusal %q does not say why %s is not counted", err, victim)
	}
	if got := cl.Transport().PID(step.Node); got != pid || !consulrig.ProcessAlive(pid) {
		t.Errorf("%s: pid %d (alive %t), was %d: the refused step stopped it", step.Node, got, consulrig.ProcessAlive(pid), pid)
	}
	if touched := s.Result().Touched.Nodes(); len(touched) != 0 {
		t.Errorf("touched %v, want nothing", touched)
	}
}
