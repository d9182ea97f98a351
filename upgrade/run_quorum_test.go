package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

// outages returns the details of the planned-outage events.
func (r *runRig) outages() []string {
	var out []string
	for _, e := range r.events {
		if e.Kind == EventPlannedOutage {
			out = append(out, e.Detail)
		}
	}
	return out
}

// A datacenter of two voters (here: three, one killed and removed by
// autopilot before the run) has no spare: Run refuses it by no-spare-voter
// before anything is touched.
func TestRunRefusesTwoVotersLeftAfterAutopilotRemovedADeadServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		mustDo(t, r.sim.Kill("s3"))
		mustDo(t, r.sim.RemoveDeadServer("s3"))
		res, err := Run(t.Context(), r.cfg)
		var re *planner.RefusedError
		if !errors.As(err, &re) || len(re.Findings) != 1 || re.Findings[0].Rule != planner.PrecheckNoSpareVoter {
			t.Fatalf("err = %v, want a *planner.RefusedError by %s only", err, planner.PrecheckNoSpareVoter)
		}
		if !strings.Contains(err.Error(), "missing: s3 (1.12.9, left in serf, not in the Raft configuration)") {
			t.Errorf("error %q should name s3 missing", err)
		}
		untouched(t, r, res)
	})
}

// Two voters by design, refused; with no-spare-voter waived the run goes
// on, each server's stop being the datacenter's planned outage, said in an
// event.
func TestRunRefusesTwoVotersAndAcceptsThemWhenNoSpareVoterIsWaived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 2, 1)
		res, err := Run(t.Context(), r.cfg)
		var re *planner.RefusedError
		if !errors.As(err, &re) || re.Findings[0].Rule != planner.PrecheckNoSpareVoter {
			t.Fatalf("err = %v, want refused by %s", err, planner.PrecheckNoSpareVoter)
		}
		untouched(t, r, res)

		r.cfg.Policy.Waive = []planner.RuleID{planner.PrecheckNoSpareVoter}
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run with %s waived: %v", planner.PrecheckNoSpareVoter, err)
		}
		for _, n := range []string{"s1", "s2", "c1"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s, want 1.13.9", n, v)
			}
		}
		out := r.outages()
		if len(out) != 2 {
			t.Fatalf("planned-outage events %q, want one per server", out)
		}
		for _, o := range out {
			if !strings.Contains(o, "no-spare-voter is waived") || !strings.Contains(o, "the datacenter has no leader and writes fail until") {
				t.Errorf("planned outage %q should say the waiver and that there is no leader until the server is back", o)
			}
		}
	})
}

// A single server keeps its planned outage: it is stopped, and the event
// says plainly that the datacenter has no leader until it is back.
func TestRunSwapsASingleServerAndSaysItsPlannedOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 1, 1)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if v := r.sim.Version("s1"); v != "1.13.9" {
			t.Errorf("s1 runs %s, want 1.13.9", v)
		}
		want := "s1 is the only voter of datacenter dc1: stopping it is the datacenter's planned outage (failure-tolerance-zero); it has no leader and writes fail until s1 is back"
		if out := r.outages(); !slices.Equal(out, []string{want}) {
			t.Errorf("planned-outage events %q, want [%q]", out, want)
		}
	})
}

// Rolling the single server back is the same planned outage: it is not
// refused as a lost quorum (it was, before the stop checks used the
// current Raft configuration with the outage in mind).
func TestRunRollsBackASingleServerAsItsPlannedOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 1, 0)
		r.cfg.Rollback = true
		r.cfg.GateTimeout = 20 * time.Second
		r.cfg.OnEvent = func(e Event) {
			r.events = append(r.events, e)
			switch {
			case e.Kind == EventGateWaiting && e.Step.Kind == planner.StepSwapServer && r.sim.Version("s1") == "1.13.9":
				mustDo(t, r.sim.SetNeverHealthy("s1", true)) // the new version never gets healthy: no leader
			case e.Kind == EventPlannedOutage && strings.HasPrefix(e.Detail, "rollback of s1"):
				mustDo(t, r.sim.SetNeverHealthy("s1", false)) // the old version will be
			}
		}
		_, err := Run(t.Context(), r.cfg)
		var h *HaltError
		if !errors.As(err, &h) {
			t.Fatalf("err = %v, want a *HaltError", err)
		}
		if !h.RolledBack || r.sim.Version("s1") != "1.12.9" {
			t.Errorf("halt %+v, s1 on %s: want s1 rolled back to 1.12.9 and healthy", h, r.sim.Version("s1"))
		}
		if !slices.Equal(r.tr.rollbacks, []string{"s1"}) {
			t.Errorf("rollbacks %v (rollback error %v), want s1 rolled back", r.tr.rollbacks, h.RollbackErr)
		}
		var refused *QuorumError
		if errors.As(h.RollbackErr, &refused) {
			t.Errorf("the single server's rollback was refused: %v", h.RollbackErr)
		}
		if out := r.outages(); len(out) != 2 || !strings.HasPrefix(out[1], "rollback of s1: s1 is the only voter") {
			t.Errorf("planned-outage events %q, want the swap's and the rollback's", out)
		}
	})
}

