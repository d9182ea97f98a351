package robustness_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
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

// The orchestrator child: the test binary re-executed with
// orchestratorEnv set runs upgrade.Run and nothing else (see init). Its
// transport asks the test process, over HTTP, to swap nodes: the agents
// are the test process's children (consulrig's local transport starts
// them in their own process groups with Pdeathsig tied to the test
// process), so they live on when the orchestrator dies, as a fleet's
// agents do when the operator's machine dies. The child prints every
// event as one line on stdout.
const (
	orchestratorEnv = "CONSUL_UPGRADE_TEST_ORCHESTRATOR"
	childConsulEnv  = "CONSUL_UPGRADE_TEST_CONSUL"
	childSwapEnv    = "CONSUL_UPGRADE_TEST_SWAP_URL"
	childTargetEnv  = "CONSUL_UPGRADE_TEST_TARGET"
	childSnapEnv    = "CONSUL_UPGRADE_TEST_SNAPSHOTS"
)

func init() {
	if os.Getenv(orchestratorEnv) == "1" {
		os.Exit(orchestratorChild())
	}
}

func orchestratorChild() int {
	consul, err := upgrade.ConnectAddr(os.Getenv(childConsulEnv))
	if err != nil {
		fmt.Println("ERROR", err)
		return 2
	}
	cfg := upgrade.Config{
		Consul:      consul,
		Transport:   swapClient{url: os.Getenv(childSwapEnv)},
		Target:      os.Getenv(childTargetEnv),
		Snapshot:    upgrade.SnapshotDir(os.Getenv(childSnapEnv)),
		GateTimeout: 3 * time.Minute,
		LockHolder:  fmt.Sprintf("orchestrator child pid %d", os.Getpid()),
		OnEvent: func(e upgrade.Event) {
			fmt.Printf("EVENT %s %s %s %s %s\n", e.Kind, e.Step.Kind, e.Step.Node, e.Condition, e.Detail)
		},
	}
	if _, err := upgrade.Run(context.Background(), cfg); err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	fmt.Println("DONE")
	return 0
}

// swapClient is the child's transport: each swap is a POST to the test
// process, which answers {"err": "..."} or {}.
type swapClient struct{ url string }

// wireRequest is a SwapRequest as the POST carries it: all but Progress,
// a func, which encoding/json refuses (json.Marshal of a SwapRequest
// fails with "unsupported type"). The test process decodes it into a
// transport.SwapRequest.
type wireRequest struct {
	Node     string
	Role     transport.Role
	From, To string
	StopMode transport.StopMode
	Artifact string
}

func (s swapClient) Swap(ctx context.Context, req transport.SwapRequest) error {
	body, err := json.Marshal(wireRequest{Node: req.Node, Role: req.Role, From: req.From, To: req.To, StopMode: req.StopMode, Artifact: req.Artifact})
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct{ Err string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("swap %s: %w", req.Node, err)
	}
	if out.Err != "" {
		return errors.New(out.Err)
	}
	// The test process's transport stopped the node and started it on
	// req.To; said once that is known, as transport/exec does.
	req.Report(transport.PhaseStop)
	req.Report(transport.PhaseStart)
	return nil
}

// recorder records every swap asked of the transport, by whom.
type recorder struct {
	transport.Transport
	who string

	mu    *sync.Mutex
	swaps *[]string
}

func (r recorder) Swap(ctx context.Context, req transport.SwapRequest) error {
	r.mu.Lock()
	*r.swaps = append(*r.swaps, r.who+" "+req.Node)
	r.mu.Unlock()
	return r.Transport.Swap(ctx, req)
}

