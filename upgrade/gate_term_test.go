package upgrade

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func TestAnElectionStormDuringAServerSwapHaltsTheRunAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		inner := r.tr.onSwap
		var once sync.Once
		r.tr.onSwap = func(node, version string, ok bool) {
			inner(node, version, ok)
			once.Do(func() { r.sim.AddElections(MaxTermRise + 1) })
		}
		start := time.Now()
		_, err := Run(t.Context(), r.cfg)
		var h *HaltError
		var ge *GateError
		if !errors.As(err, &h) || !errors.As(err, &ge) || ge.Condition != planner.GateRaftTerm || !errors.Is(err, ErrElectionStorm) {
			t.Fatalf("err = %v, want a *HaltError whose gate failed raft-term with ErrElectionStorm", err)
		}
		if waited := time.Since(start); waited >= r.cfg.GateTimeout {
			t.Errorf("the run halted after %s, want at once rather than after the gate timeout %s", waited, r.cfg.GateTimeout)
		}
		for _, want := range []string{"raft-term failed", "election storm", "elections during the step"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		servers := 0
		for _, s := range r.tr.swapped() {
			if s.Role == transport.RoleServer {
				servers++
			}
		}
		if servers != 1 {
			t.Errorf("%d servers swapped, want only the one whose gate saw the storm", servers)
		}
	})
}

func TestALeaderSwappedLastIsOneElectionNotAStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		before := r.sim.Term()
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if after := r.sim.Term(); after != before+1 {
			t.Errorf("the term went from %d to %d; the simulated leader swap is one election", before, after)
		}
	})
}

// The term is read from the leader's own raft stats through the
// ServerAPI, from the agent asked without it, and not at all before 0.7.
func TestTheRaftTermIsReadWhereTheEraHasIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", To: "1.12.9", Gate: []planner.GateCheck{planner.GateRaftTerm}}
		s := consultest.NewCluster(3, 0, "1.12.9")
		s.AddElections(4)
		in := gather(t.Context(), inProcessConsul(t, s), simServers(t, s), step, nil)
		if tr, err := in.Term.get(""); err != nil || tr.Node != "s1" || tr.Term != s.Term() {
			t.Errorf("through the ServerAPI: term %+v, %v; want the leader s1's %d", tr, err, s.Term())
		}
		in = gather(t.Context(), inProcessConsul(t, s), nil, step, nil)
		if tr, err := in.Term.get(""); err != nil || tr.Term != s.Term() {
			t.Errorf("from the agent asked: term %+v, %v; want %d", tr, err, s.Term())
		}
		old := consultest.NewCluster(3, 0, "0.6.4", consultest.WithEra(consultest.Era06))
		in = gather(t.Context(), inProcessConsul(t, old), simServers(t, old), step, nil)
		v := judge(planner.GateRaftTerm, judging{step: step, in: in, carry: gateCarry{TermBefore: 3}})
		if !v.OK || !strings.HasPrefix(v.Detail, "not checked") {
			t.Errorf("before 0.7: %+v, want a verdict that holds saying it was not checked", v)
		}
	})
}
