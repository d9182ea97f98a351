package planner

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// Issue 22: facts the versions imply, minimums rather than bug ranges,
// stepping stones before refusals. Each test here is built from the
// example the docs give for the rule (the source is named above it); the
// firing and quiet cases of each rule are in ruleCases.

// refusedBy returns the rule IDs of the unwaived blocking findings of err,
// a *RefusedError (nil for a nil err; the test fails on another error).
func refusedBy(t *testing.T, err error) []RuleID {
	t.Helper()
	if err == nil {
		return nil
	}
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *RefusedError", err)
	}
	var ids []RuleID
	for _, f := range re.Findings {
		ids = append(ids, f.Rule)
	}
	return ids
}

// hopsOf is "from -> to, from -> to" for a path.
func hopsOf(path []Hop) string {
	var parts []string
	for _, h := range path {
		parts = append(parts, h.From+" -> "+h.To)
	}
	return strings.Join(parts, ", ")
}

func TestImpliedFeatures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		f      Features
		lowest string
		want   Features
	}{
		{"ACLs on servers below 1.4 hold only legacy tokens", Features{ACLs: true}, "1.3.1", Features{ACLs: true, LegacyACLs: true}},
		{"ACLs on 0.8 hold only legacy tokens", Features{ACLs: true}, "0.8.5", Features{ACLs: true, LegacyACLs: true}},
		{"ACLs on 1.4 may hold new tokens: the observer says", Features{ACLs: true}, "1.4.0", Features{ACLs: true}},
		{"no ACLs, no tokens", Features{}, "1.3.1", Features{}},
		{"legacy tokens mean ACLs are on", Features{LegacyACLs: true}, "1.6.10", Features{ACLs: true, LegacyACLs: true}},
		{"ACL replication means ACLs are on", Features{ACLReplication: true}, "1.6.10", Features{ACLs: true, ACLReplication: true}},
		{"ACL replication on 1.3 replicates legacy tokens", Features{ACLReplication: true}, "1.3.1", Features{ACLs: true, ACLReplication: true, LegacyACLs: true}},
		{"a declared fact is never cleared", Features{ACLs: true, LegacyACLs: true}, "1.10.12", Features{ACLs: true, LegacyACLs: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := impliedFeatures(tc.f, mustVersion(tc.lowest)); got.ACLs != tc.want.ACLs || got.LegacyACLs != tc.want.LegacyACLs || got.ACLReplication != tc.want.ACLReplication {
				t.Fatalf("impliedFeatures(%+v, %s) = %+v, want %+v", tc.f, tc.lowest, got, tc.want)
			}
		})
	}
}

func TestDefaultRaftProtocolFollowsTheVersionNotes(t *testing.T) {
	for v, want := range map[string]int{"0.6.4": 0, "0.7.5": 1, "0.8.0": 2, "0.9.4": 2, "1.0.0": 3, "1.8.19": 3, "1.16.1": 3} {
		if got := defaultRaftProtocol(mustVersion(v)); got != want {
			t.Errorf("defaultRaftProtocol(%s) = %d, want %d", v, got, want)
		}
	}
}

// Instructions index, worked example "1.3.1 -> latest 1.12: 1.6.10 ->
// 1.8.19 -> 1.10.12 -> 1.12.x", with ACLs on. The upgrade-to-1.6.x page:
// legacy tokens must be migrated on 1.6.x before going further; on 1.3.1
// every token is a legacy token (the new ACL system came with 1.4.0), so
// the plan is refused at 1.6.10 -> 1.8.19 although nobody declared them,
// while the plan to 1.6.10 goes ahead, and once the tokens are migrated
// the rest of the example plans.
func TestRuleLegacyACLsBeforeLeaving16_DocsExample(t *testing.T) {
	c := baseCluster("1.3.1")
	c.Features.ACLs = true
	p, err := Plan(c, "1.12.9", Policy{})
	if got := refusedBy(t, err); !slices.Contains(got, RuleLegacyACLs16) {
		t.Fatalf("1.3.1 with ACLs to 1.12.9: refused by %v, want %s", got, RuleLegacyACLs16)
	}
	if got, want := hopsOf(p.Path), "1.3.1 -> 1.6.10, 1.6.10 -> 1.8.19, 1.8.19 -> 1.10.12, 1.10.12 -> 1.12.9"; got != want {
		t.Errorf("path %s, want the docs' %s", got, want)
	}
	for _, f := range findRule(p.Findings, RuleLegacyACLs16) {
		if f.Hop != "1.6.10 -> 1.8.19" || !strings.Contains(f.Message, "s1 runs 1.3.1") {
			t.Errorf("finding %s: want it on the hop leaving 1.6.x, naming the server whose version implies legacy tokens", f)
		}
	}
	if _, err := Plan(c, "1.6.10", Policy{}); err != nil {
		t.Fatalf("plan to 1.6.10, where the tokens are migrated: %v", err)
	}
	migrated := baseCluster("1.6.10")
	migrated.Features.ACLs = true
	if _, err := Plan(migrated, "1.12.9", Policy{}); err != nil {
		t.Fatalf("plan from 1.6.10 with the tokens migrated: %v", err)
	}
}

