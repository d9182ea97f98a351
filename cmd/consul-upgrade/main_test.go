package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// cli runs the program in-process and returns its exit code and outputs.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	args = simArgs(args)
	if len(args) > 0 && args[0] == "apply" && !slices.Contains(args, "-snapshot-dir") {
		// not the default ./snapshots, inside the package's directory
		args = append(args, "-snapshot-dir", t.TempDir())
	}
	var out, errb bytes.Buffer
	code := run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// simArgs gives apply -server-http-port 0: the simulated servers answer
// HTTP at no address, and a dial from inside the synctest bubble to one
// would hold the bubble's clock (the gate's watch of a swapped server's
// own API, upgrade.AliveInterval, dials it).
func simArgs(args []string) []string {
	if len(args) > 0 && args[0] == "apply" {
		return append(append([]string{}, args...), "-server-http-port", "0")
	}
	return args
}

// withSim points the commands at a simulated cluster (and its fake
// transport) for the rest of the test.
func withSim(t *testing.T, sim *consultest.Cluster) *transporttest.Fake {
	t.Helper()
	client, err := sim.Client()
	if err != nil {
		t.Fatal(err)
	}
	fake := sim.NewFake()
	oldDial, oldTr, oldTerm := dial, testTransport, stdinIsTerminal
	dial = func(string) (upgrade.Consul, error) { return upgrade.NewConsul(client), nil }
	testTransport = fake
	stdinIsTerminal = func() bool { return false }
	t.Cleanup(func() { dial, testTransport, stdinIsTerminal = oldDial, oldTr, oldTerm })
	return fake
}

func newSim(servers, clients int, opts ...consultest.Option) *consultest.Cluster {
	return consultest.NewCluster(servers, clients, "1.12.9", append([]consultest.Option{
		consultest.WithRestartDelay(2 * time.Second),
		consultest.WithStabilizationTime(10 * time.Second),
		consultest.WithStableSince(time.Now().Add(-time.Hour))}, opts...)...)
}

func swaps(f *transporttest.Fake) []string {
	var out []string
	for _, c := range f.Calls() {
		if c.Op == transporttest.OpSwap {
			out = append(out, c.Node)
		}
	}
	return out
}

func TestHelpListsEveryCommandAndTheExitCodes(t *testing.T) {
	code, out, _ := cli(t, "help")
	if code != exitOK {
		t.Fatalf("help: exit %d", code)
	}
	for _, want := range []string{"plan", "apply", "status", "Exit codes:", "3  diverged"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := cli(t, "frobnicate"); code != exitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q; want 2 naming it", code, errs)
	}
	if code, _, _ := cli(t); code != exitUsage {
		t.Errorf("no command: exit %d, want 2", code)
	}
}

func TestPlanFromAFilePrintsTheTableAndSavesTheReviewedPlan(t *testing.T) {
	dir := t.TempDir()
	cluster := filepath.Join(dir, "cluster.json")
	os.WriteFile(cluster, []byte(`{"servers": [
		{"name": "s1", "version": "1.12.9", "leader": true, "voter": true, "healthy": true},
		{"name": "s2", "version": "1.12.9", "voter": true, "healthy": true},
		{"name": "s3", "version": "1.12.9", "voter": true, "healthy": true}],
		"clients": [{"name": "c1", "version": "1.12.9"}]}`), 0o644)
	out := filepath.Join(dir, "plan.json")
	code, stdout, stderr := cli(t, "plan", "-cluster", cluster, "-to", "1.13.9", "-out", out)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	if !strings.Contains(stdout, "Upgrade plan to 1.13.9") || !strings.Contains(stdout, "swap-server") {
		t.Errorf("stdout is not the plan's table:\n%s", stdout)
	}
	p, err := readPlan(out)
	if err != nil {
		t.Fatal(err)
	}
	// snapshot, s2, s3, s1 (the leader last), then the client.
	if len(p.Steps) != 5 || p.Steps[3].Node != "s1" || p.Steps[4].Kind != planner.StepSwapClients {
		t.Errorf("saved steps %+v, want snapshot, three servers with s1 last, one wave", p.Steps)
	}

	code, stdout, _ = cli(t, "plan", "-cluster", cluster, "-to", "1.13.9", "-output", "json", "-no-snapshot", "-clients", "leave-behind")
	var q planner.UpgradePlan
	if code != exitOK || json.Unmarshal([]byte(stdout), &q) != nil {
		t.Fatalf("-output json: exit %d, output %q", code, stdout)
	}
	if !q.Policy.NoSnapshot || q.Policy.Clients.Mode != planner.ClientLeaveBehind || len(q.Steps) != 3 {
		t.Errorf("policy flags not applied: policy %+v, %d steps", q.Policy, len(q.Steps))
	}
}