// The run begins with failure tolerance 0: s3 is a voter autopilot does
// not call healthy, and server-unhealthy is waived. Stopping a follower
// would leave the leader alone up of three voters: the stop is refused
// from the current Raft configuration although the baseline tolerance was
// 0 (the old check skipped such a run as "small by design" and stopped it).
func TestRunRefusesAStopThatLosesTheQuorumEvenWhenTheRunBeganWithToleranceZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		mustDo(t, r.sim.SetNeverHealthy("s3", true))
		r.cfg.Policy.Waive = []planner.RuleID{planner.PrecheckServerUnhealthy}
		res, err := Run(t.Context(), r.cfg)
		if res.Baseline.FailureTolerance != 0 {
			t.Fatalf("baseline %+v: want failure tolerance 0", res.Baseline)
		}
		var h *StepRefusedError
		var refused *QuorumError
		if !errors.As(err, &h) || !errors.As(err, &refused) || refused.Rollback {
			t.Fatalf("err = %v, want a *StepRefusedError wrapping a *QuorumError of a swap's stop", err)
		}
		if refused.Voters != 3 || refused.Quorum != 2 || !slices.Equal(refused.Up, []string{"s1"}) {
			t.Errorf("refusal %+v, want 3 voters, quorum 2, only the leader s1 up", refused)
		}
		if s := serverSwaps(r.tr); len(s) != 0 {
			t.Errorf("servers swapped %v, want none", s)
		}
		if !strings.Contains(err.Error(), "voters of the current Raft configuration up (s1), below the quorum of 2") {
			t.Errorf("message %q should say what is up against the quorum", err)
		}
	})
}

// diedUnseen is the Fake whose agents on dead have been killed a moment
// ago: their hosts report no running agent, while serf and autopilot (the
// simulator, not told) still show them alive and healthy, as a real 1.13.9
// cluster did for 6-7 s after kill -9 of a follower.
type diedUnseen struct {
	*transporttest.Fake
	dead []string
}

func (d diedUnseen) RunningVersion(ctx context.Context, node string) (string, error) {
	if slices.Contains(d.dead, node) {
		return "", fmt.Errorf("node %s has no live agent process: %w", node, transport.ErrNotRunning)
	}
	return d.Fake.RunningVersion(ctx, node)
}

// Found on the demo cluster: a follower killed 3.8 s before the run's
// first server stop was still alive in serf and healthy in autopilot, the
// quorum check counted it up, and the run stopped the other follower: one
// voter of three left, no leader, writes failing for the whole gate. The
// hosts of the voters counted up are asked now; s3's says no agent runs,
// so stopping s2 would leave s1 alone: refused, nothing stopped.
func TestRunRefusesAStopWhenTheHostOfAVoterStillAliveInSerfSaysItsAgentIsGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		f := withFake(r)
		r.cfg.Transport = diedUnseen{Fake: f, dead: []string{"s3"}}
		res, err := Run(t.Context(), r.cfg)
		var h *StepRefusedError
		var refused *QuorumError
		if !errors.As(err, &h) || !errors.As(err, &refused) || refused.Rollback {
			t.Fatalf("err = %v, want a *StepRefusedError wrapping a *QuorumError of a swap's stop", err)
		}
		if refused.Node != "s2" || refused.Voters != 3 || refused.Quorum != 2 || !slices.Equal(refused.Up, []string{"s1"}) || !slices.Equal(refused.NotRunning, []string{"s3"}) {
			t.Errorf("refusal %+v, want s2 not stopped: 3 voters, quorum 2, s1 up, s3 not running", refused)
		}
		for _, want := range []string{"server s2 not stopped", "(s1), below the quorum of 2", "s3: alive in serf and healthy in autopilot, but the transport finds no agent running on the host"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q lacks %q", err, want)
			}
		}
		if s := swapsOf(f); len(s) != 0 {
			t.Errorf("swaps %v, want none", s)
		}
		if res == nil || len(res.Touched) != 0 {
			t.Errorf("touched %+v, want nothing", res)
		}
	})
}

// The host is asked only about the voters counted up, and a dead node that
// is the step's own costs no vote: s2, killed unseen and next in line, is
// swapped (its stop finds it down; the swap brings it back), and the run
// ends with every server on the target.
func TestRunSwapsAServerWhoseOwnAgentDiedUnseen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		f := withFake(r)
		d := &diedUnseen{Fake: f, dead: []string{"s2"}}
		r.cfg.Transport = revives{d}
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		for _, n := range []string{"s1", "s2", "s3", "c1"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s, want 1.13.9", n, v)
			}
		}
	})
}

// revives is diedUnseen whose dead agents run again once swapped.
type revives struct{ *diedUnseen }

func (v revives) Swap(ctx context.Context, req transport.SwapRequest) error {
	v.dead = slices.DeleteFunc(v.dead, func(n string) bool { return n == req.Node })
	return v.Fake.Swap(ctx, req)
}
