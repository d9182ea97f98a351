package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

// untouchedFake fails the test when the fake saw a swap, a rollback, a stop or
// a start, or the simulator a snapshot: a refused run touches nothing.
func untouchedFake(t *testing.T, r *runRig, f *transporttest.Fake) {
	t.Helper()
	for _, c := range f.Calls() {
		if c.Op == transporttest.OpSwap || c.Op == transporttest.OpRollback || c.TouchesState() {
			t.Errorf("the refused run touched a node: %+v", c)
		}
	}
	if len(r.snapshots) != 0 || r.sim.Calls("/v1/snapshot") != 0 {
		t.Errorf("the refused run took a snapshot (%v)", r.snapshots)
	}
}

func checkedOn(f *transporttest.Fake) []string {
	var out []string
	for _, c := range f.Calls() {
		if c.Op == transporttest.OpCheckArtifact {
			out = append(out, c.Node+"@"+c.To)
		}
	}
	slices.Sort(out)
	return out
}

func preflightEvents(r *runRig) []Event {
	var out []Event
	for _, e := range r.events {
		if e.Kind == EventPreflight {
			out = append(out, e)
		}
	}
	return out
}

func TestAMissingBinaryOnOneNodeRefusesTheRunBeforeTheFirstStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		f := withFake(r)
		f.MissingBinary("s2", "1.13.9")
		_, err := Run(t.Context(), r.cfg)
		var pe *PreflightError
		if !errors.As(err, &pe) || len(pe.Problems) != 1 {
			t.Fatalf("Run = %v, want a *PreflightError with one problem", err)
		}
		p := pe.Problems[0]
		if p.Node != "s2" || p.Role != transport.RoleServer || p.Version != "1.13.9" || p.Rollback {
			t.Errorf("problem = %+v, want server s2 missing 1.13.9 for its swap", p)
		}
		var ae *transport.ArtifactError
		if !errors.As(err, &ae) || ae.Node != "s2" {
			t.Errorf("Run = %v, want the transport's *ArtifactError reachable", err)
		}
		for _, w := range []string{"server s2, for the swap to 1.13.9", "missing", "install consul 1.13.9 on s2", "refused before anything was touched"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		untouchedFake(t, r, f)
		if got, want := checkedOn(f), []string{"c1@1.13.9", "c2@1.13.9", "s1@1.13.9", "s2@1.13.9", "s3@1.13.9"}; !slices.Equal(got, want) {
			t.Errorf("checked %v, want every node for its swap %v", got, want)
		}
		k := r.kinds()
		if !slices.Contains(k, EventLocked) || slices.Index(k, EventLocked) > slices.Index(k, EventPreflight) {
			t.Errorf("events %v: the check must come after the lock is taken", k)
		}
		if k[len(k)-1] != EventHalted || !slices.Contains(k, EventUnlocked) {
			t.Errorf("events %v: want the lock given back and a halted event last", k)
		}
		var named bool
		for _, e := range preflightEvents(r) {
			named = named || (e.Node == "s2" && e.Err != nil)
		}
		if !named {
			t.Errorf("no preflight event names s2: %+v", preflightEvents(r))
		}
	})
}

func TestEveryHopOfThePathIsCheckedOnEveryNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		r.cfg.Target = "1.15.11" // 1.12.9 -> 1.14.11 -> 1.15.11
		f := withFake(r)
		f.MissingBinary("c1", "1.15.11") // a client, at the second hop only
		_, err := Run(t.Context(), r.cfg)
		var pe *PreflightError
		if !errors.As(err, &pe) || len(pe.Problems) != 1 || pe.Problems[0].Node != "c1" || pe.Problems[0].Version != "1.15.11" {
			t.Fatalf("Run = %v, want a *PreflightError naming c1 and 1.15.11", err)
		}
		untouchedFake(t, r, f)
		var want []string
		for _, n := range []string{"c1", "s1", "s2", "s3"} {
			want = append(want, n+"@1.14.11", n+"@1.15.11")
		}
		if got := checkedOn(f); !slices.Equal(got, want) {
			t.Errorf("checked %v, want %v", got, want)
		}
	})
}

