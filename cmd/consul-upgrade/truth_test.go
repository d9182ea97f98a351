package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// shellWords splits a printed command line as a POSIX shell would (plain
// words and '...' quoting, all shellQuote writes).
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	in, quoted := false, false
	for _, r := range line {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			cur.WriteRune(r)
		case r == '\'':
			quoted, in = true, true
		case r == ' ':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case r == '\\':
			t.Fatalf("unexpected backslash in %q", line)
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quoted {
		t.Fatalf("unterminated quote in %q", line)
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// pasted runs a command line the program printed, as an operator pasting
// it would: it must start with consul-upgrade.
func pasted(t *testing.T, line string) (int, string, string) {
	t.Helper()
	w := shellWords(t, strings.TrimSpace(line))
	if len(w) < 2 || w[0] != "consul-upgrade" {
		t.Fatalf("printed command %q does not start with consul-upgrade", line)
	}
	var out, errb bytes.Buffer
	code := run(t.Context(), w[1:], &out, &errb)
	return code, out.String(), errb.String()
}

// lineAfter returns the line that follows the first line containing
// marker, trimmed.
func lineAfter(t *testing.T, text, marker string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.Contains(l, marker) && i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1])
		}
	}
	t.Fatalf("no line after %q in:\n%s", marker, text)
	return ""
}

// lastJSON decodes the last line of -output json.
func lastJSON(t *testing.T, out string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("last line of -output json %q: %v\nall:\n%s", lines[len(lines)-1], err, out)
	}
	return m
}

func savePlan(t *testing.T, args ...string) string {
	t.Helper()
	planFile := filepath.Join(t.TempDir(), "plan.json")
	if code, _, stderr := cli(t, append([]string{"plan", "-to", "1.13.9", "-out", planFile}, args...)...); code != exitOK {
		t.Fatalf("plan: exit %d: %s", code, stderr)
	}
	now := time.Now() // the bubble's clock, which the records' times come from
	if err := os.Chtimes(planFile, now, now); err != nil {
		t.Fatal(err)
	}
	return planFile
}

// The case: apply -step swapped a server, then the cluster did not
// match the plan any more. The old code exited 3 and said "nothing was
// touched"; the record says s2 was touched, so it is a halt (1) that names
// s2 and how far it got.
func TestApplyStepThatSwappedAServerThenDivergedExits1AndSaysWhatItTouched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		planFile := savePlan(t, "-no-snapshot")
		mirror := fake.OnSwap
		fake.OnSwap = func(req transport.SwapRequest) {
			mirror(req)
			if req.Node == "s2" {
				mustSim(t, sim.SetLeader("s3")) // the plan swaps s3 next, as a follower; now it leads
			}
		}
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-step")
		if code != exitHalted {
			t.Fatalf("exit %d, want 1 (a touch, then a halt)\n%s\n%s", code, out, stderr)
		}
		if strings.Contains(stderr+out, "nothing was touched") || strings.Contains(out, "Nothing in the cluster was touched") {
			t.Errorf("says nothing was touched after swapping s2:\n%s\n%s", out, stderr)
		}
		for _, want := range []string{"Halted after step 1 of 3", "This run touched:\n  s2 (swap-server 1.12.9 -> 1.13.9): stopped, started on 1.13.9, gate passed", "Plan again: consul-upgrade plan -to 1.13.9"} {
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(stderr, "diverged from the approved plan") || !strings.Contains(stderr, "touched by this run: s2") {
			t.Errorf("stderr %q does not give the divergence and the touch", stderr)
		}
	})
}

func mustSim(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}

