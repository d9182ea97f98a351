package cli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// TestCLIRefusesAPlanSavedBeforeAServerDied is the reported scenario on
// real agents (3 servers and 1 client on 1.12.9, local transport): plan
// -out on the healthy cluster; a follower is killed by its pid (kill -9)
// and autopilot removes it (the Raft configuration has 2 voters); apply
// -step of the saved plan exits 3, naming the server missing and the
// failure tolerance 1 -> 0, and touches nothing: every agent still on
// 1.12.9, the surviving agents never restarted, no snapshot, the lock
// free. status -plan exits 3 too. Then plan on that 2-voter cluster exits
// 2 with no-spare-voter (and saves nothing).
func TestCLIRefusesAPlanSavedBeforeAServerDied(t *testing.T) {
	cl := consulrig.Start(t, consulrig.Options{Servers: 3, Clients: 1, Version: "1.12.9"})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	addr := cl.HTTPAddr("c1")
	waitHealthy(t, ctx, addr)

	dir := t.TempDir()
	inv := relayInventory(t, cl, dir)
	planFile, snaps := filepath.Join(dir, "plan.json"), filepath.Join(dir, "snapshots")
	sh := func(want int, args ...string) (string, string) {
		t.Helper()
		r := consulUpgrade(t, ctx, dir+"/", args...)
		t.Logf("$ consul-upgrade %s\n%s%s[exit %d, %s]", r.shown, r.out, r.errs, r.code, r.wall.Round(100*time.Millisecond))
		if r.code != want {
			t.Fatalf("consul-upgrade %s: exit %d, want %d", strings.Join(args, " "), r.code, want)
		}
		return r.out, r.errs
	}

	sh(exitOK, "plan", "-http-addr", addr, "-to", "1.13.9", "-out", planFile)
	p, err := readPlan(planFile)
	if err != nil {
		t.Fatal(err)
	}
	if p.Basis == nil || len(p.Basis.Datacenters) != 1 || p.Basis.Datacenters[0].FailureTolerance != 1 {
		t.Fatalf("the saved plan's basis %+v: want one datacenter with failure tolerance 1", p.Basis)
	}

	consul, err := upgrade.ConnectAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	victim := killFollowerAndAwaitRemoval(t, ctx, cl, consul)
	pids := map[string]int{}
	for _, n := range cl.Nodes() {
		if n != victim {
			pids[n] = cl.Transport().PID(n)
		}
	}

	out, stderr := sh(exitDiverged, "apply", "-inventory", inv, "-http-addr", addr, "-plan", planFile, "-snapshot-dir", snaps, "-step")
	for _, want := range []string{
		"the saved plan is stale",
		// left once autopilot's cleanup force-left it, failed a moment before
		fmt.Sprintf("server %s: recorded a healthy voter on 1.12.9, observed missing: %s (1.12.9, ", victim, victim),
		" in serf, not in the Raft configuration)",
		"failure tolerance of dc1: recorded 1, observed 0",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("apply's stderr lacks %q:\n%s", want, stderr)
		}
	}
	if want := "Nothing in the cluster was touched by this run."; !strings.Contains(out, want) {
		t.Errorf("apply's stdout lacks %q:\n%s", want, out)
	}
	out, _ = sh(exitDiverged, "status", "-http-addr", addr, "-plan", planFile)
	if !strings.Contains(out, "Stale: ") || !strings.Contains(out, "  - server "+victim+": ") {
		t.Errorf("status -plan does not show the stale plan:\n%s", out)
	}

	// Nothing was touched.
	for n, pid := range pids {
		if got := cl.Transport().PID(n); got != pid {
			t.Errorf("%s: pid %d, was %d: it was restarted", n, got, pid)
		}
	}
	c, err := upgrade.Discover(ctx, consul)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Servers {
		if s.Version != "1.12.9" {
			t.Errorf("server %s runs %s", s.Name, s.Version)
		}
	}
	for _, cc := range c.Clients {
		if cc.Version != "1.12.9" {
			t.Errorf("client %s runs %s", cc.Name, cc.Version)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(snaps, "*")); len(m) != 0 {
		t.Errorf("snapshots %v: the refused apply took one", m)
	}
	if h, err := readLock(ctx, consul, upgrade.DefaultLockKey); err != nil || h != nil {
		t.Errorf("the upgrade lock: %+v (%v), want free", h, err)
	}

	// A fresh plan of the two voters left is refused by no-spare-voter.
	fresh := filepath.Join(dir, "fresh.json")
	out, stderr = sh(exitUsage, "plan", "-http-addr", addr, "-to", "1.13.9", "-out", fresh)
	if !strings.Contains(out, "[blocking] "+string(planner.PrecheckNoSpareVoter)) || !strings.Contains(out, "missing: "+victim) || !strings.Contains(stderr, "refused") {
		t.Errorf("plan of the 2 voters: want refused by %s naming %s missing\n%s\n%s", planner.PrecheckNoSpareVoter, victim, out, stderr)
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Errorf("a refused plan was written to %s", fresh)
	}
}

// killFollowerAndAwaitRemoval kills a follower by its pid (kill -9) and
// waits until autopilot has removed it from the Raft configuration (two
// voters left), bounded by ctx; it returns the follower.
func killFollowerAndAwaitRemoval(t *testing.T, ctx context.Context, cl *consulrig.Cluster, consul upgrade.Consul) string {
	t.Helper()
	c, err := upgrade.Discover(ctx, consul)
	if err != nil {
		t.Fatal(err)
	}
	victim := ""
	for _, s := range c.Servers {
		if !s.Leader {
			victim = s.Name // the last follower by name
		}
	}
	pid := cl.Transport().PID(victim)
	if victim == "" || pid <= 0 {
		t.Fatalf("no follower with a pid among %+v", c.Servers)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (%s): %v", pid, victim, err)
	}
	killed := time.Now()
	var last string
	for {
		rc, err := consul.RaftConfiguration(ctx)
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