func TestWithRollbackTheVersionToReturnToIsCheckedToo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		r.cfg.Rollback = true
		f.MissingBinary("s3", "1.12.9")
		_, err := Run(t.Context(), r.cfg)
		var pe *PreflightError
		if !errors.As(err, &pe) || len(pe.Problems) != 1 || !pe.Problems[0].Rollback || pe.Problems[0].Version != "1.12.9" {
			t.Fatalf("Run = %v, want a *PreflightError for the rollback binary 1.12.9 of s3", err)
		}
		if !strings.Contains(err.Error(), "server s3, for a rollback to 1.12.9") {
			t.Errorf("error %q does not say the binary is the rollback's", err)
		}
		untouchedFake(t, r, f)
	})
}

func TestWithoutTheLockTheCheckStillComesFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		r.cfg.NoLock = true
		f.MissingBinary("s1", "")
		_, err := Run(t.Context(), r.cfg)
		var pe *PreflightError
		if !errors.As(err, &pe) || len(pe.Problems) != 1 || pe.Problems[0].Node != "s1" {
			t.Fatalf("Run = %v, want a *PreflightError naming s1", err)
		}
		untouchedFake(t, r, f)
	})
}

// blindFake is the fake with an artifact check that cannot tell, as
// transport/exec without a Check command.
type blindFake struct{ *transporttest.Fake }

func (blindFake) CheckArtifact(ctx context.Context, node string, role transport.Role, version string) error {
	return fmt.Errorf("%w: no Check command", transport.ErrNotChecked)
}

func TestBinariesThatCannotBeCheckedAreReportedAsNotVerifiedAndTheRunGoesOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		tr   func(f *transporttest.Fake) transport.Transport
		want string
	}{
		{"a checker that cannot tell", func(f *transporttest.Fake) transport.Transport { return blindFake{f} }, "5 of 5 binaries not verified"},
		{"a transport without a check", func(f *transporttest.Fake) transport.Transport { return struct{ transport.Transport }{f} }, "binaries not verified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRunRig(t, 3, 2)
				f := withFake(r)
				r.cfg.Transport = tc.tr(f)
				if _, err := Run(t.Context(), r.cfg); err != nil {
					t.Fatalf("Run: %v", err)
				}
				var said bool
				for _, e := range preflightEvents(r) {
					said = said || strings.Contains(e.Detail, tc.want)
				}
				if !said {
					t.Errorf("preflight events %+v, want one saying %q", preflightEvents(r), tc.want)
				}
				if n, _ := f.Node("c2"); n.Version != "1.13.9" {
					t.Errorf("c2 = %+v, want the run to have gone on to the target", n)
				}
			})
		})
	}
}

func TestADryRunReportsAMissingBinaryWithoutFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		r.cfg.DryRun = true
		f.MissingBinary("s2", "1.13.9")
		res, err := Run(t.Context(), r.cfg)
		if err != nil || res.Plan == nil {
			t.Fatalf("dry run = %v (plan %v), want the plan and no error", err, res.Plan)
		}
		var node, outcome bool
		for _, e := range preflightEvents(r) {
			node = node || (e.Node == "s2" && errors.Is(e.Err, transport.ErrArtifact))
			outcome = outcome || strings.Contains(e.Detail, "1 missing; a run would be refused")
		}
		if !node || !outcome {
			t.Errorf("preflight events %+v, want s2 named and the outcome", preflightEvents(r))
		}
		untouchedFake(t, r, f)
	})
}

// noRollback is the fake as a transport that implements Rollbacker but
// cannot roll back (transport/exec without a Rollback command).
type noRollback struct{ *transporttest.Fake }

func (noRollback) CanRollback() error {
	return errors.New("the exec transport has no Rollback command (Config.Rollback)")
}

func TestARollbackTheTransportCannotPerformIsRefusedAtTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		r.cfg.Transport = noRollback{f}
		r.cfg.Rollback = true
		_, err := Run(t.Context(), r.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "Rollback" {
			t.Fatalf("Run = %v, want a *ConfigError on Rollback", err)
		}
		for _, w := range []string{"no Rollback command", "unset Rollback", "refused before anything was touched"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		untouchedFake(t, r, f)
		if n := r.sim.Calls("/v1/agent/members"); n != 0 {
			t.Errorf("the refused run observed the cluster (%d calls)", n)
		}
		r.cfg.Rollback = false
		if err := r.cfg.Validate(); err != nil {
			t.Errorf("without Rollback the same config = %v, want valid", err)
		}
	})
}

