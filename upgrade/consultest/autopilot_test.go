package consultest_test

import (
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func TestTheAutopilotConfigurationIsWrittenOnlyByACompareAndSetAtItsModifyIndex(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.12.9")
	c, err := consultest.NewClient(sim)
	if err != nil {
		t.Fatal(err)
	}
	op := c.Operator()
	conf, err := op.AutopilotGetConfiguration(nil)
	if err != nil || !conf.CleanupDeadServers {
		t.Fatalf("GET = %+v, %v; want Consul's default, CleanupDeadServers on", conf, err)
	}
	stale := *conf
	conf.CleanupDeadServers = false
	if ok, err := op.AutopilotCASConfiguration(conf, nil); !ok || err != nil {
		t.Fatalf("CAS at the current index = %t, %v; want true", ok, err)
	}
	stale.MaxTrailingLogs = 1
	if ok, err := op.AutopilotCASConfiguration(&stale, nil); ok || err != nil {
		t.Fatalf("CAS at a stale index = %t, %v; want false", ok, err)
	}
	got := sim.AutopilotConfig()
	if got.CleanupDeadServers || got.MaxTrailingLogs != 250 || got.ModifyIndex != conf.ModifyIndex+1 {
		t.Errorf("after one CAS that held and one that failed: %+v", got)
	}
	sim.SetAutopilotConfig(func(ac *api.AutopilotConfiguration) { ac.MinQuorum = 3 })
	if w := sim.AutopilotWrites(); len(w) != 2 || w[1].MinQuorum != 3 {
		t.Errorf("writes %+v, want the CAS and the operator's change", w)
	}
}

func TestAnAgentBefore08HasNoAutopilotConfiguration(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "0.7.5", consultest.WithEra(consultest.Era07))
	c, err := consultest.NewClient(sim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Operator().AutopilotGetConfiguration(nil); err == nil {
		t.Fatal("a 0.7 agent answered the autopilot configuration")
	}
	if _, err := c.Operator().AutopilotCASConfiguration(&api.AutopilotConfiguration{}, nil); err == nil {
		t.Fatal("a 0.7 agent took an autopilot configuration")
	}
}
