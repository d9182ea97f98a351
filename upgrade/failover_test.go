package upgrade

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// agentEndpoints returns a failover endpoint for each named agent of sim,
// each talking to that agent alone (refused while it is down).
func agentEndpoints(t *testing.T, sim *consultest.Cluster, names ...string) []Endpoint {
	t.Helper()
	var eps []Endpoint
	for _, name := range names {
		n, ok := sim.Node(name)
		if !ok {
			t.Fatalf("no node %s", name)
		}
		c, err := sim.ClientAt(n.Address)
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, Endpoint{Addr: n.Address + ":8500", Consul: NewConsul(c)})
	}
	return eps
}

// killAgentMidGate stops agent node (refused connections, failed in serf)
// when the gate of the first server swap first waits, and starts it again
// after back (never when back is 0).
func killAgentMidGate(t *testing.T, r *runRig, node string, back time.Duration) *time.Time {
	var once sync.Once
	killed := new(time.Time)
	prev := r.cfg.OnEvent
	r.cfg.OnEvent = func(e Event) {
		prev(e)
		if e.Kind == EventGateWaiting && e.Step.Kind == planner.StepSwapServer {
			once.Do(func() {
				mustDo(t, r.sim.Swap(node, r.sim.Version(node), false))
				*killed = time.Now()
				if back > 0 {
					go func() {
						time.Sleep(back)
						mustDo(t, r.sim.Swap(node, r.sim.Version(node), true))
					}()
				}
			})
		}
	}
	return killed
}

// The agent the run talks to dies while a server's gate waits: the run
// goes on through the next configured agent and completes; the dead agent,
// back later, is upgraded with the others.
func TestRunFailsOverToTheNextAgentWhenItsAgentDiesMidGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		var switches []string
		fc, err := Failover(agentEndpoints(t, r.sim, "c1", "c2"), func(from, to string, cause error) {
			switches = append(switches, from+" -> "+to)
			var ue *AgentUnreachableError
			if !errors.As(cause, &ue) || len(ue.Tried) != 1 {
				t.Errorf("switch %s -> %s caused by %v, want an *AgentUnreachableError naming the dead agent", from, to, cause)
			}
		})
		mustDo(t, err)
		r.cfg.Consul = fc
		killed := killAgentMidGate(t, r, "c1", 20*time.Second)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if killed.IsZero() {
			t.Fatal("c1 was never killed")
		}
		c1, c2 := agentEndpoints(t, r.sim, "c1")[0].Addr, agentEndpoints(t, r.sim, "c2")[0].Addr
		if len(switches) == 0 || switches[0] != c1+" -> "+c2 {
			t.Errorf("switches %v, want the first from c1 (%s) to c2 (%s)", switches, c1, c2)
		}
		for _, n := range []string{"s1", "s2", "s3", "c1", "c2"} {
			if v := r.sim.Version(n); v != "1.13.9" {
				t.Errorf("%s runs %s after the run, want 1.13.9", n, v)
			}
		}
	})
}

// With no other agent to go to, the gate gets no answer until its timeout
// and the run halts with a *HaltError whose gate error wraps an
// *AgentUnreachableError naming the address tried; nothing after the
// swapped server is touched.
func TestRunHaltsNamingEveryAddressTriedWhenNoAgentAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		r.cfg.GateTimeout = 30 * time.Second
		eps := agentEndpoints(t, r.sim, "c1", "c2")
		fc, err := Failover(eps, nil)
		mustDo(t, err)
		r.cfg.Consul = fc
		killAgentMidGate(t, r, "c1", 0)
		killAgentMidGate(t, r, "c2", 0)
		_, err = Run(t.Context(), r.cfg)
		var halt *HaltError
		var ge *GateError
		var ue *AgentUnreachableError
		if !errors.As(err, &halt) || !errors.As(err, &ge) || !errors.As(err, &ue) {
			t.Fatalf("Run = %v, want a *HaltError wrapping a *GateError wrapping an *AgentUnreachableError", err)
		}
		if len(ue.Tried) != 2 || ue.Tried[0] != eps[0].Addr || ue.Tried[1] != eps[1].Addr {
			t.Errorf("addresses tried %v, want both, in order (%s, %s)", ue.Tried, eps[0].Addr, eps[1].Addr)
		}
		if !strings.Contains(err.Error(), "no consul agent answered (tried 2: ") {
			t.Errorf("message %q does not say that no agent answered", err)
		}
		var servers []string
		for _, s := range r.tr.swapped() {
			servers = append(servers, s.Node)
		}
		if len(servers) != 1 || halt.Step.Node != servers[0] {
			t.Errorf("swapped %v and halted at %s, want one server swapped, the one whose gate got no answer", servers, halt.Step.Node)
		}
	})
}

// An agent of another datacenter is never used: failing over to it would
// observe (and act on) a cluster the run was not asked about.
func TestFailoverNeverUsesAnAgentOfAnotherDatacenter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dc1 := consultest.NewCluster(3, 1, "1.12.9")
		dc2 := consultest.NewCluster(3, 1, "1.12.9", consultest.WithDatacenter("dc2", "dc1"), consultest.WithNodePrefix("dc2-"))
		eps := append(agentEndpoints(t, dc1, "c1"), agentEndpoints(t, dc2, "dc2-c1")...)
		eps[1].Addr = "dc2:8500" // both simulated agents have the same address
		fc, err := Failover(eps, nil)
		mustDo(t, err)
		if _, err := fc.Members(t.Context()); err != nil {
			t.Fatalf("Members through dc1's c1: %v", err)
		}
		mustDo(t, dc1.Swap("c1", "1.12.9", false))
		_, err = fc.Members(t.Context())
		var ue *AgentUnreachableError
		if !errors.As(err, &ue) || len(ue.Tried) != 2 || !strings.Contains(ue.Errs[1].Error(), "agent of datacenter dc2, not dc1") {
			t.Fatalf("Members with dc1's agent down = %v, want an *AgentUnreachableError saying dc2's agent is not used", err)
		}
		if fc.Current() != eps[0].Addr {
			t.Errorf("agent in use %s, want still dc1's %s", fc.Current(), eps[0].Addr)
		}
	})
}

func TestFailoverRefusesABadEndpointList(t *testing.T) {
	c := NewConsul(nil)
	for name, eps := range map[string][]Endpoint{
		"none":          nil,
		"empty address": {{Addr: "", Consul: c}},
		"twice":         {{Addr: "a:8500", Consul: c}, {Addr: "a:8500", Consul: c}},
		"nil consul":    {{Addr: "a:8500"}},
	} {
		var ce *ConfigError
		if _, err := Failover(eps, nil); !errors.As(err, &ce) {
			t.Errorf("%s: Failover = %v, want a *ConfigError", name, err)
		}
	}
}
