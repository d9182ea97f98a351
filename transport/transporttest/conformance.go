package transporttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// DefaultTimeout bounds each conformance subtest when Harness.Timeout is 0.
// It is generous because a real agent takes seconds to stop and start.
const DefaultTimeout = 2 * time.Minute

// Harness is what Run needs to test one transport: a transport, one node it
// may swap back and forth between two versions, and a way to look at that
// node from its host.
type Harness struct {
	Transport transport.Transport
	// Node is a node the suite may swap back and forth.
	Node string
	// Role is Node's role; it is sent in every request.
	Role transport.Role
	// From and To are versions: Node runs From at the start; To is
	// available to the transport.
	From, To string
	// State reports what runs on the node from the host's point of view:
	// the version, whether the agent is up, and an incarnation that changes
	// whenever the agent process is (re)started (a PID and start time, a
	// counter).
	State func(ctx context.Context, node string) (version string, running bool, incarnation string, err error)
	// Timeout bounds each subtest (its ctx); 0 means DefaultTimeout.
	Timeout time.Duration
	// Missing, when set, is a well-formed version whose binary the
	// transport cannot get for Node (no file, no mirror entry): a
	// transport.ArtifactChecker must refuse it.
	Missing string
}

// Run checks that a transport keeps the contract written in the transport
// package documentation. newHarness is called once per subtest and must
// return a fresh node running h.From (use t.Cleanup to tear it down); a
// harness that cannot be built (missing binaries, no sshd) must call
// t.Fatal, not t.Skip.
//
// The subtests, each on a fresh harness:
//
//   - a swap From -> To leaves the node running To on a new incarnation,
//     and reports transport.PhaseStop then PhaseStart to
//     SwapRequest.Progress, once each;
//   - a repeated identical swap succeeds without restarting the agent,
//     and reports nothing;
//   - a swap with an unknown From ("") is accepted;
//   - a cancelled or expired ctx yields an error wrapping ctx.Err() and
//     leaves the node as it was;
//   - an unknown node yields a *transport.SwapError wrapping
//     transport.ErrUnknownNode;
//   - node names with shell metacharacters, malformed versions, unknown
//     roles and stop modes yield a *transport.SwapError with Phase
//     PhaseValidate wrapping transport.ErrInvalidRequest, and touch nothing
//     (a refused version reports nothing to SwapRequest.Progress);
//   - stop modes kill and terminate are accepted; leave is accepted for a
//     client and refused for a server (see transport.ValidateRequest);
//   - if the transport is a transport.Rollbacker: after From -> To,
//     Rollback brings the node back to From, running, on a new incarnation,
//     and an unknown node is refused with transport.ErrUnknownNode;
//   - if the transport is a transport.VersionReporter: RunningVersion
//     agrees with State before and after a swap;
//   - if the transport is a transport.ArtifactChecker: CheckArtifact of To
//     succeeds (or says it cannot check, transport.ErrNotChecked), of
//     h.Missing is a *transport.ArtifactError wrapping
//     transport.ErrArtifact, of an unknown node wraps
//     transport.ErrUnknownNode and of a malformed version
//     transport.ErrInvalidRequest; and no check touches the node.
//
// The subtests of an optional interface that the transport does not
// implement are not run at all; Run logs which ones it left out.
//
// Run assumes no more than the contract says: it looks at the node right
// after Swap returns (the new agent process has been started by then) and
// never waits for cluster health.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	var probe transport.Transport // the first harness's transport, to probe optional interfaces

	// Subtests of optional interfaces come after the mandatory ones, so the
	// transport is known by then: a subtest the transport cannot take is
	// not registered at all (logged, neither skipped nor passed).
	run := func(name string, needs func(transport.Transport) bool, body func(s *suite)) {
		if needs != nil && probe != nil && !needs(probe) {
			t.Logf("%T does not implement the optional interface of %q: not run", probe, name)
			return
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			if h.Transport == nil {
				t.Fatal("harness: Transport is nil")
			}
			if probe != nil && fmt.Sprintf("%T", probe) != fmt.Sprintf("%T", h.Transport) {
				t.Fatalf("harness: the transport changed type between harnesses (%T, then %T)", probe, h.Transport)
			}
			probe = h.Transport
			if needs != nil && !needs(h.Transport) {
				t.Fatalf("harness: %T lacks the optional interface of this subtest, which only runs after the mandatory ones have probed the transport", h.Transport)
			}
			s := newSuite(t, h)
			body(s)
		})
	}

	run("a swap moves the node to the new version on a new agent, reporting its stop then its start", nil, func(s *suite) {
		before := s.mustRun(s.h.From)
		req, got := s.reporting(s.req(s.h.From, s.h.To, transport.StopKill))
		s.mustSwap(req)
		after := s.mustRun(s.h.To)
		s.newIncarnation(before, after)
		if want := []transport.Phase{transport.PhaseStop, transport.PhaseStart}; !slices.Equal(*got, want) {
			s.t.Errorf("a swap %s -> %s reported %q to SwapRequest.Progress, want %q (stop, then start, each once)", s.h.From, s.h.To, *got, want)
		}
	})

	run("a repeated identical swap succeeds without restarting the agent, and reports nothing", nil, func(s *suite) {
		req := s.req(s.h.From, s.h.To, transport.StopKill)
		s.mustSwap(req)
		first := s.mustRun(s.h.To)
		req, got := s.reporting(req)
		s.mustSwap(req)
		second := s.mustRun(s.h.To)
		if second.inc != first.inc {
			s.t.Errorf("the second identical swap restarted the agent: incarnation %q -> %q, want unchanged", first.inc, second.inc)
		}
		if len(*got) > 0 {
			s.t.Errorf("a repeated identical swap (nothing to stop) reported %q to SwapRequest.Progress, want nothing", *got)
		}
	})

	run("a swap with an unknown from version is accepted", nil, func(s *suite) {
		before := s.mustRun(s.h.From)
		s.mustSwap(s.req("", s.h.To, transport.StopKill))
		s.newIncarnation(before, s.mustRun(s.h.To))
	})

	run("a cancelled or expired context returns its error and touches nothing", nil, func(s *suite) {
		before := s.mustRun(s.h.From)
		cancelled, cancel := context.WithCancel(s.ctx)
		cancel()
		expired, cancel2 := context.WithDeadline(s.ctx, time.Now().Add(-time.Second))
		defer cancel2()
		for _, c := range []struct {
			ctx  context.Context
			want error
		}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
			err := s.h.Transport.Swap(c.ctx, s.req(s.h.From, s.h.To, transport.StopKill))
			if !errors.Is(err, c.want) {
				s.t.Errorf("Swap with a context that ended (%v) = %v, want an error wrapping it", c.want, err)
			}
			s.unchanged(before, "a swap whose context had ended")
		}
	})

	run("an unknown node is refused with ErrUnknownNode", nil, func(s *suite) {
		before := s.mustRun(s.h.From)
		const ghost = "conformance-no-such-node"
		req := s.req(s.h.From, s.h.To, transport.StopKill)
		req.Node = ghost
		err := s.h.Transport.Swap(s.ctx, req)
		if !errors.Is(err, transport.ErrUnknownNode) {
			s.t.Errorf("Swap of unknown node %q = %v, want an error wrapping transport.ErrUnknownNode", ghost, err)
		}
		var se *transport.SwapError
		if !errors.As(err, &se) {
			s.t.Errorf("Swap of unknown node %q = %v (%T), want a *transport.SwapError", ghost, err, err)
		} else if se.Node != ghost {
			s.t.Errorf("SwapError.Node = %q, want %q", se.Node, ghost)
		}
		s.unchanged(before, "a swap of an unknown node")
	})

	run("a node name with shell metacharacters is refused and touches nothing", nil, func(s *suite) {
		before := s.mustRun(s.h.From)
		for _, name := range []string{"s1; rm -rf /", "$(reboot)", "../etc", "`id`", "s1 && reboot", "-rf", "s1\nreboot", "", s.h.Node + "/.."} {
			req := s.req(s.h.From, s.h.To, transport.StopKill)
			req.Node = name
			s.refused(req)
		}
		s.unchanged(before, "refused node names")
	})

	run("a malformed version is refused, touches nothing and reports nothing", nil, func(s *suite) {
		before := s.mustRun(s.h.From)
		for _, to := range []string{"latest", "", "1.2", "v" + s.h.To, s.h.To + "; reboot", "../" + s.h.To} {
			req, got := s.reporting(s.req(s.h.From, to, transport.StopKill))
			s.refused(req)
			if len(*got) > 0 {
				s.t.Errorf("a refused swap to %q reported %q to SwapRequest.Progress, want nothing", to, *got)
			}
		}
		s.refused(s.req("1.2", s.h.To, transport.StopKill))
		s.unchanged(before, "refused versions")
	})

	run("a role or stop mode outside the contract is refused and touches nothing", nil, func(s *suite) {
		before := s.mustRun(s.h.From)
		badRole := s.req(s.h.From, s.h.To, transport.StopKill)
		badRole.Role = "leader"
		s.refused(badRole)
		s.refused(s.req(s.h.From, s.h.To, ""))
		s.refused(s.req(s.h.From, s.h.To, "reboot"))
		s.unchanged(before, "refused roles and stop modes")
	})

	for _, c := range []struct {
		mode transport.StopMode
		name string
	}{
		{transport.StopKill, "stop mode kill is accepted"},
		{transport.StopTerminate, "stop mode terminate is accepted"},
		{transport.StopLeave, "stop mode leave is accepted for a client and refused for a server"},
	} {
		mode := c.mode
		run(c.name, nil, func(s *suite) {
			before := s.mustRun(s.h.From)
			req := s.req(s.h.From, s.h.To, mode)
			if mode == transport.StopLeave && s.h.Role == transport.RoleServer {
				s.refused(req)
				s.unchanged(before, "a server swap with stop mode leave")
				return
			}
			s.mustSwap(req)
			s.newIncarnation(before, s.mustRun(s.h.To))
		})
	}

	isRollbacker := func(tr transport.Transport) bool { _, ok := tr.(transport.Rollbacker); return ok }
	run("rollback returns the node to its previous version on a new agent", isRollbacker, func(s *suite) {
		rb := s.h.Transport.(transport.Rollbacker)
		before := s.mustRun(s.h.From)
		const ghost = "conformance-no-such-node"
		if err := rb.Rollback(s.ctx, ghost); !errors.Is(err, transport.ErrUnknownNode) {
			s.t.Errorf("Rollback of unknown node %q = %v, want an error wrapping transport.ErrUnknownNode", ghost, err)
		}
		s.unchanged(before, "a rollback of an unknown node")
		s.mustSwap(s.req(s.h.From, s.h.To, transport.StopKill))
		swapped := s.mustRun(s.h.To)
		if err := rb.Rollback(s.ctx, s.h.Node); err != nil {
			s.t.Fatalf("Rollback(%s) after %s -> %s = %v, want nil", s.h.Node, s.h.From, s.h.To, err)
		}
		s.newIncarnation(swapped, s.mustRun(s.h.From))
	})

	isReporter := func(tr transport.Transport) bool { _, ok := tr.(transport.VersionReporter); return ok }
	run("running version agrees with the host before and after a swap", isReporter, func(s *suite) {
		vr := s.h.Transport.(transport.VersionReporter)
		check := func(want string) {
			s.t.Helper()
			got, err := vr.RunningVersion(s.ctx, s.h.Node)
			if err != nil || got != want {
				s.t.Errorf("RunningVersion(%s) = %q, %v; want %q, nil", s.h.Node, got, err, want)
			}
		}
		s.mustRun(s.h.From)
		check(s.h.From)
		s.mustSwap(s.req(s.h.From, s.h.To, transport.StopKill))
		s.mustRun(s.h.To)
		check(s.h.To)
		const ghost = "conformance-no-such-node"
		if _, err := vr.RunningVersion(s.ctx, ghost); !errors.Is(err, transport.ErrUnknownNode) {
			s.t.Errorf("RunningVersion of unknown node %q = %v, want an error wrapping transport.ErrUnknownNode", ghost, err)
		}
	})

	isChecker := func(tr transport.Transport) bool { _, ok := tr.(transport.ArtifactChecker); return ok }
	run("an artifact check touches nothing and refuses a binary the node cannot get", isChecker, func(s *suite) {
		ac := s.h.Transport.(transport.ArtifactChecker)
		before := s.mustRun(s.h.From)
		err := ac.CheckArtifact(s.ctx, s.h.Node, s.h.Role, s.h.To)
		notChecked := errors.Is(err, transport.ErrNotChecked)
		if err != nil && !notChecked {
			s.t.Errorf("CheckArtifact(%s, %s) = %v, want nil (the harness says %s is available) or an error wrapping transport.ErrNotChecked", s.h.Node, s.h.To, err, s.h.To)
		}
		if s.h.Missing != "" {
			err := ac.CheckArtifact(s.ctx, s.h.Node, s.h.Role, s.h.Missing)
			var ae *transport.ArtifactError
			switch {
			case notChecked:
				if !errors.Is(err, transport.ErrNotChecked) {
					s.t.Errorf("CheckArtifact(%s, %s) = %v, want transport.ErrNotChecked as for %s", s.h.Node, s.h.Missing, err, s.h.To)
				}
			case !errors.As(err, &ae) || !errors.Is(err, transport.ErrArtifact):
				s.t.Errorf("CheckArtifact(%s, %s) = %v (%T), want a *transport.ArtifactError wrapping transport.ErrArtifact", s.h.Node, s.h.Missing, err, err)
			case ae.Node != s.h.Node || ae.Version != s.h.Missing || ae.Checked == "" || ae.Problem == "":
				s.t.Errorf("ArtifactError = %+v, want node %s, version %s, what was checked and the problem", *ae, s.h.Node, s.h.Missing)
			}
		}
		const ghost = "conformance-no-such-node"
		if err := ac.CheckArtifact(s.ctx, ghost, s.h.Role, s.h.To); !errors.Is(err, transport.ErrUnknownNode) {
			s.t.Errorf("CheckArtifact of unknown node %q = %v, want an error wrapping transport.ErrUnknownNode", ghost, err)
		}
		if err := ac.CheckArtifact(s.ctx, s.h.Node, s.h.Role, "v"+s.h.To); !errors.Is(err, transport.ErrInvalidRequest) {
			s.t.Errorf("CheckArtifact(%s, v%s) = %v, want an error wrapping transport.ErrInvalidRequest", s.h.Node, s.h.To, err)
		}
		s.unchanged(before, "artifact checks")
	})
}