// orchestratorKill: 3 servers and a client under recorded traffic. An
// orchestrator child runs the upgrade and is SIGKILLed the moment it asks
// for its first server swap; that swap goes on without it (the node's side
// finishes what it was asked, as a remote host would), and no one gates
// it. A second run, in the test process, first finds the lock held by the
// dead child (*upgrade.LockedError naming it), retries every 2 s until the
// lock's session has expired (lock.go: a TTL session, invalidated by
// Consul within twice its TTL, whose key is then deleted), and completes:
// it finds the half-done node on the target and healthy, swaps every other
// node once, and never swaps that node again.
func orchestratorKill(t *testing.T, from, to string) {
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

	// The transport server: the child's swaps run here, through the guard.
	var (
		child      *exec.Cmd
		killedAt   time.Time
		killedNode string
		orphanDone = make(chan error, 1)
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
			killedNode = req.Node
		}
		mu.Unlock()
		if kill {
			// The swap goes on without its orchestrator; kill it now.
			go func() { orphanDone <- rec.Swap(context.WithoutCancel(r.Context()), req) }()
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
	victim, killed := killedNode, killedAt
	mu.Unlock()
	if victim == "" {
		t.Fatalf("the child never asked for a server swap (exit %v)", werr)
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ProcessState.String() != "signal: killed" {
		t.Fatalf("the child ended with %v, want killed by SIGKILL", werr)
	}
	if err := <-orphanDone; err != nil {
		t.Fatalf("the swap of %s, orphaned by the child's death, failed: %v", victim, err)
	}
	t.Logf("FAULT the orchestrator child was SIGKILLed while %s was being swapped; the swap finished without it", victim)
	scenario.WaitReady(t, ctx, upgrade.Config{Consul: consul}, 3)

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
	for _, e := range events {
		if e.Kind == upgrade.EventLocked {
			lockWait = e.Time.Sub(killed)
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
	mu.Lock()
	count := map[string]int{}
	for _, s := range swaps {
		count[strings.Fields(s)[1]]++
	}
	for n, c := range count {
		if c > 1 {
			t.Errorf("%s was swapped %d times (swaps asked: %v)", n, c, swaps)
		}
	}
	for _, n := range cl.Nodes() {
		if count[n] != 1 {
			t.Errorf("%s was swapped %d times, want once (swaps asked: %v)", n, count[n], swaps)
		}
	}
	swapList := slices.Clone(swaps)
	mu.Unlock()
	for _, s := range res.Steps {
		if s.Step.Node == victim {
			t.Errorf("the second run did step %s on the half-done %s", s.Step.Kind, victim)
		}
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
	last := planner.StepKind("")
	if len(res.Steps) > 0 {
		last = res.Steps[len(res.Steps)-1].Step.Kind
	}
	t.Logf("FIGURES orchestrator SIGKILLed mid-swap %s -> %s: wall %s; killed during the swap of %s; the second run found the lock %d time(s) and took it %s after the kill; swaps asked %v; second run steps %d (last %s); traffic %s; writer acked %d, failed %d, lost %d",
		from, to, wall.Round(100*time.Millisecond), victim, lockedTries, lockWait.Round(100*time.Millisecond), swapList, len(res.Steps), last, tr.Report, len(ws.Acked), ws.Failed, len(lost))
}

func TestASecondRunFinishesAfterTheOrchestratorIsKilledMidSwap_1_12_9_to_1_13_9(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	orchestratorKill(t, "1.12.9", "1.13.9")
}

func TestASecondRunFinishesAfterTheOrchestratorIsKilledMidSwap_1_15_4_to_1_16_1(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	orchestratorKill(t, "1.15.4", "1.16.1")
}

// orchestratorCmd is the orchestrator child (see init) for one upgrade to
// to, through the agent at consulAddr, swapping through the test's
// transport server at swapURL.
func orchestratorCmd(t *testing.T, consulAddr, swapURL, to string) *exec.Cmd {
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), orchestratorEnv+"=1", childConsulEnv+"="+consulAddr,
		childSwapEnv+"="+swapURL, childTargetEnv+"="+to, childSnapEnv+"="+t.TempDir())
	return child
}

// runChild starts child, logs every line it prints, and returns how it
// ended.
func runChild(t *testing.T, child *exec.Cmd) error {
	t.Helper()
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = child.Stdout
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	werr := child.Wait()
	for _, l := range lines {
		t.Logf("child: %s", l)
	}
	return werr
}
