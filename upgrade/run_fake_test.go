package upgrade

import (
	"context"
	"errors"
	"slices"
	"strings"
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
