package upgrade

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// gather is one attempt's gather.
func gather(ctx context.Context, c Consul, serverAPI ServerAPIFunc, step planner.Step, alive *aliveWatch) *gateInputs {
	return newGatherer(ctx, c, serverAPI).gather(step, alive)
}

// everyCheck is every gate condition, so that one gather reads all that
// any step's gate could need.
var everyCheck = []planner.GateCheck{
	planner.GateLeaderKnown, planner.GateVersion, planner.GateSerfAlive, planner.GateVoter,
	planner.GateAutopilotHealthy, planner.GateStable, planner.GateTrailingLogs, planner.GateCommitIndex,
	planner.GateLastContact, planner.GateFailureTolerance, planner.GateRemoved, planner.GateRaftTerm,
}

// One attempt reads each endpoint at most once (each server's own
// /v1/agent/self once per server), whatever the conditions ask, and only
// the endpoints of its era.
func TestAGatherReadsEachEndpointOncePerAttemptInEveryEra(t *testing.T) {
	type calls map[string]int
	cases := []struct {
		eraCase
		want calls
	}{
		{eraCases[1], calls{"/v1/status/leader": 1, "/v1/agent/members": 1, "/v1/status/peers": 1, "/v1/agent/self": 2, "/v1/catalog/services": 2,
			"/v1/operator/raft/configuration": 0, "/v1/operator/autopilot/health": 0}},
		{eraCases[2], calls{"/v1/status/leader": 1, "/v1/agent/members": 1, "/v1/operator/raft/configuration": 1, "/v1/agent/self": 2,
			"/v1/status/peers": 0, "/v1/operator/autopilot/health": 0, "/v1/catalog/services": 0}},
		{eraCases[3], calls{"/v1/status/leader": 1, "/v1/agent/members": 1, "/v1/operator/raft/configuration": 1, "/v1/agent/self": 2,
			"/v1/status/peers": 0, "/v1/operator/autopilot/health": 0}},
		// Autopilot answers health itself; commit-index still compares the
		// raft stats of the server and the leader.
		{eraCases[4], calls{"/v1/status/leader": 1, "/v1/agent/members": 1, "/v1/operator/raft/configuration": 1, "/v1/operator/autopilot/health": 1,
			"/v1/agent/self": 2, "/v1/status/peers": 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := consultest.NewCluster(3, 1, tc.version, consultest.WithEra(tc.era))
				step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", To: tc.version, Gate: everyCheck}
				in := gather(t.Context(), inProcessConsul(t, s), simServers(t, s), step, nil)
				for path, n := range tc.want {
					if got := s.Calls(path); got != n {
						t.Errorf("%s read %d times in one attempt, want %d", path, got, n)
					}
				}
				if e, err := in.era(); err != nil || e != tc.eraCase.want {
					t.Errorf("era of the inputs = %s, %v; want %s", e, err, tc.eraCase.want)
				}
				for _, n := range []string{"s1", "s2"} {
					if _, err := in.stats(n); err != nil {
						t.Errorf("stats of %s: %v", n, err)
					}
				}
			})
		})
	}
}

// A gate that needs only serf (a client wave's) reads only the members.
func TestAGatherReadsOnlyWhatTheConditionsNeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 2, "1.12.9")
		step := planner.Step{Kind: planner.StepSwapClients, Nodes: []string{"c1", "c2"}, To: "1.12.9",
			Gate: []planner.GateCheck{planner.GateVersion, planner.GateSerfAlive}}
		in := gather(t.Context(), inProcessConsul(t, s), nil, step, nil)
		for _, p := range []string{"/v1/status/leader", "/v1/operator/raft/configuration", "/v1/operator/autopilot/health", "/v1/agent/self"} {
			if n := s.Calls(p); n != 0 {
				t.Errorf("%s read %d times for a gate on version and serf-alive", p, n)
			}
		}
		if s.Calls("/v1/agent/members") != 1 || in.Members == nil || in.Members.Err != nil {
			t.Errorf("members read %d times (%+v), want once", s.Calls("/v1/agent/members"), in.Members)
		}
	})
}

// Read errors are kept as data, each of its kind: a missing endpoint, an
// unreachable agent, a read cut by the gate's context, another failure.
func TestAGatherKeepsEachReadErrorAsWhatItIs(t *testing.T) {
	step := planner.Step{Kind: planner.StepSwapServer, Node: "s1", To: "1.12.9", Gate: []planner.GateCheck{planner.GateLeaderKnown, planner.GateVoter}}
	t.Run("an older agent's missing endpoint", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := consultest.NewCluster(3, 0, "1.12.9")
			c := &olderAgent{consulEra: inProcessConsul(t, s).(consulEra)}
			in := gather(t.Context(), c, nil, step, nil)
			if in.Raft == nil || in.Raft.Err == nil || in.Raft.Err.Kind != readMissing || !errors.Is(in.Raft.Err, ErrEndpointMissing) {
				t.Fatalf("raft configuration = %+v, want a missing endpoint", in.Raft)
			}
			if e, err := in.era(); err != nil || e != EraPeers {
				t.Errorf("era = %s, %v; want %s, lowered by the missing endpoint", e, err, EraPeers)
			}
			if in.Peers == nil || in.Peers.Err != nil || len(in.Peers.Value) != 3 {
				t.Errorf("peers = %+v, want the three servers from /v1/status/peers", in.Peers)
			}
		})
	})
	t.Run("an unreachable agent", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := consultest.NewCluster(3, 0, "1.12.9")
			s.SetUnreachable(true)
			in := gather(t.Context(), inProcessConsul(t, s), nil, step, nil)
			if in.Leader == nil || in.Leader.Err == nil || in.Leader.Err.Kind != readUnreachable {
				t.Errorf("leader = %+v, want unreachable", in.Leader)
			}
		})
	})
	t.Run("an agent answering 500", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := consultest.NewCluster(3, 0, "1.12.9")
			s.SetDown(true)
			in := gather(t.Context(), inProcessConsul(t, s), nil, step, nil)
			if in.Members == nil || in.Members.Err == nil || in.Members.Err.Kind != readFailed {
				t.Errorf("members = %+v, want failed", in.Members)
			}
		})
	})
	t.Run("a read cut by the gate's deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := consultest.NewCluster(3, 0, "1.13.9")
			c := slowRaft{apiConsul: inProcessConsul(t, s).(*apiConsul), from: time.Now()}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			in := gather(ctx, c, nil, step, nil)
			if in.Raft == nil || in.Raft.Err == nil || in.Raft.Err.Kind != readCut {
				t.Errorf("raft configuration = %+v, want cut", in.Raft)
			}
			if in.Leader == nil || in.Leader.Err != nil {
				t.Errorf("leader = %+v, want read before the cut", in.Leader)
			}
		})
	})
	t.Run("another server's stats without ServerAPI", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := consultest.NewCluster(3, 0, "0.7.5", consultest.WithEra(consultest.Era07))
			st := planner.Step{Kind: planner.StepSwapServer, Node: "s2", To: "0.7.5", Gate: []planner.GateCheck{planner.GateLastContact}}
			in := gather(t.Context(), inProcessConsul(t, s), nil, st, nil)
			_, err := in.stats("s2")
			if err == nil || err.Kind != readUncheckable || !errors.Is(err, ErrNoServerAPI) {
				t.Errorf("stats of s2 = %v, want uncheckable for want of a ServerAPI", err)
			}
		})
	})
}