// A lock held by another run when the plan stands at step 4: the old code
// printed "Halted at step 1 of 5".
func TestALockConflictIsReportedBeforeTheStepThePlanStandsAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 1)
		fake := withSim(t, sim)
		planFile := savePlan(t)
		for i := 0; i < 3; i++ {
			if code, out, stderr := cli(t, "apply", "-plan", planFile, "-step"); code != exitOK {
				t.Fatalf("apply -step #%d: exit %d\n%s\n%s", i+1, code, out, stderr)
			}
		}
		consul, _ := dial("")
		lock, err := consul.(upgrade.Locker).Lock(t.Context(), upgrade.DefaultLockKey, upgrade.LockHolder{Holder: "ops on bastion", Target: "1.13.9", Since: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Release(context.WithoutCancel(t.Context()))
		before := len(swaps(fake))
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-step")
		if code != exitUsage || !strings.Contains(stderr, "ops on bastion") {
			t.Fatalf("exit %d, stderr %q; want 2 naming the holder", code, stderr)
		}
		if !strings.Contains(out, "Refused before step 4 of 5") || !strings.Contains(out, "Nothing in the cluster was touched by this run.") || strings.Contains(out, "step 1 of 5") {
			t.Errorf("stdout:\n%s\nwant the refusal placed before step 4 of 5, and nothing touched", out)
		}
		if len(swaps(fake)) != before {
			t.Errorf("a refused apply swapped %v", swaps(fake)[before:])
		}
	})
}

// A plan made after an earlier apply took the hop's backup: status counts
// its snapshot step as done, and says why (the old code counted "1 of 5
// step(s) done" before any step of that plan, with no word of the backup).
func TestStatusSaysWhyASnapshotStepCountsAsDoneBeforeAnyStepOfThePlan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 1)
		withSim(t, sim)
		first := savePlan(t)
		if code, out, stderr := cli(t, "apply", "-plan", first, "-step"); code != exitOK || !strings.Contains(out, "snapshot") {
			t.Fatalf("apply -step: exit %d\n%s\n%s", code, out, stderr)
		}
		time.Sleep(time.Minute)
		second := savePlan(t) // reviewed again: it still lists the snapshot
		if code, out, _ := cli(t, "status", "-plan", first); code != exitOK || strings.Contains(out, "counts as done") {
			t.Errorf("status of the plan whose apply took the backup: exit %d, a note it needs not:\n%s", code, out)
		}
		code, out, stderr := cli(t, "status", "-plan", second)
		if code != exitOK {
			t.Fatalf("status: exit %d\n%s", code, stderr)
		}
		for _, want := range []string{"1 of 5 step(s) done", "step 1, the snapshot before leaving 1.12.9, counts as done: the backup", "recorded 1m0s ago, before this plan was saved, covers it", "apply does not take it again"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
	})
}

// A gate of a swap an earlier run left unfinished has no step start: the
// old code printed 2562047h47m16.854775807s "into the step" (the time
// since a zero time).
func TestAResumedGateSaysHowLongItWaitedNotTheTimeSinceYearOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		withSim(t, sim)
		planFile := savePlan(t, "-no-snapshot")
		// An earlier run swapped s2 and died before its gate passed.
		mustSim(t, sim.Swap("s2", "1.13.9", true))
		time.Sleep(5 * time.Second) // s2 is up again (the restart takes 2s)
		mustSim(t, sim.SetNeverHealthy("s2", true))
		go func() { // autopilot calls it healthy a while into the gate
			time.Sleep(20 * time.Second)
			mustSim(t, sim.SetNeverHealthy("s2", false))
		}()
		p, err := readPlan(planFile)
		if err != nil || p.Steps[0].Node != "s2" {
			t.Fatalf("plan %v, %v; want s2 first", p, err)
		}
		rec := upgrade.SwapRecord{Step: p.Steps[0], Node: "s2", Role: transport.RoleServer, Datacenter: "dc1", From: "1.12.9", To: "1.13.9", Holder: "a run that died", Started: time.Now().UTC()}
		b, _ := json.Marshal(rec)
		sim.PutKV("consul-upgrade/swap", b)
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-step")
		if code != exitOK {
			t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
		}
		if strings.Contains(out, "2562047h") {
			t.Errorf("a duration since the zero time:\n%s", out)
		}
		if !regexp.MustCompile(`waiting on \S+ for s2 \(\d[\d.]*m?s into its gate\)`).MatchString(out) {
			t.Errorf("no gate-waiting line for s2 counted from its gate:\n%s", out)
		}
		if !strings.Contains(out, "the gate of swap-server s2 in dc1 1.12.9 -> 1.13.9 passed in ") {
			t.Errorf("the resumed gate's end is not said:\n%s", out)
		}
	})
}