// suite is one subtest's view of a harness.
type suite struct {
	t   *testing.T
	h   Harness
	ctx context.Context
}

// snapshot is what State reports.
type snapshot struct {
	version string
	running bool
	inc     string
}

func newSuite(t *testing.T, h Harness) *suite {
	t.Helper()
	switch {
	case h.State == nil:
		t.Fatal("harness: State is nil")
	case h.Role != transport.RoleServer && h.Role != transport.RoleClient:
		t.Fatalf("harness: Role %q is neither server nor client", h.Role)
	case h.From == h.To:
		t.Fatalf("harness: From and To are both %q; the suite needs two versions", h.From)
	}
	if err := transport.ValidateNode(h.Node); err != nil {
		t.Fatalf("harness: Node: %v", err)
	}
	for _, v := range []string{h.From, h.To} {
		if err := transport.ValidateVersion(v); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return &suite{t: t, h: h, ctx: ctx}
}

func (s *suite) req(from, to string, mode transport.StopMode) transport.SwapRequest {
	return transport.SwapRequest{Node: s.h.Node, Role: s.h.Role, From: from, To: to, StopMode: mode}
}

// reporting gives req a Progress hook; got collects what it is told.
func (s *suite) reporting(req transport.SwapRequest) (_ transport.SwapRequest, got *[]transport.Phase) {
	got = &[]transport.Phase{}
	req.Progress = func(p transport.Phase) { *got = append(*got, p) }
	return req, got
}

func (s *suite) state() snapshot {
	s.t.Helper()
	v, running, inc, err := s.h.State(s.ctx, s.h.Node)
	if err != nil {
		s.t.Fatalf("harness State(%s): %v", s.h.Node, err)
	}
	return snapshot{version: v, running: running, inc: inc}
}

// mustRun fails the test unless the node runs version on a live agent.
func (s *suite) mustRun(version string) snapshot {
	s.t.Helper()
	st := s.state()
	if st.version != version || !st.running {
		s.t.Fatalf("node %s runs %q (running %v), want %q running", s.h.Node, st.version, st.running, version)
	}
	return st
}

func (s *suite) mustSwap(req transport.SwapRequest) {
	s.t.Helper()
	if err := s.h.Transport.Swap(s.ctx, req); err != nil {
		s.t.Fatalf("Swap(%s %s: %q -> %q, stop %s) = %v, want nil", req.Role, req.Node, req.From, req.To, req.StopMode, err)
	}
}

func (s *suite) newIncarnation(before, after snapshot) {
	s.t.Helper()
	if after.inc == before.inc {
		s.t.Errorf("node %s: incarnation %q did not change, want a restarted agent", s.h.Node, before.inc)
	}
}

// unchanged fails the test if the node's state differs from before.
func (s *suite) unchanged(before snapshot, after string) {
	s.t.Helper()
	if now := s.state(); now != before {
		s.t.Errorf("node %s changed after %s: %+v -> %+v, want untouched", s.h.Node, after, before, now)
	}
}

// refused checks that req is refused as an invalid request at validation.
func (s *suite) refused(req transport.SwapRequest) {
	s.t.Helper()
	err := s.h.Transport.Swap(s.ctx, req)
	if !errors.Is(err, transport.ErrInvalidRequest) {
		s.t.Errorf("Swap(node %q, role %q, %q -> %q, stop %q) = %v, want an error wrapping transport.ErrInvalidRequest", req.Node, req.Role, req.From, req.To, req.StopMode, err)
		return
	}
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Phase != transport.PhaseValidate {
		s.t.Errorf("Swap(node %q, %q -> %q) = %v, want a *transport.SwapError with Phase %q", req.Node, req.From, req.To, err, transport.PhaseValidate)
	}
}
