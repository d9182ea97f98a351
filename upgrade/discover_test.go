package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// Canned answers of a 3-server, 2-client cluster, as Consul 1.12 gives them
// (trimmed to the fields that matter). s2 leads; s3 already runs 1.13.9, is
// a non-voter and unhealthy; c3 has left and must be omitted.
var cannedAnswers = map[string]string{
	"/v1/agent/members": `[
 {"Name":"s1","Addr":"127.0.0.11","Port":8301,"Tags":{"role":"consul","dc":"dc1","port":"8300","id":"11111111-aaaa","build":"1.12.9:abc","acls":"1","vsn":"2"},"Status":1},
 {"Name":"s2","Addr":"127.0.0.12","Port":8301,"Tags":{"role":"consul","dc":"dc1","port":"8300","id":"22222222-bbbb","build":"1.12.9:abc","acls":"1"},"Status":1},
 {"Name":"s3","Addr":"127.0.0.13","Port":8301,"Tags":{"role":"consul","dc":"dc1","port":"8300","id":"33333333-cccc","build":"1.13.9:def","acls":"1"},"Status":1},
 {"Name":"c1","Addr":"127.0.0.21","Port":8301,"Tags":{"role":"node","dc":"dc1","build":"1.12.9:abc"},"Status":1},
 {"Name":"c2","Addr":"127.0.0.22","Port":8301,"Tags":{"role":"node","dc":"dc1","build":"1.12.9+ent:abc"},"Status":4},
 {"Name":"c3","Addr":"127.0.0.23","Port":8301,"Tags":{"role":"node","dc":"dc1","build":"1.10.0:zzz"},"Status":3}
]`,
	"/v1/status/leader": `"127.0.0.12:8300"`,
	"/v1/operator/raft/configuration": `{"Servers":[
 {"ID":"11111111-aaaa","Node":"s1","Address":"127.0.0.11:8300","Leader":false,"ProtocolVersion":"3","Voter":true},
 {"ID":"22222222-bbbb","Node":"s2","Address":"127.0.0.12:8300","Leader":true,"ProtocolVersion":"3","Voter":true},
 {"ID":"33333333-cccc","Node":"s3","Address":"127.0.0.13:8300","Leader":false,"ProtocolVersion":"3","Voter":false}
],"Index":42}`,
	"/v1/operator/autopilot/health": `{"Healthy":false,"FailureTolerance":0,"Servers":[
 {"ID":"11111111-aaaa","Name":"s1","Address":"127.0.0.11:8300","SerfStatus":"alive","Version":"1.12.9","Leader":false,"LastContact":"5ms","LastTerm":3,"LastIndex":500,"Healthy":true,"Voter":true,"StableSince":"2024-01-01T00:00:00Z"},
 {"ID":"22222222-bbbb","Name":"s2","Address":"127.0.0.12:8300","SerfStatus":"alive","Version":"1.12.9","Leader":true,"LastContact":"0s","LastTerm":3,"LastIndex":500,"Healthy":true,"Voter":true,"StableSince":"2024-01-01T00:00:00Z"},
 {"ID":"33333333-cccc","Name":"s3","Address":"127.0.0.13:8300","SerfStatus":"alive","Version":"1.13.9","Leader":false,"LastContact":"2s","LastTerm":2,"LastIndex":10,"Healthy":false,"Voter":false,"StableSince":"2024-01-01T00:05:00Z"}
]}`,
	"/v1/agent/self":          `{"Config":{"Datacenter":"dc2","PrimaryDatacenter":"dc1","NodeName":"s1","Version":"1.12.9"}}`,
	"/v1/catalog/datacenters": `["dc2","dc1"]`,
}

func cannedHandler(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := cannedAnswers[r.URL.Path]
		if !ok {
			t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
			http.NotFound(w, r)
			return
		}
		code := http.StatusOK
		if r.URL.Path == "/v1/operator/autopilot/health" {
			code = http.StatusTooManyRequests // Consul's answer while unhealthy
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		w.Write([]byte(body))
	})
}

func TestDiscoverReadsServersClientsLeaderVotersAndHealthFromTheAPI(t *testing.T) {
	srv := httptest.NewServer(cannedHandler(t))
	defer srv.Close()
	client, err := api.NewClient(&api.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Discover(context.Background(), NewConsul(client))
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	got.Features.Unobserved = nil // features_test.go checks what is unobserved and why
	want := planner.Cluster{
		Datacenters: []planner.Datacenter{{Name: "dc1", Primary: true}, {Name: "dc2"}},
		Servers: []planner.Server{
			{Name: "s1", Address: "127.0.0.11", Datacenter: "dc1", Version: "1.12.9", Voter: true, Healthy: true},
			{Name: "s2", Address: "127.0.0.12", Datacenter: "dc1", Version: "1.12.9", Leader: true, Voter: true, Healthy: true},
			{Name: "s3", Address: "127.0.0.13", Datacenter: "dc1", Version: "1.13.9", Voter: false, Healthy: false},
		},
		Clients: []planner.Client{
			{Name: "c1", Address: "127.0.0.21", Datacenter: "dc1", Version: "1.12.9"},
			{Name: "c2", Address: "127.0.0.22", Datacenter: "dc1", Version: "1.12.9+ent"},
		},
		Features: planner.Features{ACLs: true, AgentlessMesh: planner.No, TerminatingGateways: planner.No}, // see features_test.go
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Discover =\n%+v\nwant\n%+v", got, want)
	}
}

func TestDiscoverReportsAFailedServerAsUnhealthyEvenWhenAutopilotLagsBehind(t *testing.T) {
	members := []*api.AgentMember{
		{Name: "s1", Addr: "10.0.0.1", Tags: map[string]string{"role": "consul", "port": "8300", "build": "1.12.9:x"}, Status: serfAlive},
		{Name: "s2", Addr: "10.0.0.2", Tags: map[string]string{"role": "consul", "port": "8300", "build": "1.12.9:x", "acls": "2"}, Status: serfFailed},
	}
	health := &api.OperatorHealthReply{Servers: []api.ServerHealth{{Name: "s1", Healthy: true}, {Name: "s2", Healthy: true}}}
	c := buildCluster(members, "10.0.0.1:8300", nil, health, nil, nil)
	if len(c.Servers) != 2 || !c.Servers[0].Healthy || c.Servers[1].Healthy {
		t.Errorf("servers = %+v, want s1 healthy and the failed s2 unhealthy", c.Servers)
	}
	if !c.Servers[0].Leader {
		t.Errorf("s1 (10.0.0.1:8300) should be the leader: %+v", c.Servers[0])
	}
	if !c.Features.ACLs || !c.Features.LegacyACLs {
		t.Errorf("acls tag 2 should mean ACLs on in legacy mode, got %+v", c.Features)
	}
}

func TestDiscoverFailsNamingTheCallThatFailed(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/operator/raft/configuration" {
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
			return
		}
		cannedHandler(t).ServeHTTP(w, r)
	})
	_, err := Discover(context.Background(), inProcessConsul(t, h))
	if err == nil {
		t.Fatal("Discover succeeded without a raft configuration")
	}
	if want := "discover: read raft configuration"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

