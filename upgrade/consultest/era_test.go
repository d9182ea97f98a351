package consultest_test

import (
	"errors"
	"net/http"
	"syscall"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func TestEachEraAnswers404ForTheEndpointsItLacks(t *testing.T) {
	paths := []string{"/v1/operator/raft/configuration", "/v1/snapshot", "/v1/operator/autopilot/configuration", "/v1/operator/autopilot/health", "/v1/operator/raft/transfer-leader"}
	cases := []struct {
		era  consultest.Era
		want map[string]int
	}{
		{consultest.Era04, map[string]int{"/v1/operator/raft/configuration": 404, "/v1/snapshot": 404, "/v1/operator/autopilot/configuration": 404, "/v1/operator/autopilot/health": 404, "/v1/operator/raft/transfer-leader": 404}},
		{consultest.Era06, map[string]int{"/v1/operator/raft/configuration": 404, "/v1/snapshot": 404, "/v1/operator/autopilot/configuration": 404, "/v1/operator/autopilot/health": 404, "/v1/operator/raft/transfer-leader": 404}},
		{consultest.Era07, map[string]int{"/v1/operator/raft/configuration": 200, "/v1/snapshot": 200, "/v1/operator/autopilot/configuration": 404, "/v1/operator/autopilot/health": 404, "/v1/operator/raft/transfer-leader": 404}},
		{consultest.Era08Raft2, map[string]int{"/v1/operator/raft/configuration": 200, "/v1/snapshot": 200, "/v1/operator/autopilot/configuration": 200, "/v1/operator/autopilot/health": 500, "/v1/operator/raft/transfer-leader": 404}},
	}
	for _, tc := range cases {
		t.Run(tc.era.String(), func(t *testing.T) {
			sim := consultest.NewCluster(3, 1, "0.6.4", consultest.WithEra(tc.era))
			for _, p := range paths {
				if got := get(t, sim, p, nil); got != tc.want[p] {
					t.Errorf("%s answers %d, want %d", p, got, tc.want[p])
				}
			}
			var peers []string
			if code := get(t, sim, "/v1/status/peers", &peers); code != 200 || len(peers) != 3 {
				t.Errorf("/v1/status/peers = %d %v, want 200 and three peers", code, peers)
			}
		})
	}
}

func TestOldErasCarryTheSerfTagsOfTheirTime(t *testing.T) {
	for _, tc := range []struct {
		era             consultest.Era
		id, raftVsn, ac bool
	}{
		{consultest.Era04, false, false, false},
		{consultest.Era07, false, false, false},
		{consultest.Era08Raft2, true, true, false},
		{consultest.EraCurrent, true, true, true},
	} {
		sim := consultest.NewCluster(1, 0, "0.4.1", consultest.WithEra(tc.era))
		var members []struct{ Tags map[string]string }
		get(t, sim, "/v1/agent/members", &members)
		tags := members[0].Tags
		_, id := tags["id"]
		_, rv := tags["raft_vsn"]
		_, ac := tags["acls"]
		if id != tc.id || rv != tc.raftVsn || ac != tc.ac || tags["build"] == "" || tags["port"] != "8300" {
			t.Errorf("%s tags %v: want id %t, raft_vsn %t, acls %t, a build tag and port 8300", tc.era, tags, tc.id, tc.raftVsn, tc.ac)
		}
	}
}

func TestClientAtAnswersAsThatAgentAndIsRefusedWhileItIsDown(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "0.7.5", consultest.WithEra(consultest.Era07))
	n2, _ := sim.Node("s2")
	c, err := sim.ClientAt(n2.Address)
	must(t, err)
	self, err := c.Agent().Self()
	must(t, err)
	if self["Config"]["NodeName"] != "s2" || self["Stats"]["raft"] == nil {
		t.Errorf("agent self via ClientAt(%s) = %v, want s2 with raft stats", n2.Address, self["Config"])
	}
	must(t, sim.Swap("s2", "0.7.5", false)) // s2 does not come back
	_, err = c.Agent().Self()
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("agent self of a down s2: err = %v, want a refused connection", err)
	}
	// The 0.6 era has no stats in agent/self.
	old := consultest.NewCluster(3, 0, "0.6.4", consultest.WithEra(consultest.Era06))
	var doc map[string]any
	if code := get(t, old, "/v1/agent/self", &doc); code != http.StatusOK || doc["Stats"] != nil {
		t.Errorf("0.6 agent self = %d with Stats %v, want 200 without Stats", code, doc["Stats"])
	}
}
