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