func TestApplyPrintsEachStopAndStartAndWhereTheSnapshotWent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		withSim(t, sim)
		planFile := savePlan(t)
		snaps := filepath.Join(t.TempDir(), "snaps")
		_, out, _ := cli(t, "apply", "-plan", planFile, "-step", "-snapshot-dir", snaps)
		if !regexp.MustCompile(`saved to ` + regexp.QuoteMeta(snaps) + `/consul-dc1-1\.12\.9-\S+\.snap`).MatchString(out) {
			t.Errorf("the snapshot's file is not named:\n%s", out)
		}
		// Each server swap waits the cluster's 10s of stabilization at
		// least: the old estimate, the snapshot's few milliseconds times
		// the steps left, said about 0s.
		if !strings.Contains(out, "at least 30s left for 3 step(s)") {
			t.Errorf("the estimate after the snapshot does not count the 3 server swaps' stabilization:\n%s", out)
		}
		_, out, _ = cli(t, "apply", "-plan", planFile, "-step", "-snapshot-dir", snaps)
		stopped := strings.Index(out, "    s2 stopped (terminate), ")
		started := strings.Index(out, "    s2 started on 1.13.9, ")
		if stopped < 0 || started < stopped || started > strings.Index(out, "done in") {
			t.Errorf("want s2's stop, then its start, before the step is done:\n%s", out)
		}
		_, out, _ = cli(t, "apply", "-plan", planFile, "-step", "-snapshot-dir", snaps, "-output", "json")
		var kinds []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && (m["event"] == "node-stopped" || m["event"] == "node-started") {
				kinds = append(kinds, m["event"].(string)+" "+m["node"].(string))
			}
		}
		if strings.Join(kinds, ",") != "node-stopped s3,node-started s3" {
			t.Errorf("json node events %v, want s3 stopped then started", kinds)
		}
	})
}