func TestPlanRefusesAndWritesNothingForABlockedCluster(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "plan.json")
	code, stdout, stderr := cli(t, "plan", "-cluster", "../../examples/plan/testdata/no-leader.json", "-to", "1.13.9", "-out", out)
	if code != exitUsage {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(stdout, "no-leader") || !strings.Contains(stderr, "not written") {
		t.Errorf("stdout %q / stderr %q do not show the finding and the unwritten file", stdout, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was written for a refused plan (stat: %v)", out, err)
	}
}

func TestBadFlagsExitWith2(t *testing.T) {
	cases := map[string][]string{
		"plan without -to":            {"plan", "-cluster", "x.json"},
		"plan with a bad version":     {"plan", "-to", "latest"},
		"plan with a bad strategy":    {"plan", "-to", "1.13.9", "-strategy", "yolo"},
		"plan with a stray argument":  {"plan", "-to", "1.13.9", "extra"},
		"plan with a bad output":      {"plan", "-to", "1.13.9", "-output", "xml"},
		"apply without -plan":         {"apply", "-yes"},
		"apply with a missing plan":   {"apply", "-yes", "-plan", "/nonexistent/plan.json"},
		"apply without a terminal":    {"apply", "-plan", "plan.json"},
		"status with a bad plan file": {"status", "-plan", "/nonexistent/plan.json"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			stdinIsTerminal = func() bool { return false }
			if code, _, stderr := cli(t, args...); code != exitUsage || stderr == "" {
				t.Errorf("exit %d (stderr %q), want 2 and a message", code, stderr)
			}
		})
	}
}

