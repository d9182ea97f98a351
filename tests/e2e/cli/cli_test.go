package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// TestCLIUpgradesARealCluster drives the commands, as an operator would,
// against real Consul: 3 servers and 1 client on 1.12.9 (tests/rig/consul,
// local transport), plan -out to 1.13.9, apply -step twice, status, then
// apply -yes to the end; plan and the last status are given a closed port
// before the agent's address, and fail over to it. With
// CONSUL_UPGRADE_TRANSCRIPT=FILE it writes the commands and their output to
// FILE (the session in tests/README.md). On the way, a third -step given a gate
// timeout it cannot meet halts after it touched a server: exit 1, the JSON
// error object carries the record, status shows the unfinished swap, and
// the last apply gates it before it goes on.
func TestCLIUpgradesARealCluster(t *testing.T) {
	cl := consulrig.Start(t, consulrig.Options{Servers: 3, Clients: 1, Version: "1.12.9"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	addr := cl.HTTPAddr("c1")
	waitHealthy(t, ctx, addr)

	dir := t.TempDir()
	inv := relayInventory(t, cl, dir)
	planFile, snaps := filepath.Join(dir, "plan.json"), filepath.Join(dir, "snapshots")
	var transcript bytes.Buffer
	var lastErr string // the stderr of the last command
	sh := func(want int, args ...string) string {
		t.Helper()
		r := consulUpgrade(t, ctx, dir+"/", args...)
		fmt.Fprintf(&transcript, "$ consul-upgrade %s\n%s%s[exit %d, %s]\n\n", r.shown, r.out, r.errs, r.code, r.wall.Round(100*time.Millisecond))
		lastErr = r.errs
		if r.code != want {
			t.Fatalf("consul-upgrade %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.shown, r.code, want, r.out, r.errs)
		}
		return r.out
	}
	defer func() {
		t.Logf("session:\n%s", transcript.String())
		if f := os.Getenv("CONSUL_UPGRADE_TRANSCRIPT"); f != "" {
			os.WriteFile(f, transcript.Bytes(), 0o644)
		}
	}()

	// plan is given a closed port first: it fails over to the live agent
	// and says so.
	const closed = "127.0.0.1:1"
	out := sh(exitOK, "plan", "-http-addr", closed+","+addr, "-to", "1.13.9", "-out", planFile)
	if !strings.Contains(out, "Upgrade plan to 1.13.9") {
		t.Errorf("plan printed no plan:\n%s", out)
	}
	if want := fmt.Sprintf("consul-upgrade plan: -http-addr: consul agent %s is in use now, in place of %s (%s gave no answer)", addr, closed, closed); !strings.Contains(lastErr, want) {
		t.Errorf("plan's stderr lacks %q:\n%s", want, lastErr)
	}
	p, err := readPlan(planFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps) != 5 {
		t.Fatalf("plan has %d steps, want snapshot, 3 servers, 1 client wave", len(p.Steps))
	}
	leader := p.Steps[3].Node

	out = sh(exitOK, "apply", "-inventory", inv, "-http-addr", addr, "-plan", planFile, "-snapshot-dir", snaps, "-step")
	if !strings.Contains(out, "step 1 of 5: snapshot") {
		t.Errorf("first -step did not take the snapshot:\n%s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(snaps, "consul-dc1-1.12.9-*.snap")); len(m) != 1 {
		t.Errorf("snapshots after the first step: %v, want one of 1.12.9", m)
	}
	out = sh(exitOK, "apply", "-inventory", inv, "-http-addr", addr, "-plan", planFile, "-snapshot-dir", snaps, "-step")
	if !strings.Contains(out, "step 2 of 5: swap-server") {
		t.Errorf("second -step did not swap a server:\n%s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(snaps, "*.snap")); len(m) != 1 {
		t.Errorf("the second step took another snapshot: %v", m)
	}
	// The local transport reports the stop, then the start, of the server.
	if swapped := p.Steps[1].Node; !regexp.MustCompile(`(?s)    ` + swapped + ` stopped \(terminate\), [^\n]* into the step\n    ` + swapped + ` started on 1\.13\.9, `).MatchString(out) {
		t.Errorf("second -step does not say when %s stopped and started:\n%s", swapped, out)
	}

	// A gate that cannot pass in 1s (a swapped server is stable after
	// 10s): the run halts after it touched the server, so exit 1, and the
	// JSON error object carries the record.
	third := p.Steps[2].Node
	out = sh(exitHalted, "apply", "-inventory", inv, "-http-addr", addr, "-plan", planFile, "-snapshot-dir", snaps, "-step", "-gate-timeout", "1s", "-output", "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last struct {
		Event     string          `json:"event"`
		ErrorType string          `json:"error_type"`
		ExitCode  int             `json:"exit_code"`
		Touched   upgrade.Touched `json:"touched"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("the last line of -output json: %v\n%s", err, out)
	}
	if last.Event != "halted" || last.ErrorType != "*upgrade.HaltError" || last.ExitCode != exitHalted || len(last.Touched) != 1 {
		t.Errorf("halt: %+v, want halted, *upgrade.HaltError, exit 1, one node touched", last)
	} else if tc := last.Touched[0]; tc.Node != third || !tc.Stopped || !tc.Started || tc.Gated || tc.StopUncertain {
		t.Errorf("touched %+v, want %s stopped and started (for sure), not gated", tc, third)
	}
	if !strings.Contains(lastErr, "touched by this run: "+third) {
		t.Errorf("the halt's message does not name %s:\n%s", third, lastErr)
	}
	out = sh(exitOK, "status", "-http-addr", addr, "-plan", planFile)
	if !strings.Contains(out, "Unfinished swap: "+third+" 1.12.9 -> 1.13.9") {
		t.Errorf("status after the halt does not show %s's unfinished swap:\n%s", third, out)
	}

	for _, want := range []string{"Lock: free", "Backup: taken on 1.12.9"} { // where it stands waits for the server's health
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	// The next apply gates the swap the halted run left, then goes on.
	out = sh(exitOK, "apply", "-inventory", inv, "-http-addr", addr, "-plan", planFile, "-snapshot-dir", snaps, "-yes")
	for _, want := range []string{"the gate of swap-server " + third + " in dc1 1.12.9 -> 1.13.9 passed in ", "step 4 of 5: swap-server " + leader, "step 5 of 5: swap-clients", "Done: every agent runs 1.13.9"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply -yes lacks %q:\n%s", want, out)
		}
	}
	consul, err := upgrade.ConnectAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := upgrade.Discover(ctx, consul)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Servers {
		if s.Version != "1.13.9" {
			t.Errorf("server %s runs %s after apply", s.Name, s.Version)
		}
	}
	for _, cc := range c.Clients {
		if cc.Version != "1.13.9" {
			t.Errorf("client %s runs %s after apply", cc.Name, cc.Version)
		}
	}
	// This cluster's leaders cannot date their oldest log entry (the
	// bootstrap entries carry no time, and no snapshot compacted them
	// away): they report raft.leader.oldestLogAge 0, or no gauge yet, or
	// Consul answers /v1/agent/metrics with a NaN error for a while after
	// the start. Every apply says the pre-flight did not check; none warns
	// of a log "0s old", as one once did on 0.
	checks := 0
	for _, line := range strings.Split(transcript.String(), "\n") {
		if !strings.Contains(line, "leader-log-covers-restart") {
			continue
		}
		checks++
		if !strings.Contains(line, "leader-log-covers-restart: not checked: the leader ") {
			t.Errorf("an apply's pre-flight says %q; want not checked on this fresh cluster", line)
		}
	}
	if checks < 3 {
		t.Errorf("%d pre-flight lines for leader-log-covers-restart in the session, want one per apply", checks)
	}

	out = sh(exitOK, "status", "-http-addr", closed+","+addr, "-plan", planFile)
	if !strings.Contains(out, "5 of 5 step(s) done") || !strings.Contains(lastErr, "consul agent "+addr+" is in use now") {
		t.Errorf("status through %s,%s: stdout\n%s\nstderr\n%s", closed, addr, out, lastErr)
	}
}
