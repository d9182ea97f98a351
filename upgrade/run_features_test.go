package upgrade

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// dryRun plans target on a simulated 3-server cluster on from with the given
// features, and returns the result and error of Run.
func dryRun(t *testing.T, from, target string, f consultest.Features, fc FeatureConfig) (*Result, error) {
	t.Helper()
	sim := consultest.NewCluster(3, 0, from, consultest.WithFeatures(f))
	return Run(t.Context(), Config{Consul: inProcessConsul(t, sim), Target: target, DryRun: true, Features: fc})
}

func knownBad1161(p *planner.UpgradePlan) planner.Findings {
	if p == nil {
		return nil
	}
	return findRuleOf(p.Findings, "known-bad-1.16.0-1.16.1")
}

func TestRunPlansAMeshFreeClusterTo1161WithoutAWaiver(t *testing.T) {
	res, err := dryRun(t, "1.15.4", "1.16.1", consultest.Features{}, FeatureConfig{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Cluster.Features.Connect != planner.No {
		t.Errorf("connect.enabled=false on the servers must observe Connect no, got %s", res.Cluster.Features.Connect)
	}
	if hits := knownBad1161(res.Plan); len(hits) != 0 {
		t.Errorf("known-bad-1.16.0-1.16.1 fired on a mesh-free cluster: %+v", hits)
	}
}

func TestRunWarnsOn1161WhenAgentlessUseIsUnknownAndRefusesWhenDeclared(t *testing.T) {
	mesh := consultest.Features{ConnectEnabled: true, GRPCPort: 8502, GRPCTLSPort: 8503, Intentions: 2}
	res, err := dryRun(t, "1.15.4", "1.16.1", mesh, FeatureConfig{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if hits := knownBad1161(res.Plan); len(hits) != 1 || hits[0].Severity != planner.Warning {
		t.Fatalf("want one warning, got %+v", hits)
	}
	gaps := findRuleOf(res.Plan.Findings, planner.RuleFeaturesUnobserved)
	if len(gaps) != 1 || !strings.Contains(gaps[0].Message, "AgentlessMesh") || !strings.Contains(gaps[0].Message, "Config.Features.AgentlessMesh") {
		t.Fatalf("features-not-observed finding = %+v", gaps)
	}

	_, err = dryRun(t, "1.15.4", "1.16.1", mesh, FeatureConfig{AgentlessMesh: planner.Yes})
	var ref *planner.RefusedError
	if !errors.As(err, &ref) {
		t.Fatalf("Run with Config.Features.AgentlessMesh=yes = %v, want *planner.RefusedError", err)
	}
	if hits := findRuleOf(ref.Findings, "known-bad-1.16.0-1.16.1"); len(hits) != 1 || hits[0].Severity != planner.Blocking {
		t.Fatalf("refusal findings %+v", ref.Findings)
	}

	// Declaring every unobservable feature leaves no gap.
	res, err = dryRun(t, "1.15.4", "1.16.2", mesh, FeatureConfig{AgentlessMesh: planner.No, Envoy: planner.Yes})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if g := res.Cluster.Features.Unobserved; len(g) != 0 {
		t.Fatalf("unobserved after declaring = %v", g)
	}
}

func TestRunReadsZonesByTheConfiguredNodeMetaKey(t *testing.T) {
	f := consultest.Features{NodeMeta: map[string]map[string]string{
		"s1": {"rack": "r1", "az": "a"}, "s2": {"rack": "r2", "az": "b"}, "s3": {"rack": "r3"},
	}}
	res, err := dryRun(t, "1.12.9", "1.13.9", f, FeatureConfig{ZoneKey: "rack"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var zones []string
	for _, s := range res.Cluster.Servers {
		zones = append(zones, s.Zone)
	}
	if !slices.Equal(zones, []string{"r1", "r2", "r3"}) {
		t.Fatalf("zones = %v, want r1 r2 r3", zones)
	}
	// Without a key and without an autopilot zone tag: no zones.
	res, err = dryRun(t, "1.12.9", "1.13.9", f, FeatureConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if z := res.Cluster.Servers[0].Zone; z != "" {
		t.Fatalf("zone %q without a zone key", z)
	}
	// The autopilot redundancy zone tag is the default key.
	f.ZoneTag = "az"
	res, err = dryRun(t, "1.12.9", "1.13.9", f, FeatureConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if z := res.Cluster.Servers[1].Zone; z != "b" {
		t.Fatalf("zone %q by the autopilot zone tag, want b", z)
	}
}

func TestRunObservesACLFeaturesOfTheSimulatedCluster(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.8.19", consultest.WithACLs(consultest.ACLsEnabled),
		consultest.WithFeatures(consultest.Features{ACLDefaultPolicy: "deny", LegacyTokens: 1}))
	res, err := Run(t.Context(), Config{Consul: inProcessConsul(t, sim), Target: "1.10.12", DryRun: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	f := res.Cluster.Features
	if !f.ACLs || f.ACLDefaultPolicy != "deny" || !f.LegacyACLs || f.RaftProtocol != 3 {
		t.Fatalf("features %+v", f)
	}
	// 1.11 removes the legacy ACL system: with a legacy token, refused.
	_, err = Run(t.Context(), Config{Consul: inProcessConsul(t, sim), Target: "1.11.11", DryRun: true})
	var ref *planner.RefusedError
	if !errors.As(err, &ref) || len(findRuleOf(ref.Findings, planner.RuleLegacyACLs111)) == 0 {
		t.Fatalf("Run to 1.11.11 with a legacy token = %v, want refused by %s", err, planner.RuleLegacyACLs111)
	}
}

func TestRunRefusesCrossing19WithAnObservedRaftProtocol2(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.8.19", consultest.WithFeatures(consultest.Features{RaftProtocol: 2}))
	_, err := Run(t.Context(), Config{Consul: inProcessConsul(t, sim), Target: "1.10.12", DryRun: true})
	var ref *planner.RefusedError
	if !errors.As(err, &ref) || len(findRuleOf(ref.Findings, planner.RuleRaftProtocol3v19)) == 0 {
		t.Fatalf("Run = %v, want refused by %s (raft_vsn 2 observed)", err, planner.RuleRaftProtocol3v19)
	}
	// Declared protocol 3 (say, after the rolling restart) wins.
	if _, err := Run(t.Context(), Config{Consul: inProcessConsul(t, sim), Target: "1.10.12", DryRun: true,
		Features: FeatureConfig{RaftProtocol: 3}}); err != nil {
		t.Fatalf("Run with RaftProtocol declared 3: %v", err)
	}
}