func TestApplyInventoryIsRequiredAndChecked(t *testing.T) {
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.json")
	os.WriteFile(planFile, []byte(`{"target": "1.13.9", "policy": {}, "findings": [], "path": [], "steps": []}`), 0o644)
	for name, inv := range map[string]string{
		"no transport":            `{}`,
		"an unknown transport":    `{"transport": "carrier-pigeon"}`,
		"ssh without a section":   `{"transport": "ssh"}`,
		"ssh without known_hosts": `{"transport": "ssh", "ssh": {"key_file": "k", "hosts": {}}}`,
		"exec with a bad timeout": `{"transport": "exec", "exec": {"swap": ["true"], "timeout": "soon"}}`,
		"a misspelt key":          `{"transprot": "exec"}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, "inv.json")
			os.WriteFile(f, []byte(inv), 0o644)
			code, _, stderr := cli(t, "apply", "-yes", "-plan", planFile, "-inventory", f)
			if code != exitUsage || !strings.Contains(stderr, "-inventory") {
				t.Errorf("exit %d, stderr %q; want 2 naming -inventory", code, stderr)
			}
		})
	}
}

// The operator's workflow on a simulated cluster: plan live and save, apply
// one step twice, status, then apply to the end.
func TestPlanApplyStepStatusApplyAgainstASimulatedCluster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 2)
		fake := withSim(t, sim)
		dir := t.TempDir()
		planFile, snaps := filepath.Join(dir, "plan.json"), filepath.Join(dir, "snaps")

		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		p, err := readPlan(planFile)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Steps) != 6 {
			t.Fatalf("plan has %d steps, want snapshot, 3 servers, 2 waves", len(p.Steps))
		}

		code, out, stderr := cli(t, "apply", "-plan", planFile, "-step", "-snapshot-dir", snaps)
		if code != exitOK || !strings.Contains(out, "step 1 of 6: snapshot") {
			t.Fatalf("apply -step #1: exit %d\n%s\n%s", code, out, stderr)
		}
		if s := swaps(fake); len(s) != 0 {
			t.Errorf("the snapshot step swapped %v", s)
		}
		code, out, stderr = cli(t, "apply", "-plan", planFile, "-step", "-snapshot-dir", snaps)
		if code != exitOK || !strings.Contains(out, "step 2 of 6: swap-server s2 in dc1 1.12.9 -> 1.13.9") {
			t.Fatalf("apply -step #2: exit %d\n%s\n%s", code, out, stderr)
		}
		if s := swaps(fake); len(s) != 1 || s[0] != "s2" {
			t.Errorf("after two -step runs the swaps are %v, want [s2]", s)
		}
		for _, want := range []string{"gate: ", "done in ", "left for 4 step(s)"} {
			if !strings.Contains(out, want) {
				t.Errorf("progress lacks %q:\n%s", want, out)
			}
		}

		code, out, stderr = cli(t, "status", "-plan", planFile)
		if code != exitOK {
			t.Fatalf("status: exit %d: %s", code, stderr)
		}
		for _, want := range []string{"Lock: free", "Backup: taken on 1.12.9", "2 of 6 step(s) done", "Next: step 3 of 6: swap-server s3", "s2           1.13.9"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}

		code, out, stderr = cli(t, "apply", "-plan", planFile, "-yes", "-snapshot-dir", snaps, "-output", "json")
		if code != exitOK {
			t.Fatalf("apply -yes: exit %d\n%s\n%s", code, out, stderr)
		}
		var last map[string]any
		var nodeDone int
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			last = nil
			if err := json.Unmarshal([]byte(line), &last); err != nil {
				t.Fatalf("-output json line %q: %v", line, err)
			}
			if last["event"] == "node-swapped" {
				nodeDone++
			}
		}
		if last["event"] != "done" || nodeDone != 2 {
			t.Errorf("last event %v, %d node-done events; want done and one per client", last, nodeDone)
		}
		if s := swaps(fake); strings.Join(s, ",") != "s2,s3,s1,c1,c2" {
			t.Errorf("swaps %v, want s2,s3,s1,c1,c2 (each once)", s)
		}
		if held := sim.HeldLocks(); len(held) != 0 {
			t.Errorf("locks still held: %v", held)
		}
		if code, out, _ := cli(t, "apply", "-plan", planFile, "-yes", "-snapshot-dir", snaps); code != exitOK || !strings.Contains(out, "Done: every agent runs 1.13.9") {
			t.Errorf("apply on a finished cluster: exit %d, %q", code, out)
		}
	})
}

func TestApplyAndStatusRefuseAPlanWhoseLeaderMovedSinceItWasReviewed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		// Leadership moved after the review: the leader, swapped last, is now s2.
		if err := sim.SetLeader("s2"); err != nil {
			t.Fatal(err)
		}
		code, applyOut, stderr := cli(t, "apply", "-plan", planFile, "-yes", "-snapshot-dir", filepath.Join(dir, "s"))
		if code != exitDiverged || !strings.Contains(stderr, "the saved plan is stale") || !strings.Contains(stderr, "leader of dc1: recorded s1, observed s2") || !strings.Contains(applyOut, "Nothing in the cluster was touched by this run.") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 3, the leader's change and nothing touched", code, applyOut, stderr)
		}
		if s := swaps(fake); len(s) != 0 {
			t.Errorf("a stale apply swapped %v", s)
		}
		code, out, _ := cli(t, "status", "-plan", planFile)
		if code != exitDiverged || !strings.Contains(out, "Stale: the cluster is not the one the plan was reviewed on, and none of the plan's 3 step(s) is done yet") ||
			!strings.Contains(out, "  - leader of dc1: recorded s1, observed s2") || !strings.Contains(out, "s2           1.12.9     leader") {
			t.Errorf("status: exit %d, %q; want 3, the table and the stale leader", code, out)
		}
	})
}

// A plan file edited by hand (two server steps swapped) still matches the
// cluster it was reviewed on, but not the steps the cluster needs: apply
// and status say it diverged, exit 3, nothing touched.
func TestApplyRefusesACLusterThatDivergedFromThePlan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		p, err := readPlan(planFile)
		if err != nil {
			t.Fatal(err)
		}
		p.Steps[0], p.Steps[1] = p.Steps[1], p.Steps[0] // s3 before s2
		data, _ := p.JSON()
		if err := os.WriteFile(planFile, data, 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := cli(t, "apply", "-plan", planFile, "-yes", "-snapshot-dir", filepath.Join(dir, "s"))
		if code != exitDiverged || !strings.Contains(stderr, "diverged from the approved plan") {
			t.Errorf("exit %d, stderr %q; want 3 and the divergence", code, stderr)
		}
		if s := swaps(fake); len(s) != 0 {
			t.Errorf("a diverged apply swapped %v", s)
		}
		code, out, _ := cli(t, "status", "-plan", planFile)
		if code != exitDiverged || !strings.Contains(out, "Diverged:") {
			t.Errorf("status: exit %d, %q; want 3 and the divergence", code, out)
		}
	})
}

func TestApplyAsksOnATerminalAndStopsOnNo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		stdinIsTerminal = func() bool { return true }
		oldIn := stdin
		stdin = strings.NewReader("y\nn\n")
		t.Cleanup(func() { stdin = oldIn })
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		code, _, stderr := cli(t, "apply", "-plan", planFile, "-snapshot-dir", filepath.Join(dir, "s"))
		// The approved step was carried out: exit 0, as for -step (2 is
		// for an answer no before anything was done).
		if code != exitOK || !strings.Contains(stderr, "Carry it out? [y/N]") || !strings.Contains(stderr, "Stopped before step 2 of 3") {
			t.Errorf("exit %d, stderr %q; want 0 after one approved step", code, stderr)
		}
		if s := swaps(fake); len(s) != 1 || s[0] != "s2" {
			t.Errorf("swaps %v, want only the approved s2", s)
		}
	})
}

func TestApplyHaltsWith1WhenAGateFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		fake.ComeBackOld("s2")
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-yes", "-gate-timeout", "1m")
		if code != exitHalted || !strings.Contains(stderr, "halted") || !strings.Contains(out, "Halted at step 1 of 3") {
			t.Errorf("exit %d\n%s\n%s\nwant 1 and the halt", code, out, stderr)
		}
		if s := swaps(fake); len(s) != 1 {
			t.Errorf("swaps %v after a halt on the first, want only it", s)
		}
	})
}

func TestStatusShowsTheLockHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 1)
		withSim(t, sim)
		consul, _ := dial("")
		lock, err := consul.(upgrade.Locker).Lock(t.Context(), upgrade.DefaultLockKey, upgrade.LockHolder{Holder: "ops on bastion", Target: "1.13.9", Since: time.Now().Add(-time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Release(context.WithoutCancel(t.Context()))
		code, out, stderr := cli(t, "status")
		if code != exitOK {
			t.Fatalf("status: exit %d: %s", code, stderr)
		}
		for _, want := range []string{`Lock: held by "ops on bastion", target 1.13.9, for 1m0s`, "s1           1.12.9     leader", "Clients: 1 on 1.12.9;"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		code, out, _ = cli(t, "status", "-output", "json")
		var rep statusReport
		if code != exitOK || json.Unmarshal([]byte(out), &rep) != nil || rep.Lock == nil || rep.Lock.Holder != "ops on bastion" {
			t.Errorf("status -output json: exit %d, %q", code, out)
		}
	})
}

// A lock lost during a step (an election can invalidate its session) halts
// the run before the next step with exit 1; the next apply locks again and
// resumes where the plan stands.
func TestApplyHaltsOnALostLockAndTheNextApplyResumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		mirror := fake.OnSwap
		fake.OnSwap = func(req transport.SwapRequest) {
			mirror(req)
			if req.Node == "s3" {
				for _, id := range sim.Sessions() {
					sim.InvalidateSession(id)
				}
			}
		}
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-yes")
		if code != exitHalted || !strings.Contains(stderr, "upgrade lock lost") || !strings.Contains(out, "Halted before step 3 of 3") {
			t.Fatalf("exit %d\n%s\n%s\nwant 1 and the lost lock before step 3", code, out, stderr)
		}
		if s := swaps(fake); strings.Join(s, ",") != "s2,s3" {
			t.Errorf("swaps %v after the lost lock, want s2,s3", s)
		}
		fake.OnSwap = mirror
		code, out, stderr = cli(t, "apply", "-plan", planFile, "-yes")
		if code != exitOK || !strings.Contains(out, "step 3 of 3: swap-server s1") {
			t.Fatalf("resume: exit %d\n%s\n%s", code, out, stderr)
		}
		if s := swaps(fake); strings.Join(s, ",") != "s2,s3,s1" {
			t.Errorf("swaps %v, want s2,s3,s1", s)
		}
	})
}

func TestCtrlCAtThePromptEndsApplyWithoutTouchingAnything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		stdinIsTerminal = func() bool { return true }
		pr, pw := io.Pipe()
		oldIn := stdin
		stdin = pr
		defer func() { stdin = oldIn }()
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Minute, cancel) // the operator presses Ctrl-C at the prompt
		var out, errb bytes.Buffer
		code := run(ctx, simArgs([]string{"apply", "-plan", planFile, "-snapshot-dir", dir}), &out, &errb)
		pw.Close()
		if code != exitHalted || !strings.Contains(errb.String(), "Carry it out?") {
			t.Errorf("exit %d, stderr %q; want 1 after the prompt", code, errb.String())
		}
		if s := swaps(fake); len(s) != 0 {
			t.Errorf("swaps %v after Ctrl-C at the first prompt", s)
		}
		if held := sim.HeldLocks(); len(held) != 0 {
			t.Errorf("locks still held: %v", held)
		}
	})
}

// A run that left a server stopped in the middle of its swap (here: the
// new binary did not start, and no -rollback) leaves its swap record; the
// next apply of the same plan prints that it resumes that swap, swaps the
// server once and completes.
func TestTheNextApplyResumesASwapThatLeftAServerDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		first := withSim(t, sim)
		first.Broken("1.13.9")
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-yes")
		s := swaps(first)
		if code != exitHalted || len(s) != 1 {
			t.Fatalf("exit %d, swaps %v\n%s\n%s\nwant 1 and a halt at the first server swap", code, s, out, stderr)
		}
		down := s[0]
		if code, out, stderr := cli(t, "status"); code != exitOK || !strings.Contains(out, "Unfinished swap: "+down+" 1.12.9 -> 1.13.9") {
			t.Errorf("status after the halt: exit %d\n%s\n%s\nwant it to show the unfinished swap of %s", code, out, stderr, down)
		}
		second := sim.NewFake() // a fixed binary: the fleet as it is now, down included
		testTransport = second
		code, out, stderr = cli(t, "apply", "-plan", planFile, "-yes")
		if code != exitOK || !strings.Contains(out, "swap-record: resuming the swap of "+down+" to 1.13.9") || !strings.Contains(out, "step 1 of 3: swap-server "+down) {
			t.Fatalf("resume: exit %d\n%s\n%s\nwant 0 and the resumed swap of %s", code, out, stderr, down)
		}
		count := map[string]int{}
		for _, n := range swaps(second) {
			count[n]++
		}
		if len(count) != 3 || count["s1"] != 1 || count["s2"] != 1 || count["s3"] != 1 {
			t.Errorf("swaps %v, want each server once", swaps(second))
		}
	})
}
