package cli_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
)

// lockedBuffer is an output the test reads while the command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// scrapeText is one scrape of the command's /metrics, in the text format.
type scrapeText string

// value is the value of the sample `series value` (found false without
// one). series is written as the text format writes it, labels sorted.
func (s scrapeText) value(series string) (float64, bool) {
	for _, line := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

var (
	stepInfo = regexp.MustCompile(`(?m)^consul_upgrade_step_info\{datacenter="dc1",from="([^"]*)",kind="([^"]+)",node="([^"]*)",to="([^"]*)"\} 1$`)
	gateCond = regexp.MustCompile(`(?m)^consul_upgrade_gate_condition_info\{condition="([^"]+)"\} 1$`)
)

// TestApplyServesMetricsThatFollowARealRun runs apply -yes with
// -metrics-addr on real agents (3 servers and 1 client, 1.12.9 -> 1.13.9)
// and scrapes /metrics every 250ms while the run lasts, then once more in
// the linger, then ends the linger with SIGINT. During the run: steps_done
// only grows, step_info names each server while it is swapped, in the
// plan's order, and a gate waits (gate_wait_seconds > 0 beside a
// gate_condition_info). At the end: done, 5 of 5 steps, 4 nodes touched (3
// servers, 1 client), no halt, and the probe writer's counts are those
// apply prints.
func TestApplyServesMetricsThatFollowARealRun(t *testing.T) {
	cl := consulrig.Start(t, consulrig.Options{Servers: 3, Clients: 1, Version: "1.12.9"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	addr := cl.HTTPAddr("c1")
	waitHealthy(t, ctx, addr)

	dir := t.TempDir()
	inv := relayInventory(t, cl, dir)
	planFile := filepath.Join(dir, "plan.json")
	if r := consulUpgrade(t, ctx, dir+"/", "plan", "-http-addr", addr, "-to", "1.13.9", "-out", planFile); r.code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", r.code, r.out, r.errs)
	}
	p, err := readPlan(planFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps) != 5 {
		t.Fatalf("plan has %d steps, want snapshot, 3 servers, 1 client wave", len(p.Steps))
	}
	var planServers []string
	for _, s := range p.Steps[1:4] {
		planServers = append(planServers, s.Node)
	}

	cmd := exec.CommandContext(ctx, binary, "apply", "-yes", "-inventory", inv, "-http-addr", addr, "-plan", planFile,
		"-snapshot-dir", filepath.Join(dir, "snapshots"), "-metrics-addr", "127.0.0.1:0", "-metrics-linger", "5m",
		"-probe-writes", "consul-upgrade-e2e/probe", "-probe-interval", "100ms")
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	reaped := false
	defer func() {
		if !reaped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf(format+"\nstdout:\n%s\nstderr:\n%s", append(a, stdout.String(), stderr.String())...)
	}

	serving := regexp.MustCompile(`serving metrics at (http://127\.0\.0\.1:\d+/metrics)\n`)
	lingering := "serving its last metrics at "
	var url string
	var scrapes []scrapeText
	var servers []string    // step_info's node at each swap-server, each change once
	var conditions []string // gate conditions seen
	lastDone, maxWait := 0.0, 0.0
	var during time.Duration
	for {
		select {
		case err := <-exited:
			reaped = true
			fail("apply exited (%v) before it lingered", err)
		case <-time.After(250 * time.Millisecond):
		}
		if url == "" {
			if m := serving.FindStringSubmatch(stderr.String()); m != nil {
				url = m[1]
			}
			continue
		}
		ended := strings.Contains(stderr.String(), lingering) // checked before the scrape: this scrape is after the run
		s := scrape(t, url)
		scrapes = append(scrapes, s)
		if ended {
			during = time.Since(start)
			break
		}
		done, ok := s.value("consul_upgrade_steps_done")
		if !ok {
			fail("a scrape during the run has no steps_done:\n%s", s)
		}
		if done < lastDone {
			t.Errorf("steps_done went back from %g to %g", lastDone, done)
		}
		lastDone = done
		if m := stepInfo.FindStringSubmatch(string(s)); m != nil && m[2] == "swap-server" {
			if m[1] != "1.12.9" || m[4] != "1.13.9" {
				t.Errorf("step_info of a server swap: from %q to %q, want 1.12.9 to 1.13.9", m[1], m[4])
			}
			if len(servers) == 0 || servers[len(servers)-1] != m[3] {
				servers = append(servers, m[3])
			}
		}
		if m := gateCond.FindStringSubmatch(string(s)); m != nil {
			if !slices.Contains(conditions, m[1]) {
				conditions = append(conditions, m[1])
			}
			w, _ := s.value("consul_upgrade_gate_wait_seconds")
			maxWait = max(maxWait, w)
		}
	}
	t.Logf("%d scrapes in %s; servers named by step_info: %v; gate conditions waited on: %v; longest gate wait seen: %.1fs",
		len(scrapes), during.Round(time.Second), servers, conditions, maxWait)

	if !slices.Equal(servers, planServers) {
		t.Errorf("step_info named the servers %v during their swaps, want the plan's order %v", servers, planServers)
	}
	if maxWait <= 0 || !slices.Contains(conditions, "stable") {
		t.Errorf("no gate was seen waiting (longest wait %gs, conditions %v); each server's gate waits 10s for stable", maxWait, conditions)
	}
	if lastDone < 3 {
		t.Errorf("steps_done reached only %g during the run", lastDone)
	}

	final := scrapes[len(scrapes)-1]
	for series, want := range map[string]float64{
		`consul_upgrade_run_state{state="done"}`:                         1,
		`consul_upgrade_run_state{state="running"}`:                      0,
		`consul_upgrade_steps_done`:                                      5,
		`consul_upgrade_steps_planned`:                                   5,
		`consul_upgrade_nodes_touched_total{role="server"}`:              3,
		`consul_upgrade_nodes_touched_total{role="client"}`:              1,
		`consul_upgrade_halts_total{type="gate"}`:                        0,
		`consul_upgrade_halts_total{type="other"}`:                       0,
		`consul_upgrade_step_duration_seconds_count{kind="swap-server"}`: 3,
	} {
		if got, ok := final.value(series); !ok || got != want {
			t.Errorf("after the run %s = %g (found %v), want %g", series, got, ok, want)
		}
	}
	if stepInfo.MatchString(string(final)) {
		t.Errorf("step_info still names a step after the run:\n%s", stepInfo.FindString(string(final)))
	}
	probe := regexp.MustCompile(`probe writes to consul-upgrade-e2e/probe: (\d+), (\d+) failed`).FindStringSubmatch(stderr.String())
	if probe == nil {
		fail("apply printed no probe figures")
	}
	writes, _ := final.value("consul_upgrade_probe_writes_total")
	failed, _ := final.value("consul_upgrade_probe_writes_failed_total")
	if strconv.Itoa(int(writes)) != probe[1] || strconv.Itoa(int(failed)) != probe[2] || writes < 10 {
		t.Errorf("probe metrics %g writes, %g failed; apply printed %s, %s (want the same, and at least 10 writes)", writes, failed, probe[1], probe[2])
	}
	t.Logf("probe writes through c1: %g, %g failed", writes, failed)

	// SIGINT (Ctrl-C) ends the linger; the exit code stays the run's.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		reaped = true
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == exitOK) {
			fail("apply ended with %v after SIGINT in the linger, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		fail("apply did not end at SIGINT during the linger")
	}
	if _, err := http.Get(url); err == nil {
		t.Errorf("%s still answers after apply exited", url)
	}
	if os.Getenv("CONSUL_UPGRADE_E2E_METRICS_DUMP") != "" {
		t.Logf("last scrape:\n%s", final)
	}
}

// scrape GETs url.
func scrape(t *testing.T, url string) scrapeText {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s, %v", url, resp.Status, err)
	}
	return scrapeText(body)
}
