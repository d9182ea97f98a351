package consultest_test

import (
	"net/http"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func selfOf(t *testing.T, sim *consultest.Cluster) map[string]map[string]any {
	t.Helper()
	c, err := sim.Client()
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]map[string]any
	if _, err := c.Raw().Query("/v1/agent/self", &out, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAgentSelfHasTheShapeOfTheAgentsVersion(t *testing.T) {
	f := consultest.Features{ConnectEnabled: true, HTTPSPort: 8501, CertFile: "/tls/cert.pem"}
	old := selfOf(t, consultest.NewCluster(1, 0, "0.9.4", consultest.WithFeatures(f)))
	if _, ok := old["DebugConfig"]; ok {
		t.Errorf("0.9 has no DebugConfig: %v", old)
	}
	if old["Config"]["CertFile"] != "/tls/cert.pem" || old["Config"]["Ports"].(map[string]any)["HTTPS"] != float64(8501) {
		t.Errorf("0.9 Config lacks its TLS settings: %v", old["Config"])
	}
	v113 := selfOf(t, consultest.NewCluster(1, 0, "1.13.9", consultest.WithFeatures(f)))
	dbg := v113["DebugConfig"]
	if dbg["ConnectEnabled"] != true || dbg["HTTPSPort"] != float64(8501) || dbg["GRPCPort"] != float64(-1) {
		t.Errorf("1.13 DebugConfig %v", dbg)
	}
	if grpc := dbg["TLS"].(map[string]any)["GRPC"].(map[string]any); grpc["CertFile"] != "/tls/cert.pem" || grpc["KeyFile"] != "hidden" {
		t.Errorf("1.13 TLS.GRPC %v", grpc)
	}
	if _, ok := dbg["GRPCTLSPort"]; ok {
		t.Errorf("1.13 has no grpc_tls port")
	}
	if _, ok := dbg["ACLResolverSettings"]; !ok {
		t.Errorf("1.13 reports the ACL default policy in ACLResolverSettings: %v", dbg)
	}
	v110 := selfOf(t, consultest.NewCluster(1, 0, "1.10.12", consultest.WithFeatures(f)))["DebugConfig"]
	if v110["CertFile"] != "/tls/cert.pem" || v110["ACLDefaultPolicy"] != "allow" {
		t.Errorf("1.10 DebugConfig keeps top-level TLS keys and ACLDefaultPolicy: %v", v110)
	}
}

func TestFeatureEndpoints(t *testing.T) {
	off := consultest.NewCluster(1, 0, "1.13.9")
	if code := get(t, off, "/v1/acl/tokens", nil); code != http.StatusUnauthorized {
		t.Errorf("acl tokens with ACLs off answered %d, want 401", code)
	}
	sim := consultest.NewCluster(1, 1, "1.13.9", consultest.WithACLs(consultest.ACLsEnabled),
		consultest.WithDatacenter("dc2", "dc1"),
		consultest.WithFeatures(consultest.Features{ACLReplication: true, LegacyTokens: 2, TerminatingGateways: 1, GRPCPort: 8502,
			NodeMeta: map[string]map[string]string{"c1": {"zone": "z1"}}}))
	var repl struct{ Enabled bool }
	if code := get(t, sim, "/v1/acl/replication?dc=dc2", &repl); code != http.StatusOK || !repl.Enabled {
		t.Errorf("replication in dc2: %d %+v", code, repl)
	}
	if get(t, sim, "/v1/acl/replication?dc=dc1", &repl); repl.Enabled {
		t.Errorf("the primary does not replicate")
	}
	var tokens []struct{ Legacy bool }
	if get(t, sim, "/v1/acl/tokens", &tokens); len(tokens) != 3 || !tokens[2].Legacy {
		t.Errorf("tokens %+v", tokens)
	}
	var entries []map[string]any
	if get(t, sim, "/v1/config/terminating-gateway", &entries); len(entries) != 1 {
		t.Errorf("terminating gateways %v", entries)
	}
	var nodes []struct {
		Node string
		Meta map[string]string
	}
	if get(t, sim, "/v1/catalog/nodes", &nodes); len(nodes) != 2 || nodes[1].Meta["zone"] != "z1" {
		t.Errorf("nodes %+v", nodes)
	}
	var members []struct{ Tags map[string]string }
	get(t, sim, "/v1/agent/members", &members)
	if members[0].Tags["raft_vsn"] != "3" || members[0].Tags["grpc_port"] != "8502" {
		t.Errorf("server tags %v", members[0].Tags)
	}
}