func TestElapsedTimesLeaveOutTheTimeAtThePrompt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		withSim(t, sim)
		planFile := savePlan(t, "-no-snapshot")
		stdinIsTerminal = func() bool { return true }
		pr, pw := io.Pipe()
		oldIn := stdin
		stdin = pr
		defer func() { stdin = oldIn }()
		go func() {
			time.Sleep(10 * time.Minute) // the operator reads the step for ten minutes
			pw.Write([]byte("y\n"))
			time.Sleep(time.Second)
			pw.Write([]byte("n\n"))
		}()
		code, out, stderr := cli(t, "apply", "-plan", planFile)
		pw.Close()
		if code != exitOK { // one approved step was carried out
			t.Errorf("exit %d\n%s\n%s", code, out, stderr)
		}
		m := regexp.MustCompile(`\[([^\]]+)\] step 1 of 3`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no step line:\n%s", out)
		}
		if d, err := time.ParseDuration(m[1]); err != nil || d >= time.Minute {
			t.Errorf("step 1 starts at [%s] elapsed; the 10 minutes at the prompt are counted", m[1])
		}
		m = regexp.MustCompile(`done in \S+ \(elapsed ([^;)]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no done line:\n%s", out)
		}
		if d, err := time.ParseDuration(m[1]); err != nil || d >= 2*time.Minute {
			t.Errorf("elapsed %s after step 1 counts the prompt", m[1])
		}
	})
}

func TestHelpGivesTheExitCodeTableDerivedFromTheRecord(t *testing.T) {
	_, out, _ := cli(t, "help")
	for _, want := range []string{"Exit codes:", "1  halted: the run touched the cluster and then stopped on an error,\n     whatever the error", "2  usage or refused, and nothing in the cluster was touched", "3  diverged or stale, and nothing in the cluster was touched", "touched (the record; [] when nothing was touched)", "version"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}

func TestErrorsAreOneJSONObjectOnStdoutUnderOutputJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		planFile := savePlan(t, "-no-snapshot")

		// A usage error of plan.
		code, out, _ := cli(t, "plan", "-to", "latest", "-output", "json")
		m := lastJSON(t, out)
		if code != exitUsage || m["event"] != "usage" || m["exit_code"] != float64(2) || m["error"] == "" || m["command"] != "plan" {
			t.Errorf("plan: exit %d, %v", code, m)
		}
		if tc, ok := m["touched"].([]any); !ok || len(tc) != 0 {
			t.Errorf("plan's error: touched %v, want []", m["touched"])
		}

		// A halt after a touch: the record is in the object.
		fake.ComeBackOld("s2")
		code, out, _ = cli(t, "apply", "-plan", planFile, "-yes", "-gate-timeout", "1m", "-output", "json")
		m = lastJSON(t, out)
		if code != exitHalted || m["event"] != "halted" || m["error_type"] != "*upgrade.HaltError" || m["cause_type"] != "*upgrade.GateError" || m["exit_code"] != float64(1) {
			t.Errorf("apply: exit %d, last object %v", code, m)
		}
		touched, _ := m["touched"].([]any)
		if len(touched) != 1 || touched[0].(map[string]any)["node"] != "s2" || touched[0].(map[string]any)["started"] != true || touched[0].(map[string]any)["gated"] != false {
			t.Errorf("touched %v, want s2 started and not gated", m["touched"])
		}

		// status through an agent that does not answer.
		sim.SetUnreachable(true)
		code, out, _ = cli(t, "status", "-output", "json")
		sim.SetUnreachable(false)
		m = lastJSON(t, out)
		if code != exitHalted || m["event"] != "halted" || m["command"] != "status" || !strings.Contains(m["error"].(string), "could not be read") {
			t.Errorf("status: exit %d, %v", code, m)
		}
	})
}

func TestAnAddressWithoutAPortMeansPort8500(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		withSim(t, sim)
		var dialled []string
		inner := dial
		dial = func(a string) (upgrade.Consul, error) { dialled = append(dialled, a); return inner(a) }
		code, _, stderr := cli(t, "status", "-http-addr", "10.0.0.1,http://10.0.0.2,[::1],https://consul.example")
		if code != exitOK {
			t.Fatalf("status: exit %d: %s", code, stderr)
		}
		if want := "10.0.0.1:8500,http://10.0.0.2:8500,[::1]:8500,https://consul.example"; strings.Join(dialled, ",") != want {
			t.Errorf("dialled %v, want %s (https keeps its 443)", dialled, want)
		}
		// $CONSUL_HTTP_ADDR is read the same way (it was left to consul/api,
		// which took a port-less address to port 80).
		dialled = nil
		t.Setenv("CONSUL_HTTP_ADDR", "10.0.0.3")
		if code, _, stderr := cli(t, "status"); code != exitOK || strings.Join(dialled, ",") != "10.0.0.3:8500" {
			t.Errorf("status with CONSUL_HTTP_ADDR=10.0.0.3: exit %d (%s), dialled %v, want 10.0.0.3:8500", code, stderr, dialled)
		}
		if _, err := parseAddrs("-http-addr", "10.0.0.1,10.0.0.1:8500"); err == nil || !strings.Contains(err.Error(), "listed twice") {
			t.Errorf("10.0.0.1 and 10.0.0.1:8500 are the same agent: %v", err)
		}
	})
}

func TestVersionPrintsTheModuleVersionAndTheGoVersion(t *testing.T) {
	old := readBuildInfo
	readBuildInfo = func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: runtime.Version(), Main: debug.Module{Path: "github.com/seed-e5e14ead/consul-upgrade", Version: "v0.4.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "c103338abcdef0123456789"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	defer func() { readBuildInfo = old }()
	code, out, _ := cli(t, "version")
	if code != exitOK || !strings.Contains(out, "consul-upgrade v0.4.0 (commit c103338abcde, with uncommitted changes)") || !strings.Contains(out, "built with "+runtime.Version()) {
		t.Errorf("version: exit %d, %q", code, out)
	}
	code, out, _ = cli(t, "version", "-output", "json")
	var v buildVersion
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil || v.Version != "v0.4.0" || v.Go != runtime.Version() || !v.Modified {
		t.Errorf("version -output json: exit %d, %q", code, out)
	}
	readBuildInfo = old
	if code, out, _ := cli(t, "--version"); code != exitOK || !strings.HasPrefix(out, "consul-upgrade ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

// Every command the program suggests runs as printed, and carries the
// flags given: the plan's apply line, apply -step's next step, and the
// re-plan after a divergence.
func TestTheSuggestedCommandsRunAsPrinted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(4, 0)
		withSim(t, sim)
		dir := t.TempDir()
		planFile, inv := filepath.Join(dir, "my plan.json"), filepath.Join(dir, "inventory.json")
		os.WriteFile(inv, []byte(`{"transport": "exec", "exec": {"swap": ["true"]}}`), 0o644)
		code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-http-addr", "10.0.0.1", "-feature", "Envoy=no", "-no-snapshot", "-inventory", inv, "-out", planFile)
		if code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		apply := lineAfter(t, stderr, "Review it, then apply it one step at a time:")
		for _, want := range []string{"-plan '" + planFile + "'", "-inventory " + inv, "-http-addr 10.0.0.1", "-feature Envoy=no", "-step"} {
			if !strings.Contains(apply, want) {
				t.Errorf("suggested %q lacks %q", apply, want)
			}
		}
		code, out, stderr := pasted(t, apply+" -server-http-port 0 -snapshot-dir "+dir)
		if code != exitOK || !strings.Contains(out, "step 1 of 4: swap-server s2") {
			t.Fatalf("the suggested apply: exit %d\n%s\n%s", code, out, stderr)
		}
		next := lineAfter(t, out, "Run it with:")
		code, out, stderr = pasted(t, next)
		if code != exitOK || !strings.Contains(out, "step 2 of 4: swap-server s3") {
			t.Fatalf("the suggested next step %q: exit %d\n%s\n%s", next, code, out, stderr)
		}
		// The cluster moves away from the plan (s4, next as a follower,
		// now leads): the re-plan line runs too.
		mustSim(t, sim.SetLeader("s4"))
		code, out, _ = pasted(t, lineAfter(t, out, "Run it with:"))
		if code != exitDiverged {
			t.Fatalf("apply on a diverged cluster: exit %d\n%s", code, out)
		}
		replan := strings.TrimPrefix(lineAfter(t, out, "Nothing in the cluster was touched by this run."), "Plan again: ")
		for _, want := range []string{"-to 1.13.9", "-http-addr 10.0.0.1", "-feature Envoy=no", "-no-snapshot", "-out '" + planFile + "'"} {
			if !strings.Contains(replan, want) {
				t.Errorf("re-plan %q lacks %q", replan, want)
			}
		}
		if code, _, stderr := pasted(t, replan); code != exitOK {
			t.Errorf("the suggested re-plan %q: exit %d: %s", replan, code, stderr)
		}
	})
}

// -feature declares what discovery cannot observe: the finding that lists
// the unobserved features names the flag, and declaring them clears it.
func TestTheFeatureFlagDeclaresWhatCannotBeObservedAndTheHintNamesIt(t *testing.T) {
	cluster := filepath.Join(t.TempDir(), "cluster.json")
	os.WriteFile(cluster, []byte(`{"servers": [
		{"name": "s1", "version": "1.12.9", "leader": true}, {"name": "s2", "version": "1.12.9"}, {"name": "s3", "version": "1.12.9"}],
		"features": {"unobserved": [{"feature": "Connect", "reason": "the API does not show it"}, {"feature": "TLS.GRPCTLS", "reason": "not shown"}, {"feature": "ACLDefaultPolicy", "reason": "not shown"}]}}`), 0o644)
	plan := func(args ...string) (int, planner.UpgradePlan, string) {
		t.Helper()
		code, out, stderr := cli(t, append([]string{"plan", "-cluster", cluster, "-to", "1.13.9", "-output", "json"}, args...)...)
		var p planner.UpgradePlan
		if code == exitOK && json.Unmarshal([]byte(out), &p) != nil {
			t.Fatalf("plan %v: %q is not a plan", args, out)
		}
		return code, p, stderr
	}
	gap := func(p planner.UpgradePlan) *planner.Finding {
		for i, f := range p.Findings {
			if f.Rule == planner.RuleFeaturesUnobserved {
				return &p.Findings[i]
			}
		}
		return nil
	}
	code, p, stderr := plan()
	g := gap(p)
	if code != exitOK || g == nil {
		t.Fatalf("plan: exit %d (%s), findings %+v; want a features-not-observed finding", code, stderr, p.Findings)
	}
	if !strings.Contains(g.Hint, "-feature NAME=VALUE") {
		t.Errorf("hint %q does not name -feature", g.Hint)
	}
	code, p, stderr = plan("-feature", "Connect=no", "-feature", "tls.grpctls=off")
	if g := gap(p); code != exitOK || g == nil || strings.Contains(g.Message, "Connect") || strings.Contains(g.Message, "GRPCTLS") || !strings.Contains(g.Message, "ACLDefaultPolicy") {
		t.Errorf("two declared: exit %d (%s), finding %+v; want only ACLDefaultPolicy left", code, stderr, g)
	}
	code, p, stderr = plan("-feature", "Connect=no", "-feature", "TLS.GRPCTLS=no", "-feature", "ACLDefaultPolicy=deny")
	if code != exitOK || gap(p) != nil {
		t.Errorf("all declared: exit %d (%s), still %+v", code, stderr, gap(p))
	}
	for args, want := range map[string]string{
		"Warp=yes":             `"Warp" is not a feature that can be declared; the names are ACLs, ACLDefaultPolicy`,
		"Connect=maybe":        `"maybe" is not yes or no for Connect`,
		"Connect":              `-feature "Connect" is not NAME=VALUE`,
		"ACLDefaultPolicy=all": `"all" is not allow or deny for ACLDefaultPolicy`,
	} {
		if code, _, stderr := plan("-feature", args); code != exitUsage || !strings.Contains(stderr, want) {
			t.Errorf("-feature %s: exit %d, %q; want 2 saying %q", args, code, stderr, want)
		}
	}
	if code, _, stderr := plan("-feature", "Envoy=no", "-feature", "envoy=yes"); code != exitUsage || !strings.Contains(stderr, "given twice") {
		t.Errorf("a feature twice: exit %d, %q", code, stderr)
	}
}

// status prints its table whatever it finds, with warnings: the old code
// failed (exit 1, no table) when the plan's policy refused the cluster as
// it is (a server down). Such a cluster is not the one the plan was
// reviewed on, so the plan is stale (exit 3), and the table, the warnings
// and the differences are all printed.
func TestStatusPrintsItsTableWithWarningsInsteadOfFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 1)
		withSim(t, sim)
		planFile := savePlan(t)
		mustSim(t, sim.Swap("s3", "1.12.9", false)) // s3 is down
		mustSim(t, sim.SetVoter("s2", false))
		mustSim(t, sim.Swap("c1", "1.12.9", false)) // and the client
		code, out, stderr := cli(t, "status", "-plan", planFile)
		if code != exitDiverged {
			t.Fatalf("status: exit %d, want 3 (stale)\n%s\n%s", code, out, stderr)
		}
		for _, want := range []string{"Servers:", "s1           1.12.9     leader", "s3           1.12.9", "Warnings:",
			"server s3 is down: serf calls it failed", "server s2 is not a voter", "client c1 is down: serf calls it failed",
			"the cluster is not the one it was reviewed on", "failure tolerance of dc1: recorded 1, observed 0", "plan again: consul-upgrade plan -to 1.13.9"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		code, out, _ = cli(t, "status", "-plan", planFile, "-output", "json")
		var rep statusReport
		if code != exitDiverged || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Servers) != 3 || len(rep.Warnings) < 3 || rep.Stale == "" || len(rep.StaleDiffs) == 0 {
			t.Errorf("status -output json: exit %d, %+v", code, rep)
		}
		// Without a plan, status prints the same table and warnings, and exits 0.
		code, out, stderr = cli(t, "status")
		if code != exitOK || !strings.Contains(out, "server s3 is down: serf calls it failed") || !strings.Contains(out, "s2           1.12.9") {
			t.Errorf("status without a plan: exit %d\n%s\n%s", code, out, stderr)
		}
	})
}

// A halt after a touch lists each node touched and how far it got.
func TestAGateThatFailsAfterTheSwapListsTheNodeAsStartedButNotGated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		fake.Broken("1.13.9")
		planFile := savePlan(t, "-no-snapshot")
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-yes")
		if code != exitHalted {
			t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
		}
		for _, want := range []string{"Halted at step 1 of 3", "This run touched:\n  s2 (swap-server 1.12.9 -> 1.13.9): stopped, not started again, failed: ", "Left down: s2."} {
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
	})
}
