package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// syncBuffer is a bytes.Buffer that a test reads while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// scrape returns the text of a GET of url.
func scrape(t *testing.T, url string) string {
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
	return string(body)
}

// sample is the value of the line `series value` of a scrape (-1 when
// there is none).
func sample(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// Outside a synctest bubble (a listening socket would hold the bubble's
// clock), on a simulated cluster whose restarts and stabilization take
// milliseconds.
func TestApplyServesItsMetricsAndTheirLastValuesForTheLingerUntilCtrlC(t *testing.T) {
	sim := newSim(3, 1, consultest.WithRestartDelay(10*time.Millisecond), consultest.WithStabilizationTime(50*time.Millisecond))
	withSim(t, sim)
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.json")
	if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-out", planFile); code != exitOK {
		t.Fatalf("plan: exit %d: %s", code, stderr)
	}
	ctx, ctrlC := context.WithCancel(t.Context())
	defer ctrlC()
	var out, errb syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, simArgs([]string{"apply", "-plan", planFile, "-yes", "-snapshot-dir", filepath.Join(dir, "snaps"),
			"-metrics-addr", "127.0.0.1:0", "-metrics-linger", "10m", "-probe-writes", "probe/apply", "-probe-interval", "5ms"}), &out, &errb)
	}()
	lingering := regexp.MustCompile(`serving its last metrics at (http://127\.0\.0\.1:\d+/metrics) for 10m0s \(Ctrl-C ends this\)`)
	var url string
	for deadline := time.Now().Add(time.Minute); url == "" && time.Now().Before(deadline); {
		select {
		case code := <-exited:
			t.Fatalf("apply exited %d before lingering\n%s\n%s", code, out.String(), errb.String())
		case <-time.After(20 * time.Millisecond):
		}
		if m := lingering.FindStringSubmatch(errb.String()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		t.Fatalf("apply never said it lingers:\n%s\n%s", out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "serving metrics at "+url+"\n") {
		t.Errorf("apply did not say where it serves at its start:\n%s", errb.String())
	}
	if !strings.Contains(out.String(), "Done: every agent runs 1.13.9") {
		t.Errorf("apply did not finish the run before lingering:\n%s", out.String())
	}
	text := scrape(t, url)
	for series, want := range map[string]float64{
		`consul_upgrade_run_state{state="done"}`:            1,
		`consul_upgrade_steps_done`:                         5,
		`consul_upgrade_steps_planned`:                      5,
		`consul_upgrade_nodes_touched_total{role="server"}`: 3,
		`consul_upgrade_nodes_touched_total{role="client"}`: 1,
		`consul_upgrade_probe_writes_failed_total`:          0,
		`consul_upgrade_halts_total{type="gate"}`:           0,
	} {
		if got := sample(text, series); got != want {
			t.Errorf("%s = %g, want %g", series, got, want)
		}
	}
	writes := sample(text, "consul_upgrade_probe_writes_total")
	if writes < 1 {
		t.Errorf("probe_writes_total = %g, want the writes made during the run", writes)
	}
	if !strings.Contains(errb.String(), "probe writes to probe/apply: ") {
		t.Errorf("apply did not print the probe's figures:\n%s", errb.String())
	}
	if v, found := sim.KV("probe/apply"); found {
		t.Errorf("the probe key is left in the KV store: %q", v)
	}

	ctrlC() // Ctrl-C ends the linger at once, and the exit code stays the run's
	select {
	case code := <-exited:
		if code != exitOK {
			t.Errorf("apply exited %d after Ctrl-C in the linger, want the run's 0", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("apply did not end at Ctrl-C during the linger")
	}
	if _, err := http.Get(url); err == nil {
		t.Errorf("%s still answers after apply returned", url)
	}
}

func TestBadMetricsAndProbeFlagsExitWith2BeforeAnythingIsTouched(t *testing.T) {
	sim := newSim(3, 0, consultest.WithRestartDelay(10*time.Millisecond), consultest.WithStabilizationTime(50*time.Millisecond))
	fake := withSim(t, sim)
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.json")
	if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-out", planFile); code != exitOK {
		t.Fatalf("plan: exit %d: %s", code, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-metrics-linger", "1m"}, "-metrics-linger needs -metrics-addr"},
		{[]string{"-metrics-addr", ":0", "-metrics-linger", "-1s"}, "-metrics-linger -1s is negative"},
		{[]string{"-metrics-addr", "127.0.0.1:notaport"}, "-metrics-addr 127.0.0.1:notaport: "},
		{[]string{"-probe-writes", "k", "-probe-interval", "0s"}, "-probe-interval 0s must be positive"},
	} {
		args := append([]string{"apply", "-plan", planFile, "-yes"}, tc.args...)
		code, _, stderr := cli(t, args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("apply %s: exit %d, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	if s := swaps(fake); len(s) != 0 {
		t.Errorf("refused applies swapped %v", s)
	}
	if held := sim.HeldLocks(); len(held) != 0 {
		t.Errorf("refused applies left locks: %v", held)
	}
}