func TestBuildVersionStripsTheCommitButKeepsTheEdition(t *testing.T) {
	for tag, want := range map[string]string{"1.12.9:abcdef": "1.12.9", "1.13.9+ent:abc": "1.13.9+ent", "1.4.0": "1.4.0", "": ""} {
		if got := buildVersion(tag); got != want {
			t.Errorf("buildVersion(%q) = %q, want %q", tag, got, want)
		}
	}
}

func TestDiscoverReportsAServerSerfListsOutsideTheRaftConfigurationAsMissing(t *testing.T) {
	tags := func(role, build string) map[string]string {
		return map[string]string{"role": role, "port": "8300", "build": build + ":x", "dc": "dc1"}
	}
	members := []*api.AgentMember{
		{Name: "s1", Addr: "10.0.0.1", Tags: tags("consul", "1.12.9"), Status: serfAlive},
		{Name: "s2", Addr: "10.0.0.2", Tags: tags("consul", "1.12.9"), Status: serfAlive},
		{Name: "s3", Addr: "10.0.0.3", Tags: tags("consul", "1.12.9"), Status: serfLeft},   // removed by autopilot after it died
		{Name: "s4", Addr: "10.0.0.4", Tags: tags("consul", "1.12.8"), Status: serfFailed}, // removed by hand, still failed
		{Name: "s5", Addr: "10.0.0.5", Tags: tags("consul", "1.12.9"), Status: serfFailed}, // dead, not yet removed
		{Name: "c1", Addr: "10.0.1.1", Tags: tags("node", "1.12.9"), Status: serfLeft},
	}
	raft := &api.RaftConfiguration{Servers: []*api.RaftServer{
		{Node: "s1", Address: "10.0.0.1:8300", Voter: true},
		{Node: "s2", Address: "10.0.0.2:8300", Voter: true},
		{Node: "s5", Address: "10.0.0.5:8300", Voter: true},
	}}
	c := buildCluster(members, "10.0.0.1:8300", raft, nil, nil, nil)
	var names []string
	for _, s := range c.Servers {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "s1,s2,s5" || c.Servers[2].Healthy || !c.Servers[2].Voter {
		t.Errorf("servers %+v: want s1, s2 and the dead voter s5, unhealthy", c.Servers)
	}
	want := []planner.MissingServer{
		{Name: "s3", Address: "10.0.0.3", Datacenter: "dc1", Version: "1.12.9", Status: "left"},
		{Name: "s4", Address: "10.0.0.4", Datacenter: "dc1", Version: "1.12.8", Status: "failed"},
	}
	if !reflect.DeepEqual(c.Missing, want) {
		t.Errorf("missing = %+v, want %+v", c.Missing, want)
	}
	if len(c.Clients) != 0 {
		t.Errorf("clients %+v: a client that left is omitted", c.Clients)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back planner.Cluster
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back.Missing, c.Missing) {
		t.Errorf("missing after JSON = %+v (%v), want %+v", back.Missing, err, c.Missing)
	}
}

func TestDiscoverSeesAServerAutopilotRemovedAfterItDiedAsMissing(t *testing.T) {
	sim := consultest.NewCluster(3, 1, "1.12.9")
	mustDo(t, sim.Kill("s3"))
	mustDo(t, sim.RemoveDeadServer("s3"))
	c, err := Discover(t.Context(), inProcessConsul(t, sim))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Servers) != 2 || len(c.Missing) != 1 || c.Missing[0].Name != "s3" || c.Missing[0].Status != "left" {
		t.Fatalf("servers %+v, missing %+v: want s1 and s2, and s3 missing (left)", c.Servers, c.Missing)
	}
	_, err = planner.Next(c, "1.13.9", planner.Policy{})
	var re *planner.RefusedError
	if !errors.As(err, &re) || re.Findings[0].Rule != planner.PrecheckNoSpareVoter || !strings.Contains(re.Findings[0].Message, "missing: s3") {
		t.Errorf("Next = %v, want refused by %s naming s3 missing", err, planner.PrecheckNoSpareVoter)
	}
}
