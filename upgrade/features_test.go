package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

func init() {
	// The feature reads of Discover on the canned 1.12 cluster of
	// discover_test.go: no replication, no intentions, no terminating
	// gateways.
	cannedAnswers["/v1/acl/replication"] = `{"Enabled":false,"Running":false,"SourceDatacenter":"","ReplicationType":""}`
	cannedAnswers["/v1/connect/intentions"] = `[]`
	cannedAnswers["/v1/config/terminating-gateway"] = `[]`
}

// era is a fake agent of one API era: its members, its /v1/agent/self
// document and the answers of the feature endpoints, keyed by request URI
// (with query) or path. An answer "403", "404" or "401" is that status.
type era struct {
	members string
	self    string
	answers map[string]string
}

func (e era) handler(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := map[string]string{
			"/v1/agent/members":               e.members,
			"/v1/agent/self":                  e.self,
			"/v1/status/leader":               `"127.0.0.11:8300"`,
			"/v1/operator/raft/configuration": `{"Servers":[{"ID":"a","Node":"s1","Address":"127.0.0.11:8300","Leader":true,"Voter":true}]}`,
			"/v1/operator/autopilot/health":   `{"Healthy":true,"FailureTolerance":0,"Servers":[{"ID":"a","Name":"s1","Healthy":true,"Voter":true}]}`,
			"/v1/catalog/datacenters":         `["dc1"]`,
		}[r.URL.Path]
		if !ok {
			body, ok = e.answers[r.URL.RequestURI()]
		}
		if !ok {
			body, ok = e.answers[r.URL.Path]
		}
		switch {
		case !ok || body == "404":
			http.Error(w, "404 page not found", http.StatusNotFound)
		case body == "403":
			http.Error(w, "Permission denied", http.StatusForbidden)
		case body == "401":
			http.Error(w, "ACL support disabled", http.StatusUnauthorized)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		}
	})
}

func member(name, role, build string, tags string) string {
	return fmt.Sprintf(`{"Name":%q,"Addr":"127.0.0.11","Port":8301,"Status":1,"Tags":{"role":%q,"dc":"dc1","port":"8300","id":"a","build":%q%s}}`, name, role, build, tags)
}

func gapNames(f planner.Features) []string {
	var out []string
	for _, g := range f.Unobserved {
		out = append(out, g.Feature)
	}
	slices.Sort(out)
	return out
}

func gapReason(f planner.Features, feature string) string {
	for _, g := range f.Unobserved {
		if g.Feature == feature {
			return g.Reason
		}
	}
	return ""
}

func discoverEra(t *testing.T, e era) planner.Cluster {
	t.Helper()
	c, err := Discover(context.Background(), inProcessConsul(t, e.handler(t)))
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return c
}

// self113 is /v1/agent/self of a 1.13.9 server with connect enabled and no
// TLS (the shape recorded from a real 1.13.9 agent, trimmed).
const self113 = `{"Config":{"Datacenter":"dc1","PrimaryDatacenter":"dc1","NodeName":"s1","Server":true,"Version":"1.13.9"},
"DebugConfig":{"ConnectEnabled":true,"HTTPSPort":-1,"GRPCPort":8502,"RaftProtocol":3,"ACLsEnabled":false,
 "ACLResolverSettings":{"ACLDefaultPolicy":"allow","ACLsEnabled":false},"AutoEncryptTLS":false,"AutoEncryptAllowTLS":false,
 "AutoConfig":{"Enabled":false},"AutopilotRedundancyZoneTag":"",
 "TLS":{"GRPC":{"CAFile":"","CAPath":"","CertFile":"","KeyFile":"hidden","UseAutoCert":false},"HTTPS":{"CAFile":"","CertFile":"","KeyFile":"hidden"}}}}`