// Version-specific notes, 1.11.x: "The legacy ACL system that was deprecated
// in Consul 1.4.0 was removed in 1.11.0." A cluster that still runs ACLs on
// 1.3 has nothing but legacy tokens, so 1.11 is refused for it.
func TestRuleLegacyACLsRemoved111_DocsExample(t *testing.T) {
	c := baseCluster("1.3.1")
	c.Features.ACLs = true
	fs := Check(c, "1.11.11", Policy{Waive: []RuleID{RuleLegacyACLs16}})
	hits := findRule(fs, RuleLegacyACLs111)
	if len(hits) != 1 || hits[0].Severity != Blocking || hits[0].Hop != "1.10.12 -> 1.11.11" {
		t.Fatalf("legacy-acls-removed-1.11 findings %v, want one blocking on 1.10.12 -> 1.11.11", hits)
	}
	if w := findRule(fs, RuleLegacyACLsPanic19); len(w) != 1 || w[0].Severity != Warning {
		t.Errorf("legacy-acls-panic-1.9 findings %v, want one warning (GH-9566: servers panicked on 1.9 with legacy tokens)", w)
	}
}

// Version-specific notes, 1.0.1: "Consul 1.0 (and earlier versions of
// Consul when running with Raft protocol 3) had an issue where performing
// rolling updates of Consul servers could result in an outage from old
// servers remaining in the cluster. Autopilot [...] was also waiting to
// promote servers to voters in pairs". 0.9.4 servers configured to Raft
// protocol 3 promote in pairs as 1.0.0 does; on their default (2) new
// servers join as voters.
func TestRuleReplaceAutopilotPairs_DocsExample(t *testing.T) {
	c := baseCluster("0.9.4")
	c.Clients = nil
	c.Features.RaftProtocol = 3
	_, err := Plan(c, "1.0.8", Policy{Strategy: Replace})
	if got := refusedBy(t, err); !slices.Contains(got, RuleReplaceAutopilot100) {
		t.Fatalf("replace on 0.9.4 with raft protocol 3: refused by %v, want %s", got, RuleReplaceAutopilot100)
	}
	c.Features.RaftProtocol = 0
	if _, err := Plan(c, "1.0.8", Policy{Strategy: Replace}); err != nil {
		t.Fatalf("replace on 0.9.4 with its default raft protocol 2: %v", err)
	}
}

// Version-specific notes, 1.0: "If running a single Consul server,
// restarting it in-place will result in that server not being able to
// elect itself as a leader. To avoid this, either set the Raft protocol
// back to 2, or use Manual Recovery Using peers.json". A single 0.9.4
// server reporting raft protocol 2 says only what 0.9 defaults to: the
// finding stays, as information, saying the 1.x binary needs 2 configured.
func TestRuleSingleServerRaft10_DocsExample(t *testing.T) {
	c := baseCluster("0.9.4")
	c.Servers = c.Servers[2:]
	c.Features.RaftProtocol = 2
	hits := findRule(Check(c, "1.0.8", Policy{}), RuleSingleServerRaft10)
	if len(hits) != 1 || hits[0].Severity != Info || !strings.Contains(hits[0].Message, "0.8/0.9 default") {
		t.Fatalf("findings %v, want one info finding saying 2 is the 0.8/0.9 default", hits)
	}
}

