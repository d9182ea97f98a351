package consultest_test

import (
	"net/http"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func TestAKilledServerStaysAFailedVoterUntilAutopilotRemovesItAndSerfListsItAsLeft(t *testing.T) {
	sim := consultest.NewCluster(3, 1, "1.12.9")
	must(t, sim.Kill("s1")) // the leader
	if l := sim.Leader(); l == "s1" || l == "" {
		t.Fatalf("leader after s1 was killed: %q, want another server", l)
	}
	var members []api.AgentMember
	get(t, sim, "/v1/agent/members", &members)
	status := map[string]int{}
	for _, m := range members {
		status[m.Name] = m.Status
	}
	if status["s1"] != 4 {
		t.Errorf("killed s1 has serf status %d, want 4 (failed)", status["s1"])
	}
	var rc api.RaftConfiguration
	get(t, sim, "/v1/operator/raft/configuration", &rc)
	if len(rc.Servers) != 3 {
		t.Errorf("raft configuration %+v: a killed server stays in it until autopilot removes it", rc.Servers)
	}
	var h api.OperatorHealthReply
	if code := get(t, sim, "/v1/operator/autopilot/health", &h); code != http.StatusTooManyRequests || h.FailureTolerance != 0 {
		t.Errorf("health with s1 dead: %d, tolerance %d; want 429 and 0", code, h.FailureTolerance)
	}

	must(t, sim.RemoveDeadServer("s1"))
	members = nil
	get(t, sim, "/v1/agent/members", &members)
	status = map[string]int{}
	for _, m := range members {
		status[m.Name] = m.Status
	}
	if len(members) != 4 || status["s1"] != 3 {
		t.Errorf("members %+v: want s1 still listed, left (3)", members)
	}
	rc = api.RaftConfiguration{}
	get(t, sim, "/v1/operator/raft/configuration", &rc)
	if len(rc.Servers) != 2 {
		t.Errorf("raft configuration %+v: want the 2 servers left", rc.Servers)
	}
	h = api.OperatorHealthReply{}
	if code := get(t, sim, "/v1/operator/autopilot/health", &h); code != http.StatusOK || len(h.Servers) != 2 || h.FailureTolerance != 0 {
		t.Errorf("health after the cleanup: %d, %d servers, tolerance %d; want 200, 2 servers, tolerance 0", code, len(h.Servers), h.FailureTolerance)
	}
}

func TestRemoveDeadServerRefusesAServerThatIsUpOrAClient(t *testing.T) {
	sim := consultest.NewCluster(3, 1, "1.12.9")
	if err := sim.RemoveDeadServer("s2"); err == nil {
		t.Error("RemoveDeadServer removed a server that is up")
	}
	if err := sim.RemoveDeadServer("c1"); err == nil {
		t.Error("RemoveDeadServer removed a client")
	}
	if err := sim.Kill("s9"); err == nil {
		t.Error("Kill of an unknown node succeeded")
	}
}