func TestFeaturesOfA113MeshServerWithoutTLS(t *testing.T) {
	c := discoverEra(t, era{
		members: `[` + member("s1", "consul", "1.13.9:x", `,"acls":"0","raft_vsn":"3","grpc_port":"8502"`) + `]`,
		self:    self113,
		answers: map[string]string{"/v1/acl/replication": "401", "/v1/connect/intentions": `[]`, "/v1/config/terminating-gateway": `[]`},
	})
	f := c.Features
	if f.ACLs || f.RaftProtocol != 3 || f.TLS != (planner.TLS{}) {
		t.Errorf("ACLs/raft/TLS = %v/%d/%+v, want off/3/none", f.ACLs, f.RaftProtocol, f.TLS)
	}
	if f.Connect != planner.Unknown || f.AgentlessMesh != planner.No || f.TerminatingGateways != planner.No {
		t.Errorf("Connect/AgentlessMesh/TerminatingGateways = %s/%s/%s, want unknown/no (servers < 1.14)/no", f.Connect, f.AgentlessMesh, f.TerminatingGateways)
	}
	if got, want := gapNames(f), []string{"Connect", "Envoy"}; !slices.Equal(got, want) {
		t.Errorf("unobserved = %v, want %v", got, want)
	}
	if r := gapReason(f, "Envoy"); !strings.Contains(r, "Config.Features.Envoy") {
		t.Errorf("Envoy gap %q does not say how to supply it", r)
	}
}

func TestFeaturesOfAServerWithConnectDisabledSayNoMesh(t *testing.T) {
	self := strings.Replace(strings.Replace(self113, `"ConnectEnabled":true`, `"ConnectEnabled":false`, 1), `"1.13.9"`, `"1.15.4"`, 1)
	c := discoverEra(t, era{
		members: `[` + member("s1", "consul", "1.15.4:x", `,"acls":"0","raft_vsn":"3","grpc_port":"8502","grpc_tls_port":"8503"`) + `]`,
		self:    self,
	})
	f := c.Features
	if f.Connect != planner.No || len(f.Unobserved) != 0 {
		t.Fatalf("Connect = %s, unobserved %v; want no and nothing unobserved", f.Connect, f.Unobserved)
	}
	// The case: a mesh-free 1.15.4 cluster plans 1.16.1 without a waiver.
	if _, err := planner.Plan(c, "1.16.1", planner.Policy{}); err != nil {
		t.Fatalf("Plan 1.15.4 -> 1.16.1 of a mesh-free cluster: %v", err)
	}
}