func TestATargetThatIsNotAReleaseIsRefusedByValidateAndRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		r.cfg.Target = "1.13.99"
		_, err := Run(t.Context(), r.cfg)
		var ce *ConfigError
		var ue *planner.UnknownReleaseError
		if !errors.As(err, &ce) || ce.Field != "Target" || !errors.As(err, &ue) {
			t.Fatalf("Run = %v, want a *ConfigError on Target wrapping *planner.UnknownReleaseError", err)
		}
		if !slices.Equal(ue.Nearest, []string{"1.13.9", "1.14.0"}) {
			t.Errorf("nearest = %v, want [1.13.9 1.14.0]", ue.Nearest)
		}
		untouchedFake(t, r, f)
		for _, ok := range []planner.Policy{{Releases: []string{"1.13.99"}}, {Waive: []planner.RuleID{planner.PrecheckUnknownRelease}}} {
			r.cfg.Policy = ok
			if err := r.cfg.Validate(); err != nil {
				t.Errorf("Validate with %+v = %v, want an in-house build (listed) or a waiver accepted", ok, err)
			}
		}
		r.cfg.Policy, r.cfg.Target = planner.Policy{}, "1.19.10"
		if err := r.cfg.Validate(); err != nil {
			t.Errorf("Validate(1.19.10) = %v, want it left to the planner (an Enterprise cluster may have it)", err)
		}
	})
}

func TestNodesThatFailTheSameCheckAreNamedTogether(t *testing.T) {
	shared := func(node string) error {
		return &transport.ArtifactError{Node: node, Version: "1.13.9", Checked: "binary /srv/consul-1.13.9", Problem: "it does not exist", Fix: "build it"}
	}
	e := &PreflightError{Problems: []PreflightProblem{
		{Node: "s1", Role: transport.RoleServer, Version: "1.13.9", Err: shared("s1")},
		{Node: "s2", Role: transport.RoleServer, Version: "1.13.9", Err: errors.New("node s2: check consul 1.13.9: connect: connection refused")},
		{Node: "c1", Role: transport.RoleClient, Version: "1.13.9", Err: shared("c1")},
	}}
	want := "pre-flight: 3 node(s) cannot get a binary the run needs; the run was refused before anything was touched" +
		"; server s1, client c1, for the swap to 1.13.9: cannot get consul 1.13.9: checked binary /srv/consul-1.13.9: it does not exist; build it" +
		"; server s2, for the swap to 1.13.9: node s2: check consul 1.13.9: connect: connection refused"
	if got := e.Error(); got != want {
		t.Errorf("error:\n%s\nwant\n%s", got, want)
	}
}

// unreachableFake is the fake with hosts the transport cannot reach, as
// transport/ssh reports a host whose sshd refuses the connection.
type unreachableFake struct {
	*transporttest.Fake
	down map[string]bool
}

func (u unreachableFake) CheckArtifact(ctx context.Context, node string, role transport.Role, version string) error {
	if u.down[node] {
		return fmt.Errorf("node %s: host 10.0.0.9:22 cannot be reached as ops (connect): connection refused: %w", node, transport.ErrUnreachable)
	}
	return u.Fake.CheckArtifact(ctx, node, role, version)
}

func TestAHostThatCannotBeReachedRefusesTheRunBeforeTheFirstStopNamedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		f := withFake(r)
		r.cfg.Rollback = true // two checks per node: the target and the version to return to
		f.MissingBinary("c1", "1.13.9")
		r.cfg.Transport = unreachableFake{Fake: f, down: map[string]bool{"c2": true, "s3": true}}
		_, err := Run(t.Context(), r.cfg)
		var pe *PreflightError
		if !errors.As(err, &pe) || !errors.Is(err, transport.ErrUnreachable) {
			t.Fatalf("Run = %v, want a *PreflightError wrapping transport.ErrUnreachable", err)
		}
		msg := err.Error()
		for _, w := range []string{
			"pre-flight: 2 node(s) cannot be reached and 1 cannot get a binary the run needs; the run was refused before anything was touched",
			"; client c2: node c2: host 10.0.0.9:22 cannot be reached as ops (connect): connection refused",
			"; server s3: node s3: host",
			"client c1, for the swap to 1.13.9",
		} {
			if !strings.Contains(msg, w) {
				t.Errorf("error does not say %q:\n%s", w, msg)
			}
		}
		if n := strings.Count(msg, "node c2: host"); n != 1 {
			t.Errorf("c2 is named %d times, want once (it failed both its checks the same way):\n%s", n, msg)
		}
		untouchedFake(t, r, f)
	})
}