// Version-specific notes, 1.11.x, "1.10 Compatibility": "Before upgrading
// Consul Enterprise servers to 1.11 or later, you should first upgrade all
// Consul client and server agents to 1.10.7 or higher". Clients left on
// 1.9.17 miss that minimum as much as clients left on 1.10.4 (the release
// with the deregistration bug) do; clients on 1.10.7 meet it.
func TestRuleEnterprise1107LeftBehindClients_DocsExample(t *testing.T) {
	c := baseCluster("1.10.12+ent")
	c.Clients = []Client{{Name: "web-1", Version: "1.9.17+ent"}, {Name: "web-2", Version: "1.10.4+ent"}, {Name: "web-3", Version: "1.10.7+ent"}}
	pol := Policy{Clients: ClientPolicy{Mode: ClientLeaveBehind}}
	_, err := Plan(c, "1.11.11+ent", pol)
	if got := refusedBy(t, err); !slices.Contains(got, RuleEnterprise1107Clients) {
		t.Fatalf("refused by %v, want %s", got, RuleEnterprise1107Clients)
	}
	hits := findRule(Check(c, "1.11.11+ent", pol), RuleEnterprise1107Clients)
	if len(hits) != 1 || !strings.HasPrefix(hits[0].Node, "2 clients (web-1, web-2)") {
		t.Fatalf("findings %v, want one naming web-1 and web-2 (not web-3, on 1.10.7)", hits)
	}
	// In waves the clients reach 1.10.12 before any server goes to 1.11.
	pol.Clients.Mode = ClientWaves
	if _, err := Plan(c, "1.11.11+ent", pol); err != nil {
		t.Fatalf("with client waves: %v", err)
	}
}

// Version-specific notes, 1.10.0, "Licensing Changes": "You can only upgrade
// to Consul Enterprise 1.10 from the following Enterprise versions: 1.8
// release series: 1.8.13+; 1.9 release series: 1.9.7+. Other versions of
// Consul Enterprise are not forward compatible with v1.10"; the 1.10.x
// upgrade page takes servers, then clients, to the newest 1.8.x/1.9.x
// first. Clients left behind on 1.8.12 and 1.9.6 are below it, those on
// 1.8.13 and 1.9.7 are not.
func TestRuleEnterprise110LeftBehindClients_DocsExample(t *testing.T) {
	c := baseCluster("1.9.17+ent")
	c.Clients = []Client{
		{Name: "a", Version: "1.8.12+ent"}, {Name: "b", Version: "1.8.13+ent"},
		{Name: "c", Version: "1.9.6+ent"}, {Name: "d", Version: "1.9.7+ent"},
	}
	hits := findRule(Check(c, "1.10.12+ent", Policy{Clients: ClientPolicy{Mode: ClientLeaveBehind}}), RuleEnterprise110Clients)
	if len(hits) != 1 || hits[0].Severity != Warning || !strings.HasPrefix(hits[0].Node, "2 clients (a, c)") {
		t.Fatalf("findings %v, want one warning naming a (1.8.12) and c (1.9.6)", hits)
	}
}