func TestFeaturesOfA115MeshWithTerminatingGatewaysAndTLSGRPC(t *testing.T) {
	self := `{"Config":{"Datacenter":"dc1","Server":true,"Version":"1.15.4"},
"DebugConfig":{"ConnectEnabled":true,"HTTPSPort":8501,"GRPCPort":8502,"GRPCTLSPort":8503,"RaftLogStoreConfig":{"Backend":"wal"},
 "ACLResolverSettings":{"ACLDefaultPolicy":"deny"},"AutoEncryptAllowTLS":true,
 "TLS":{"GRPC":{"CAFile":"/etc/consul/ca.pem","CertFile":"/etc/consul/server.pem","KeyFile":"hidden"}}}}`
	c := discoverEra(t, era{
		members: `[` + member("s1", "consul", "1.15.4:x", `,"acls":"1","raft_vsn":"3","grpc_tls_port":"8503"`) + `]`,
		self:    self,
		answers: map[string]string{"/v1/acl/tokens": `[]`, "/v1/connect/intentions": `[{"ID":"x"}]`, "/v1/config/terminating-gateway": `[{"Kind":"terminating-gateway","Name":"tgw"}]`},
	})
	f := c.Features
	want := planner.TLS{CertMaterial: true, HTTPSPort: true, GRPCTLS: true, AutoEncrypt: true}
	if f.TLS != want || f.RaftLogStore != "wal" || !f.ACLs || f.ACLDefaultPolicy != "deny" {
		t.Errorf("TLS %+v, log store %q, ACLs %v/%q; want %+v, wal, on/deny", f.TLS, f.RaftLogStore, f.ACLs, f.ACLDefaultPolicy, want)
	}
	if f.Connect != planner.Yes || f.TerminatingGateways != planner.Yes || f.AgentlessMesh != planner.Unknown {
		t.Errorf("Connect/TerminatingGateways/AgentlessMesh = %s/%s/%s, want yes/yes/unknown", f.Connect, f.TerminatingGateways, f.AgentlessMesh)
	}
	if got, want := gapNames(f), []string{"AgentlessMesh", "Envoy"}; !slices.Equal(got, want) {
		t.Errorf("unobserved = %v, want %v", got, want)
	}
	// Agentless use unknown: 1.16.1 is a warning, not a refusal.
	fs := planner.Check(c, "1.16.1", planner.Policy{})
	if err := fs.Err(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	// Declared agentless mesh: refused.
	fc := FeatureConfig{AgentlessMesh: planner.Yes}
	fc.apply(&c.Features)
	var ref *planner.RefusedError
	if err := planner.Check(c, "1.16.1", planner.Policy{}).Err(); !errors.As(err, &ref) {
		t.Fatalf("Check with AgentlessMesh declared = %v, want refused", err)
	}
	if got := gapNames(c.Features); !slices.Equal(got, []string{"Envoy"}) {
		t.Errorf("a declared feature must leave Unobserved: %v", got)
	}
}

func TestLegacyTokensByEra(t *testing.T) {
	self18 := `{"Config":{"Datacenter":"dc1","Server":true,"Version":"1.8.19"},"DebugConfig":{"ACLsEnabled":true,"ACLDefaultPolicy":"deny","ConnectEnabled":false,"HTTPSPort":-1,"CertFile":"","CAFile":"","CAPath":""}}`
	members18 := `[` + member("s1", "consul", "1.8.19:x", `,"acls":"1","raft_vsn":"3"`) + `]`
	t.Run("1.4-1.10 list tokens with the Legacy flag", func(t *testing.T) {
		c := discoverEra(t, era{members: members18, self: self18, answers: map[string]string{
			"/v1/acl/tokens": `[{"AccessorID":"a","Legacy":false},{"AccessorID":"b","Legacy":true}]`}})
		if !c.Features.LegacyACLs || c.Features.ACLDefaultPolicy != "deny" {
			t.Fatalf("features %+v, want legacy tokens and deny", c.Features)
		}
	})
	t.Run("no legacy token left", func(t *testing.T) {
		c := discoverEra(t, era{members: members18, self: self18, answers: map[string]string{"/v1/acl/tokens": `[{"AccessorID":"a"}]`}})
		if c.Features.LegacyACLs || slices.Contains(gapNames(c.Features), "LegacyACLs") {
			t.Fatalf("features %+v, want no legacy tokens, observed", c.Features)
		}
	})
	t.Run("a token without acl:read leaves it unobserved, saying why", func(t *testing.T) {
		c := discoverEra(t, era{members: members18, self: self18, answers: map[string]string{"/v1/acl/tokens": "403"}})
		r := gapReason(c.Features, "LegacyACLs")
		if c.Features.LegacyACLs || !strings.Contains(r, "permission denied (needs a token with acl:read)") || !strings.Contains(r, "Config.Features.LegacyACLs") {
			t.Fatalf("LegacyACLs gap %q", r)
		}
		if fs := planner.Check(c, "1.10.12", planner.Policy{}); len(findRuleOf(fs, planner.RuleFeaturesUnobserved)) != 1 {
			t.Fatalf("Check does not report the gap:\n%v", fs)
		}
	})
	t.Run("before 1.4 every token is legacy (ACLs from acl_datacenter)", func(t *testing.T) {
		self := `{"Config":{"Datacenter":"dc1","Server":true,"Version":"1.3.1"},"DebugConfig":{"ACLDatacenter":"dc1","ACLDefaultPolicy":"deny","ConnectEnabled":false,"HTTPSPort":-1,"CertFile":""}}`
		c := discoverEra(t, era{members: `[` + member("s1", "consul", "1.3.1:x", `,"raft_vsn":"3"`) + `]`, self: self})
		f := c.Features
		if !f.ACLs || f.ACLDefaultPolicy != "deny" || !f.LegacyACLs || f.Connect != planner.No {
			t.Fatalf("features %+v, want ACLs deny, legacy, no mesh", f)
		}
	})
}

func TestFeaturesOfA09AgentFromItsFullConfig(t *testing.T) {
	self := `{"Config":{"Datacenter":"dc1","Server":true,"Version":"0.9.4","ACLDatacenter":"dc1","ACLDefaultPolicy":"allow",
"Ports":{"HTTPS":8501},"CertFile":"/etc/consul/cert.pem","CAFile":"/etc/consul/ca.pem","KeyFile":""}}`
	c := discoverEra(t, era{members: `[` + member("s1", "consul", "0.9.4:x", `,"raft_vsn":"2"`) + `]`, self: self})
	f := c.Features
	if !f.ACLs || f.ACLDefaultPolicy != "allow" || f.RaftProtocol != 2 || !f.TLS.HTTPSPort || !f.TLS.CertMaterial || f.TLS.GRPCTLS || f.Connect != planner.No {
		t.Fatalf("features %+v", f)
	}
	if len(f.Unobserved) != 0 {
		t.Errorf("unobserved %v, want none", f.Unobserved)
	}
}

func TestACLReplicationIsReadInEveryDatacenter(t *testing.T) {
	h := func(dc2 string) http.Handler {
		e := era{
			members: `[` + member("s1", "consul", "1.12.9:x", `,"acls":"1","raft_vsn":"3"`) + `]`,
			self:    `{"Config":{"Datacenter":"dc1","Server":true,"Version":"1.12.9"},"DebugConfig":{"ACLResolverSettings":{"ACLDefaultPolicy":"deny"},"ConnectEnabled":false,"HTTPSPort":-1,"TLS":{"GRPC":{"CertFile":""}}}}`,
			answers: map[string]string{
				"/v1/acl/replication?dc=dc1": `{"Enabled":false}`,
				"/v1/acl/replication?dc=dc2": dc2,
			},
		}
		inner := e.handler(t)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/catalog/datacenters" {
				fmt.Fprint(w, `["dc1","dc2"]`)
				return
			}
			inner.ServeHTTP(w, r)
		})
	}
	for _, tc := range []struct {
		name, dc2 string
		want      bool
		gap       bool
	}{
		{"a secondary replicating", `{"Enabled":true,"Running":true,"SourceDatacenter":"dc1","ReplicationType":"tokens"}`, true, false},
		{"no secondary replicating", `{"Enabled":false}`, false, false},
		{"a secondary that refuses the token", "403", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Discover(context.Background(), inProcessConsul(t, h(tc.dc2)))
			if err != nil {
				t.Fatal(err)
			}
			if c.Features.ACLReplication != tc.want || slices.Contains(gapNames(c.Features), "ACLReplication") != tc.gap {
				t.Fatalf("ACLReplication %v, unobserved %v; want %v, gap %v", c.Features.ACLReplication, c.Features.Unobserved, tc.want, tc.gap)
			}
		})
	}
}

