package robustness_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// orchestratorKillStopped: 3 servers and a client under recorded traffic.
// An orchestrator child (orchestrator_kill_test.go) runs the upgrade; on
// its first server swap the node's side only STOPS that server (with the
// step's stop mode) and the child is SIGKILLed: the host-side script died
// with it, and nobody starts the server again. The planner alone would
// refuse the cluster the child left (server-unhealthy). A second run, in
// the test process, finds the dead child's lock until its session has
// expired, then finds the child's swap record (upgrade.SwapRecord), swaps
// the stopped server itself (once), gates it, and completes: no node is
// swapped twice, never two servers down at once.
func orchestratorKillStopped(t *testing.T, from, to string) {
	cl := consulrig.Start(t, consulrig.Options{Version: from, Servers: 3, Clients: 1})
	client := cl.Clients()[0]
	consul, err := upgrade.ConnectAddr(cl.HTTPAddr(client))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	g := &guard{Transport: cl.Transport(), cl: cl}
	var mu sync.Mutex
	var swaps []string
	scenario.WaitReady(t, ctx, upgrade.Config{Consul: consul}, 3)

	var (
		child      *exec.Cmd
		killedAt   time.Time
		killedNode string
		stopMode   transport.StopMode
		stopErr    = make(chan error, 1)
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req transport.SwapRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec := recorder{Transport: g, who: "child", mu: &mu, swaps: &swaps}
		mu.Lock()
		kill := killedNode == "" && req.Role == transport.RoleServer
		if kill {
			killedNode, stopMode = req.Node, req.StopMode
		}
		mu.Unlock()
		if kill {
			// Half a swap: the server is stopped, the script dies with
			// its orchestrator before it starts the new version.
			g.check("stop", req.Node)
			stopErr <- g.Transport.Stop(context.WithoutCancel(r.Context()), req.Node, req.StopMode)
			if err := child.Process.Kill(); err != nil {
				t.Errorf("SIGKILL the orchestrator child: %v", err)
			}
			mu.Lock()
			killedAt = time.Now()
			mu.Unlock()
			return
		}
		out := struct{ Err string }{}
		if err := rec.Swap(r.Context(), req); err != nil {
			out.Err = err.Error()
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	defer srv.Close()

	w := cl.StartWriter(client, "writer", 20*time.Millisecond)
	tr := scenario.Traffic{Config: traffic.Config{Workers: 8, Rate: 60, Keys: 4}}
	stopTraffic := tr.During(t, cl)
	start := time.Now()

	// Run 1: the child.
	child = orchestratorCmd(t, cl.HTTPAddr(client), srv.URL, to)
	werr := runChild(t, child)
	mu.Lock()
	victim, killed, mode := killedNode, killedAt, stopMode
	mu.Unlock()
	if victim == "" {
		t.Fatalf("the child never asked for a server swap (exit %v)", werr)
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ProcessState.String() != "signal: killed" {
		t.Fatalf("the child ended with %v, want killed by SIGKILL", werr)
	}
	if err := <-stopErr; err != nil {
		t.Fatalf("stop %s: %v", victim, err)
	}
	if pid := g.Transport.PID(victim); pid != 0 {
		t.Fatalf("%s runs (pid %d) after the child died, want it stopped", victim, pid)
	}
	rec, err := upgrade.ReadSwapRecord(ctx, consul, "")
	if err != nil || rec == nil || rec.Node != victim || rec.To != to {
		t.Fatalf("after the child died the swap record is %+v (err %v), want the swap of %s to %s", rec, err, victim, to)
	}
	t.Logf("FAULT the orchestrator child was SIGKILLed after %s was stopped (%s) and before it was started; record %s by %q", victim, mode, rec.Key, rec.Holder)

	// Run 2: in this process, once the dead child's lock has expired.
	var events []upgrade.Event
	cfg := upgrade.Config{
		Consul:      consul,
		Transport:   recorder{Transport: g, who: "second", mu: &mu, swaps: &swaps},
		Target:      to,
		Snapshot:    upgrade.SnapshotDir(t.TempDir()),
		GateTimeout: 3 * time.Minute,
		LockHolder:  "second run",
		OnEvent: func(e upgrade.Event) {
			events = append(events, e)
			t.Logf("event %-14s %-15s %s %s %s", e.Kind, e.Step.Kind, e.Step.Node, e.Condition, e.Detail)
		},
	}
	var locked *upgrade.LockedError
	lockedTries := 0
	var res *upgrade.Result
	for {
		res, err = upgrade.Run(ctx, cfg)
		var le *upgrade.LockedError
		if !errors.As(err, &le) {
			break
		}
		if locked == nil {
			locked = le
			t.Logf("second run: %v", le)
		}
		lockedTries++
		if ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Second)
	}
	var lockWait time.Duration
	resumed := false
	for _, e := range events {
		if e.Kind == upgrade.EventLocked {
			lockWait = e.Time.Sub(killed)
		}
		if e.Kind == upgrade.EventSwapRecord && e.Step.Node == victim && strings.HasPrefix(e.Detail, "resuming the swap of "+victim) {
			resumed = true
		}
	}
	wall := time.Since(start)
	stopTraffic()
	ws := w.Stop()
	if err != nil {
		t.Fatalf("second run: %v", err)
	}

	if locked == nil {
		t.Error("the second run never found the dead child's lock")
	} else if !strings.Contains(locked.Holder.Holder, fmt.Sprintf("pid %d", child.Process.Pid)) {
		t.Errorf("the lock found names %q, want the dead child (pid %d)", locked.Holder.Holder, child.Process.Pid)
	}
	if !resumed {
		t.Errorf("no swap-record event says the second run resumed the swap of %s", victim)
	}
	if len(res.Steps) == 0 || res.Steps[0].Step.Kind != planner.StepSwapServer || res.Steps[0].Step.Node != victim {
		t.Errorf("the second run's first step is %v, want the resumed swap of %s", res.Steps[:min(1, len(res.Steps))], victim)
	}
	mu.Lock()
	count := map[string]int{}
	for _, s := range swaps {
		f := strings.Fields(s)
		if f[0] != "second" {
			t.Errorf("swap %q asked by the child, which was killed at its first server swap", s)
		}
		count[f[1]]++
	}
	for _, n := range cl.Nodes() {
		if count[n] != 1 {
			t.Errorf("%s was swapped %d times, want once (swaps asked: %v)", n, count[n], swaps)
		}
	}
	swapList := slices.Clone(swaps)
	mu.Unlock()
	if rec, err := upgrade.ReadSwapRecord(ctx, consul, ""); err != nil || rec != nil {
		t.Errorf("after the run the swap record is %+v (err %v), want none", rec, err)
	}
	lost, err := cl.MissingWrites(ctx, client, "writer", ws.Acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 0 {
		t.Errorf("%d acknowledged writes lost, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
	members, err := cl.Members(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	alive := 0
	for _, m := range members {
		if m.Status == 1 {
			alive++
			if m.Build() != to {
				t.Errorf("%s ends on %s, want %s", m.Name, m.Build(), to)
			}
		}
	}
	if alive != 4 {
		t.Errorf("%d members alive at the end, want 3 servers and a client", alive)
	}
	scenario.WaitReady(t, ctx, upgrade.Config{Consul: consul}, 3)
	g.mu.Lock()
	for _, v := range g.violations {
		t.Errorf("a run stopped a second server: %s", v)
	}
	g.mu.Unlock()
	t.Logf("FIGURES orchestrator SIGKILLed between stop and start %s -> %s: wall %s; %s stopped (%s) and left down; the second run found the lock %d time(s) and took it %s after the kill, resumed the swap of %s; swaps asked %v; second run steps %d; traffic %s; writer acked %d, failed %d, lost %d",
		from, to, wall.Round(100*time.Millisecond), victim, mode, lockedTries, lockWait.Round(100*time.Millisecond), victim, swapList, len(res.Steps), tr.Report, len(ws.Acked), ws.Failed, len(lost))
}

func TestASecondRunResumesTheSwapOfAServerLeftStoppedByAKilledOrchestrator_1_12_9_to_1_13_9(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	orchestratorKillStopped(t, "1.12.9", "1.13.9")
}

func TestASecondRunResumesTheSwapOfAServerLeftStoppedByAKilledOrchestrator_1_15_4_to_1_16_1(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	orchestratorKillStopped(t, "1.15.4", "1.16.1")
}