// Version-specific notes, 1.13.x, "Modify the Consul agent's TLS
// configuration": with certificates in tls.defaults (or the deprecated
// top-level keys) and no HTTPS port, 1.13 serves gRPC over TLS and Envoy
// disconnects; the fix needs the 1.12 tls stanza: "If upgrading directly
// from pre-1.12 Consul, the above configuration change cannot be made
// before upgrading. Therefore, consider upgrading agents to Consul 1.12
// before upgrading to 1.13." A 1.11.11 mesh is planned through 1.12.9
// (servers and clients) instead of refused, with a warning to move the
// certificates before the hop into 1.13; a target past 1.13 is reached
// from 1.12 without landing on 1.13 at all.
func TestRuleGRPCTLS113_DocsExample(t *testing.T) {
	c := baseCluster("1.11.11")
	c.Features.Connect, c.Features.Envoy = Yes, Yes
	c.Features.TLS.CertMaterial = true
	p, err := Plan(c, "1.13.9", Policy{})
	if err != nil {
		t.Fatalf("1.11.11 to 1.13.9 with certificates in tls.defaults: %v", err)
	}
	if got, want := hopsOf(p.Path), "1.11.11 -> 1.12.9, 1.12.9 -> 1.13.9"; got != want {
		t.Fatalf("path %s, want %s", got, want)
	}
	if p.Path[0].Rule != RuleGRPCTLS113 {
		t.Errorf("the 1.12.9 stone names rule %q, want %s", p.Path[0].Rule, RuleGRPCTLS113)
	}
	// Every agent is on 1.12 before any goes to 1.13.
	on113 := false
	for _, s := range p.Steps {
		if s.Kind != StepSwapServer && s.Kind != StepSwapClients {
			continue
		}
		if s.To == "1.13.9" {
			on113 = true
		} else if on113 {
			t.Fatalf("step %s goes to %s after a step went to 1.13.9", s, s.To)
		}
	}
	warned := false
	for _, f := range findRule(p.Findings, RuleGRPCTLS113) {
		warned = warned || (f.Hop == "1.12.9 -> 1.13.9" && f.Severity == Warning && strings.Contains(f.Message, "tls.https / tls.internal_rpc"))
	}
	if !warned {
		t.Errorf("no warning on 1.12.9 -> 1.13.9 telling to move the certificates: %v", findRule(p.Findings, RuleGRPCTLS113))
	}
	p, err = Plan(c, "1.14.11", Policy{})
	if err != nil {
		t.Fatalf("1.11.11 to 1.14.11: %v", err)
	}
	if got, want := hopsOf(p.Path), "1.11.11 -> 1.12.9, 1.12.9 -> 1.14.11"; got != want {
		t.Fatalf("path %s, want %s (no landing on 1.13)", got, want)
	}
	// The upgrade package checks the versions a run installs with PathFor.
	hops, err := PathFor("1.11.11", "1.14.11", Policy{}, c.Features)
	if err != nil || hopsOf(hops) != hopsOf(p.Path) {
		t.Fatalf("PathFor = %s, %v; want the plan's path %s", hopsOf(hops), err, hopsOf(p.Path))
	}
}

// Version-specific notes, 1.14.x, "Changes to gRPC TLS configuration":
// "Make configuration changes if using ports.grpc in conjunction with any
// of the following settings that enables encryption: tls.grpc,
// tls.defaults, auto_encrypt, auto_config". On 1.13 the certificates in
// tls.defaults serve gRPC over TLS, so a mesh on 1.13.9 going to 1.14 must
// move to ports.grpc_tls, whether or not GRPCTLS was declared.
func TestRuleGRPCTLSPort114_DocsExample(t *testing.T) {
	c := baseCluster("1.13.9")
	c.Features.Connect, c.Features.Envoy = Yes, Yes
	c.Features.TLS.CertMaterial = true
	_, err := Plan(c, "1.14.11", Policy{})
	if got := refusedBy(t, err); !slices.Contains(got, RuleGRPCTLSPort114) {
		t.Fatalf("refused by %v, want %s", got, RuleGRPCTLSPort114)
	}
	hits := findRule(Check(c, "1.14.11", Policy{}), RuleGRPCTLSPort114)
	if len(hits) != 1 || !strings.Contains(hits[0].Message, "tls.defaults") {
		t.Fatalf("findings %v, want one saying why gRPC runs over TLS on 1.13.9", hits)
	}
}

// Version-specific notes, 1.11.x, "Envoy xDS Protocol Upgrades": "When
// upgrading to Consul 1.10, you must ensure that the Envoy sidecars are
// restarted and bootstrapped using a version of the Consul CLI >= 1.10.
// This ensures your sidecars are supported by Consul 1.11." A mesh already
// on 1.10.12 going to 1.11 is reminded, not only one crossing 1.10.
func TestRuleEnvoyXDSV3110_DocsExample(t *testing.T) {
	c := baseCluster("1.10.12")
	c.Features.Connect, c.Features.Envoy = Yes, Yes
	hits := findRule(Check(c, "1.11.11", Policy{}), RuleEnvoyXDSV3110)
	if len(hits) != 1 || hits[0].Severity != Warning || !strings.Contains(hits[0].Message, "re-bootstrapped with the 1.10+ CLI") {
		t.Fatalf("findings %v, want one warning that Envoy must have been re-bootstrapped with the 1.10+ CLI", hits)
	}
}