func TestZonesFromTheAutopilotZoneTag(t *testing.T) {
	self := strings.Replace(self113, `"AutopilotRedundancyZoneTag":""`, `"AutopilotRedundancyZoneTag":"az"`, 1)
	c := discoverEra(t, era{
		members: `[` + member("s1", "consul", "1.13.9:x", `,"raft_vsn":"3"`) + `,` + member("c1", "node", "1.13.9:x", "") + `]`,
		self:    self,
		answers: map[string]string{"/v1/catalog/nodes": `[{"Node":"s1","Meta":{"az":"eu-1a"}},{"Node":"c1","Meta":{"az":"eu-1b"}}]`},
	})
	if c.Servers[0].Zone != "eu-1a" || len(c.Clients) != 1 || c.Clients[0].Zone != "eu-1b" {
		t.Fatalf("zones: servers %+v clients %+v", c.Servers, c.Clients)
	}
}

// bareConsul is a Consul without the optional FeatureReader.
type bareConsul struct{ Consul }

func TestAConsulWithoutFeatureReaderSaysWhatItCouldNotRead(t *testing.T) {
	e := era{members: `[` + member("s1", "consul", "1.8.19:x", `,"acls":"1","raft_vsn":"3"`) + `]`,
		self: `{"Config":{"Datacenter":"dc1","Server":true,"Version":"1.8.19"},"DebugConfig":{"ACLsEnabled":true,"ACLDefaultPolicy":"allow","ConnectEnabled":true,"HTTPSPort":-1,"CertFile":""}}`}
	c, err := Discover(context.Background(), bareConsul{inProcessConsul(t, e.handler(t))})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := gapNames(c.Features), []string{"Connect", "Envoy", "LegacyACLs", "TerminatingGateways"}; !slices.Equal(got, want) {
		t.Fatalf("unobserved %v, want %v", got, want)
	}
	if r := gapReason(c.Features, "LegacyACLs"); !strings.Contains(r, "no FeatureReader") {
		t.Errorf("reason %q", r)
	}
}

