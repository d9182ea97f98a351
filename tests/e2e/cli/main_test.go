// Package cli_test runs the consul-upgrade command as an operator does,
// against real Consul agents (tests/rig/consul): TestMain builds the binary
// once with `go build`, and each test execs it with its flags. Its nodes are
// swapped through an exec inventory, the way an operator plugs in a
// deployment tool: the inventory's commands are this test binary in relay
// mode, which hands each swap, version, check or rollback to the local
// transport of the test's cluster (the agents are the test's children) and
// exits with its outcome.
package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// The command's exit codes (consul-upgrade -h).
const (
	exitOK       = 0 // done, the requested step(s) carried out, or printed
	exitHalted   = 1 // stopped on an error after touching the cluster
	exitUsage    = 2 // bad flags or input, or a refusal; nothing touched
	exitDiverged = 3 // the cluster no longer matches the saved plan; nothing touched
)

// binary is the consul-upgrade command TestMain built.
var binary string

// relayEnv names the relay's URL in the environment of an inventory
// command: set, this test binary is that command (see relayCommand).
const relayEnv = "CONSUL_UPGRADE_E2E_RELAY"

func TestMain(m *testing.M) {
	if url := os.Getenv(relayEnv); url != "" {
		os.Exit(relayCommand(url, os.Args[1:], os.Stdout))
	}
	dir, err := os.MkdirTemp("", "consul-upgrade-e2e-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "consul-upgrade")
	// Built in the root module, as an operator builds it (its go.mod, not
	// this module's, picks the dependencies).
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/seed-e5e14ead/consul-upgrade").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "finding the root module: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", binary, "./cmd/consul-upgrade")
	build.Dir = strings.TrimSpace(string(root))
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build of the command failed: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the command did.
type result struct {
	code      int
	out, errs string
	wall      time.Duration
	shown     string // the arguments as a transcript shows them
}

// consulUpgrade runs the built command with args (stdin from /dev/null, so
// not a terminal) and returns its exit code and output. hide is a prefix
// of paths the shown arguments leave out.
func consulUpgrade(t *testing.T, ctx context.Context, hide string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{out: out.String(), errs: errb.String(), wall: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("consul-upgrade %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, r.out, r.errs)
	}
	r.shown = strings.Join(args, " ")
	if hide != "" {
		r.shown = strings.ReplaceAll(r.shown, hide, "")
	}
	return r
}

// relayRequest is one inventory command, as the relay receives it.
type relayRequest struct {
	Op       string             `json:"op"` // swap, rollback, version, check
	Node     string             `json:"node"`
	Role     transport.Role     `json:"role,omitempty"`
	From     string             `json:"from,omitempty"`
	To       string             `json:"to,omitempty"`
	StopMode transport.StopMode `json:"stop_mode,omitempty"`
}

// relayAnswer is the relay's answer: the command's exit code and output.
type relayAnswer struct {
	Exit   int    `json:"exit"`
	Output string `json:"output"`
}

// relayCommand is this test binary run as an inventory command: it sends
// its arguments (OP NODE [ROLE FROM TO STOPMODE]) to the relay at url,
// prints the answer's output and returns its exit code.
func relayCommand(url string, args []string, out io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintf(out, "relay: want OP NODE [ROLE FROM TO STOP-MODE], got %q\n", args)
		return 2
	}
	req := relayRequest{Op: args[0], Node: args[1]}
	if len(args) >= 6 {
		req.Role, req.From, req.To, req.StopMode = transport.Role(args[2]), args[3], args[4], transport.StopMode(args[5])
	}
	body, _ := json.Marshal(req)
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(out, "relay: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	var a relayAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		fmt.Fprintf(out, "relay: %s: %v\n", resp.Status, err)
		return 1
	}
	fmt.Fprint(out, a.Output)
	return a.Exit
}

// relayInventory serves the inventory commands of cl's nodes with cl's
// local transport for the test's lifetime and writes the exec inventory
// that runs them to dir/inventory.json; it returns the inventory's path.
func relayInventory(t *testing.T, cl *consulrig.Cluster, dir string) string {
	t.Helper()
	tr := cl.Transport()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req relayRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var a relayAnswer
		ctx := r.Context() // ends when the exec transport kills the command
		switch req.Op {
		case "swap":
			err = tr.Swap(ctx, transport.SwapRequest{Node: req.Node, Role: req.Role, From: req.From, To: req.To, StopMode: req.StopMode})
		case "rollback":
			err = tr.Rollback(ctx, req.Node)
		case "version":
			var v string
			if v, err = tr.RunningVersion(ctx, req.Node); err == nil {
				a.Output = v + "\n"
			}
		case "check":
			err = tr.CheckArtifact(ctx, req.Node, req.Role, req.To)
		default:
			err = fmt.Errorf("unknown operation %q", req.Op)
		}
		if err != nil {
			a.Exit, a.Output = 1, err.Error()+"\n"
		}
		json.NewEncoder(w).Encode(a)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	full := []string{"{{.Node}}", "{{.Role}}", "{{.From}}", "{{.To}}", "{{.StopMode}}"}
	inv := map[string]any{"transport": "exec", "exec": map[string]any{
		"swap":     append([]string{self, "swap"}, full...),
		"rollback": []string{self, "rollback", "{{.Node}}"},
		"version":  []string{self, "version", "{{.Node}}"},
		"check":    append([]string{self, "check"}, full...),
		"nodes":    cl.Nodes(),
		"env":      []string{relayEnv + "=http://" + l.Addr().String()},
		"timeout":  "5m",
	}}
	data, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "inventory.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readPlan reads a plan saved by consul-upgrade plan -out.
func readPlan(path string) (*planner.UpgradePlan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p planner.UpgradePlan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &p, nil
}

// readLock reads the holder of the upgrade lock (nil: free).
func readLock(ctx context.Context, c upgrade.Consul, key string) (*upgrade.LockHolder, error) {
	kv, ok := c.(upgrade.KVStore)
	if !ok {
		return nil, errors.New("this Consul cannot read the KV store (upgrade.KVStore)")
	}
	value, found, err := kv.KVGet(ctx, key)
	if err != nil || !found {
		return nil, err
	}
	var h upgrade.LockHolder
	if err := json.Unmarshal(value, &h); err != nil {
		return nil, fmt.Errorf("the lock %s holds %q, which is not a lock holder: %w", key, value, err)
	}
	return &h, nil
}

// waitHealthy waits until the plan of the new cluster is not refused: a
// leader, every server a healthy voter in autopilot's eyes.
func waitHealthy(t *testing.T, ctx context.Context, addr string) {
	t.Helper()
	consul, err := upgrade.ConnectAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		c, err := upgrade.Discover(ctx, consul)
		if err == nil {
			healthy := len(c.Servers) == 3
			for _, s := range c.Servers {
				healthy = healthy && s.Healthy && s.Voter
			}
			if healthy {
				return
			}
			err = fmt.Errorf("servers %+v", c.Servers)
		}
		last = err
		time.Sleep(time.Second)
	}
	t.Fatalf("the cluster never became healthy: %v", last)
}
