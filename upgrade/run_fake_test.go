package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

// withFake replaces the rig's transport with transporttest's Fake, whose
// OnSwap hook moves the simulated cluster.
func withFake(r *runRig) *transporttest.Fake {
	f := r.sim.NewFake()
	r.cfg.Transport = f
	return f
}

func swapsOf(f *transporttest.Fake) []string {
	var out []string
	for _, c := range f.Calls() {
		if c.Op == transporttest.OpSwap {
			out = append(out, c.Node)
		}
	}
	return out
}

func TestRunWithTheFakeTransportReachesTheTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		f := withFake(r)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		for _, name := range []string{"s1", "s2", "s3", "c1", "c2"} {
			if n, _ := f.Node(name); n.Version != "1.13.9" || !n.Running {
				t.Errorf("fake node %+v, want running 1.13.9", n)
			}
		}
		if s := swapsOf(f); len(s) != 5 || s[2] != "s1" {
			t.Errorf("swaps %v, want 3 servers with the leader s1 last, then 2 clients", s)
		}
	})
}

func TestRunHaltsWhenASwappedServerComesBackOnTheOldVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		for _, n := range []string{"s1", "s2", "s3"} {
			f.ComeBackOld(n)
		}
		_, err := Run(t.Context(), r.cfg)
		var ge *GateError
		if !errors.As(err, &ge) || ge.Condition != planner.GateVersion {
			t.Fatalf("err = %v, want a halt on the version gate", err)
		}
		if want := "reports 1.12.9 in its serf build tag, want 1.13.9"; !strings.Contains(ge.Detail, want) {
			t.Errorf("detail %q does not say %q", ge.Detail, want)
		}
		if s := swapsOf(f); len(s) != 1 {
			t.Errorf("swaps %v, want only the first", s)
		}
	})
}

func TestRunRollsBackAServerWhoseNewVersionNeverStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		f.Broken("1.13.9")
		r.cfg.Rollback = true
		_, err := Run(t.Context(), r.cfg)
		var h *HaltError
		if !errors.As(err, &h) || !h.RolledBack {
			t.Fatalf("err = %v, want a halt with the server rolled back", err)
		}
		if !errors.Is(err, transport.ErrNotRunning) {
			t.Errorf("err %v does not wrap ErrNotRunning", err)
		}
		n, _ := f.Node(h.Step.Node)
		if n.Version != "1.12.9" || !n.Running || !n.Healthy {
			t.Errorf("after rollback %+v, want running healthy 1.12.9", n)
		}
		var touched []string
		for _, c := range f.Calls() {
			if c.TouchesState() && !slices.Contains(touched, c.Node) {
				touched = append(touched, c.Node)
			}
		}
		if !slices.Equal(touched, []string{h.Step.Node}) {
			t.Errorf("nodes stopped or started: %v, want only %s", touched, h.Step.Node)
		}
	})
}

func TestRunHaltsWhenASwapHangsUntilTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		for _, n := range []string{"s1", "s2", "s3"} {
			f.HangNext(n)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
		defer cancel()
		_, err := Run(ctx, r.cfg)
		var h *HaltError
		if !errors.As(err, &h) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a halt wrapping the context's deadline", err)
		}
		if s := swapsOf(f); len(s) != 1 {
			t.Errorf("swaps %v, want only the hung one", s)
		}
	})
}

// exitsAfterSwap is the Fake whose agent on node answers its swap to
// version and then exits (Consul 0.7.x does that when its DNS server is not
// up within a second of its HTTP API, as on a machine running 150 agents):
// the swap succeeded, the host has no agent, serf marks it failed.
type exitsAfterSwap struct {
	*transporttest.Fake
	sim           interface{ Kill(string) error }
	node, version string
	mu            sync.Mutex
	dead          bool
}

func (e *exitsAfterSwap) Swap(ctx context.Context, req transport.SwapRequest) error {
	err := e.Fake.Swap(ctx, req)
	if err == nil && req.Node == e.node && req.To == e.version {
		e.mu.Lock()
		e.dead = true
		e.mu.Unlock()
		err = e.sim.Kill(req.Node)
	}
	return err
}

func (e *exitsAfterSwap) Rollback(ctx context.Context, node string) error {
	err := e.Fake.Rollback(ctx, node)
	if err == nil && node == e.node {
		e.mu.Lock()
		e.dead = false
		e.mu.Unlock()
	}
	return err
}

func (e *exitsAfterSwap) RunningVersion(ctx context.Context, node string) (string, error) {
	e.mu.Lock()
	dead := e.dead && node == e.node
	e.mu.Unlock()
	if dead {
		return "", fmt.Errorf("node %s has no live agent process: %w", node, transport.ErrNotRunning)
	}
	return e.Fake.RunningVersion(ctx, node)
}

// swapOnly hides every ability of a transport but Swap and Rollback.
type swapOnly struct{ t *exitsAfterSwap }

func (s swapOnly) Swap(ctx context.Context, req transport.SwapRequest) error {
	return s.t.Swap(ctx, req)
}
func (s swapOnly) Rollback(ctx context.Context, node string) error { return s.t.Rollback(ctx, node) }

// Found by scripts/bench-scale.sh 3 200 0.6.4 0.7.5: a client's 0.7.5 agent
// answered its version, then exited ("Error starting dns server: timeout
// setting up DNS server"); the wave's gate waited for it to come back on
// 0.7.5 until its timeout. With a transport that reports running versions
// the gate now stops as soon as the host says the agent is gone, and the
// node is rolled back; without one it still waits the timeout out.
func TestRunHaltsAtOnceWhenASwappedAgentExitsAfterAnsweringItsSwap(t *testing.T) {
	for _, reports := range []bool{true, false} {
		t.Run(fmt.Sprintf("version-reporter=%t", reports), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRunRig(t, 3, 2)
				f := withFake(r)
				tr := &exitsAfterSwap{Fake: f, sim: r.sim, node: "c2", version: "1.13.9"}
				r.cfg.Transport = tr
				if !reports {
					r.cfg.Transport = swapOnly{tr}
				}
				r.cfg.Rollback = true
				r.cfg.GateTimeout = 10 * time.Minute
				start := time.Now()
				_, err := Run(t.Context(), r.cfg)
				took := time.Since(start)
				var h *HaltError
				var ge *GateError
				if !errors.As(err, &h) || !errors.As(err, &ge) || ge.Node != "c2" {
					t.Fatalf("err = %v, want a halt at c2's gate", err)
				}
				if !h.RolledBack {
					t.Errorf("c2 not rolled back: %v", err)
				}
				if n, _ := f.Node("c2"); n.Version != "1.12.9" || !n.Running {
					t.Errorf("c2 after the halt: %+v, want running 1.12.9", n)
				}
				if !reports {
					if !errors.Is(err, ErrGateTimeout) || took < r.cfg.GateTimeout {
						t.Errorf("without running versions: err = %v after %s, want the gate's timeout of %s", err, took, r.cfg.GateTimeout)
					}
					return
				}
				if !errors.Is(err, ErrAgentGone) || !errors.Is(err, transport.ErrNotRunning) {
					t.Errorf("err = %v, want ErrAgentGone wrapping transport.ErrNotRunning", err)
				}
				if took > time.Minute {
					t.Errorf("the halt took %s; the host said the agent was gone at the gate's first attempts", took)
				}
				for _, want := range []string{"c2", "exited after its swap", "failed in serf"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("err %q does not say %q", err, want)
					}
				}
			})
		})
	}
}