func TestFeatureConfigDeclaresAndValidates(t *testing.T) {
	f := planner.Features{Connect: planner.Yes, Unobserved: []planner.FeatureGap{{Feature: "Envoy"}, {Feature: "LegacyACLs"}, {Feature: "TLS.GRPCTLS"}}}
	FeatureConfig{Envoy: planner.No, LegacyACLs: planner.Yes, Connect: planner.No, RaftProtocol: 2}.apply(&f)
	if f.Envoy != planner.No || !f.LegacyACLs || f.Connect != planner.No || f.RaftProtocol != 2 {
		t.Errorf("declared features not applied: %+v", f)
	}
	if got := gapNames(f); !slices.Equal(got, []string{"TLS.GRPCTLS"}) {
		t.Errorf("unobserved after declaring = %v, want [TLS.GRPCTLS]", got)
	}

	cfg := Config{Consul: bareConsul{}, Target: "1.16.2", DryRun: true,
		Features: FeatureConfig{Envoy: "maybe", ACLDefaultPolicy: "block", RaftProtocol: 4, RaftLogStore: "lmdb2"}}
	err := cfg.Validate()
	for _, want := range []string{"Features.Envoy", "Features.ACLDefaultPolicy", "Features.RaftProtocol", "Features.RaftLogStore"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want a problem with %s", err, want)
		}
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("Validate error %T is not a *ConfigError", err)
	}
}

func TestMergeFeaturesAcrossDatacenters(t *testing.T) {
	a := planner.Features{Connect: planner.No, Envoy: planner.No, RaftProtocol: 3, ACLDefaultPolicy: "allow"}
	b := planner.Features{Connect: planner.Yes, Envoy: planner.Unknown, RaftProtocol: 2, ACLDefaultPolicy: "deny", ACLReplication: true,
		Unobserved: []planner.FeatureGap{{Feature: "Envoy", Reason: "dc2"}}}
	mergeFeatures(&a, b)
	if a.Connect != planner.Yes || a.Envoy != planner.Unknown || a.RaftProtocol != 2 || a.ACLDefaultPolicy != "deny" || !a.ACLReplication || len(a.Unobserved) != 1 {
		t.Fatalf("merged %+v", a)
	}
}

func findRuleOf(fs planner.Findings, id planner.RuleID) planner.Findings {
	var out planner.Findings
	for _, f := range fs {
		if f.Rule == id {
			out = append(out, f)
		}
	}
	return out
}

func TestDeclareLaysTheOperatorsFeaturesOverAnObservedCluster(t *testing.T) {
	f := planner.Features{Unobserved: []planner.FeatureGap{{Feature: "Connect", Reason: "not shown"}, {Feature: "Envoy", Reason: "not shown"}}}
	if err := (FeatureConfig{Connect: planner.No}).Declare(&f); err != nil {
		t.Fatal(err)
	}
	if f.Connect != planner.No || len(f.Unobserved) != 1 || f.Unobserved[0].Feature != "Envoy" {
		t.Errorf("features %+v, want Connect declared no and only Envoy left unobserved", f)
	}
	before := f
	err := (FeatureConfig{Envoy: "maybe"}).Declare(&f)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "Features.Envoy" {
		t.Errorf("Declare of a bad usage = %v, want a *ConfigError on Features.Envoy", err)
	}
	if f.Envoy != before.Envoy || len(f.Unobserved) != 1 {
		t.Errorf("a refused declaration changed the features: %+v", f)
	}
}
