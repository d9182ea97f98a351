package transporttest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

// flawed is a one-node transport that breaks one rule of the contract on
// purpose, so that the suite can be shown to catch it. With flaw "" it keeps
// the contract (and implements no optional interface).
type flawed struct {
	flaw    string
	mu      sync.Mutex
	version string
	inc     int
}

func (f *flawed) Swap(ctx context.Context, req transport.SwapRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flaw != "skips-validation" {
		if err := transport.ValidateRequest(req); err != nil {
			return err
		}
	}
	if req.Node != "n1" {
		if f.flaw == "untyped-unknown-node" {
			return errors.New("no such host")
		}
		return &transport.SwapError{Node: req.Node, Phase: transport.PhaseStage, To: req.To, Err: transport.ErrUnknownNode}
	}
	if err := ctx.Err(); err != nil && f.flaw != "ignores-context" {
		return &transport.SwapError{Node: req.Node, Phase: transport.PhaseStop, To: req.To, Err: err}
	}
	if f.version == req.To && f.flaw != "always-restarts" {
		return nil
	}
	if f.flaw != "forgets-the-version" {
		f.version = req.To
	}
	f.inc++
	if f.flaw != "silent-progress" {
		req.Report(transport.PhaseStop)
		req.Report(transport.PhaseStart)
	}
	return nil
}

// blindChecker is a flawed transport whose artifact check passes every
// version, even one its node cannot get.
type blindChecker struct{ *flawed }

func (blindChecker) CheckArtifact(ctx context.Context, node string, role transport.Role, version string) error {
	if err := transport.ValidateCheck(node, role, version); err != nil {
		return err
	}
	if node != "n1" {
		return transport.ErrUnknownNode
	}
	return nil
}

func (f *flawed) state(context.Context, string) (string, bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version, true, strconv.Itoa(f.inc), nil
}

const flawEnv = "TRANSPORTTEST_FLAW"

// TestConformanceCatchesFlawedTransports runs the suite, in a child test
// process, against transports that each break one rule, and checks that
// the suite fails with a message naming the broken rule; and that a
// transport keeping the contract passes.
func TestConformanceCatchesFlawedTransports(t *testing.T) {
	if flaw, ok := os.LookupEnv(flawEnv); ok {
		// Child: run the suite on the flawed transport.
		transporttest.Run(t, func(t *testing.T) transporttest.Harness {
			tr := &flawed{flaw: flaw, version: from}
			if flaw == "checks-nothing" {
				return transporttest.Harness{Transport: blindChecker{tr}, Node: "n1", Role: transport.RoleServer, From: from, To: to, State: tr.state, Missing: "0.1.0"}
			}
			return transporttest.Harness{Transport: tr, Node: "n1", Role: transport.RoleServer, From: from, To: to, State: tr.state}
		})
		return
	}
	tests := []struct {
		name string
		flaw string
		want string // "" means the suite passes
	}{
		{"a transport that keeps the contract passes the suite", "", ""},
		{"a transport that restarts an agent already on the target fails the suite", "always-restarts", "the second identical swap restarted the agent"},
		{"a transport that ignores an ended context fails the suite", "ignores-context", "want an error wrapping it"},
		{"a transport that skips validation fails the suite", "skips-validation", "want an error wrapping transport.ErrInvalidRequest"},
		{"a transport that reports an unknown node untyped fails the suite", "untyped-unknown-node", "want an error wrapping transport.ErrUnknownNode"},
		{"a transport whose artifact check passes a missing binary fails the suite", "checks-nothing", "want a *transport.ArtifactError wrapping transport.ErrArtifact"},
		{"a transport that does not install the new version fails the suite", "forgets-the-version", `runs "` + from + `" (running true), want "` + to + `" running`},
		{"a transport that does not report its stop and start fails the suite", "silent-progress", `reported [] to SwapRequest.Progress, want ["stop" "start"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestConformanceCatchesFlawedTransports$", "-test.v")
			cmd.Env = append(os.Environ(), flawEnv+"="+tc.flaw)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("suite failed on a transport that keeps the contract: %v\n%s", err, out)
			case tc.want == "":
				// The optional subtests are not run (not skipped, not
				// passed), and the suite says why.
				if !strings.Contains(string(out), "does not implement the optional interface of") {
					t.Errorf("suite did not report the optional subtests it left out:\n%s", out)
				}
				if strings.Contains(string(out), "--- SKIP") {
					t.Errorf("suite skipped a subtest instead of leaving it out:\n%s", out)
				}
			case err == nil:
				t.Fatalf("suite passed a transport that %s:\n%s", tc.flaw, out)
			case !errors.As(err, &exit):
				t.Fatalf("running the child test: %v", err)
			case !strings.Contains(string(out), tc.want):
				t.Errorf("suite failed, but without %q:\n%s", tc.want, out)
			}
		})
	}
}
