package upgrade

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

// voters counts the simulated cluster's voting servers.
func (r *runRig) voters() int {
	n := 0
	for _, node := range r.sim.Nodes() {
		if node.Role == transport.RoleServer && node.Voter {
			n++
		}
	}
	return n
}

func TestRunReplaceAddsNewServersAndRetiresTheOldOnesWithTheLeaderLast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		f := withFake(r)
		r.cfg.Policy.Strategy = planner.Replace
		minVoters, maxVoters := r.voters(), r.voters()
		onEvent := r.cfg.OnEvent
		r.cfg.OnEvent = func(e Event) {
			onEvent(e)
			if e.Kind == EventStepDone || e.Kind == EventProvisioned || e.Kind == EventGateWaiting {
				minVoters, maxVoters = min(minVoters, r.voters()), max(maxVoters, r.voters())
			}
		}
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		var servers []string
		for _, n := range r.sim.Nodes() {
			if n.Role == transport.RoleServer {
				servers = append(servers, n.Name)
				if n.Version != "1.13.9" || !strings.HasPrefix(n.Name, "new-") || !n.Voter {
					t.Errorf("server after the run: %+v, want a new voter on 1.13.9", n)
				}
			}
		}
		if len(servers) != 3 {
			t.Errorf("servers after the run: %v, want 3", servers)
		}
		if v := r.sim.Version("c1"); v != "1.13.9" {
			t.Errorf("client c1 runs %s, want 1.13.9", v)
		}
		if got := r.sim.Removed(); !slices.Equal(got, []string{"s2", "s3", "s1"}) {
			t.Errorf("retired %v, want the followers s2, s3, then the leader s1", got)
		}
		if minVoters < 3 || maxVoters > 4 {
			t.Errorf("voters ranged %d..%d during the run, want 3..4", minVoters, maxVoters)
		}
		var kinds []string
		for _, s := range res.Steps {
			kinds = append(kinds, string(s.Step.Kind)+" "+s.Step.Node)
		}
		want := []string{"snapshot ", "add-server new-1", "retire-server s2", "add-server new-2", "retire-server s3", "add-server new-3", "retire-server s1", "swap-clients "}
		if !slices.Equal(kinds, want) {
			t.Errorf("steps %q, want %q", kinds, want)
		}
		for _, c := range f.Calls() {
			if c.Op == transporttest.OpSwap && c.Node != "c1" {
				t.Errorf("server %s was swapped in place under the replace strategy", c.Node)
			}
		}
	})
}

func TestValidateRefusesReplaceWithATransportThatCannotProvision(t *testing.T) {
	r := newRunRig(t, 3, 0)
	r.cfg.Policy.Strategy = planner.Replace
	err := r.cfg.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "Policy.Strategy" || !strings.Contains(err.Error(), "transport.Provisioner") {
		t.Fatalf("err = %v, want a *ConfigError on Policy.Strategy naming transport.Provisioner", err)
	}
	if _, err := Run(t.Context(), r.cfg); !errors.As(err, &ce) {
		t.Fatalf("Run: err = %v, want the *ConfigError", err)
	}
	if len(r.tr.swapped()) != 0 {
		t.Error("a refused config swapped nodes")
	}
}

func TestRunReplaceRetiresANewServerThatFailsItsGateWhenRollingBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		r.cfg.Policy.Strategy = planner.Replace
		r.cfg.Policy.NoSnapshot = true
		r.cfg.Rollback = true
		onProvision := f.OnProvision
		f.OnProvision = func(node string, role transport.Role, version string) {
			onProvision(node, role, version)
			mustDo(t, r.sim.SetNeverHealthy(node, true))
		}
		_, err := Run(t.Context(), r.cfg)
		var h *HaltError
		if !errors.As(err, &h) || !h.RolledBack || h.Step.Kind != planner.StepAddServer || !slices.Equal(h.RolledBackNodes, []string{"new-1"}) {
			t.Fatalf("err = %v, want a halt on add-server with new-1 retired again", err)
		}
		if gateCondition(h.Err) != planner.GateAutopilotHealthy {
			t.Errorf("halted on %q, want autopilot-healthy", gateCondition(h.Err))
		}
		var names []string
		for _, n := range r.sim.Nodes() {
			names = append(names, n.Name+"@"+n.Version)
		}
		if !slices.Equal(names, []string{"s1@1.12.9", "s2@1.12.9", "s3@1.12.9"}) {
			t.Errorf("cluster after the halt: %v, want the three old servers only", names)
		}
	})
}

func TestRunReplaceHaltsWhenProvisioningFailsAndTouchesNothingElse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		f := withFake(r)
		r.cfg.Policy.Strategy = planner.Replace
		r.cfg.Policy.NoSnapshot = true
		f.FailNextProvision(errors.New("no capacity in the pool"))
		_, err := Run(t.Context(), r.cfg)
		var h *StepRefusedError
		if !errors.As(err, &h) || h.Step.Kind != planner.StepAddServer || !strings.Contains(err.Error(), "no capacity in the pool") {
			t.Fatalf("err = %v, want a *StepRefusedError of add-server carrying the transport's error (nothing was provisioned)", err)
		}
		for _, c := range f.Calls() {
			if c.Op != transporttest.OpProvision {
				t.Errorf("after a failed provision the run still did %s %s", c.Op, c.Node)
			}
		}
		if len(r.sim.Nodes()) != 3 {
			t.Errorf("cluster has %d nodes, want the 3 old servers", len(r.sim.Nodes()))
		}
	})
}
