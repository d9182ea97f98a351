package planner

import (
	"fmt"
	"strings"
	"testing"
)

// findRule returns the findings of one rule.
func findRule(fs Findings, id RuleID) Findings {
	var out Findings
	for _, f := range fs {
		if f.Rule == id {
			out = append(out, f)
		}
	}
	return out
}

func TestPrechecksNameNodeAndValue(t *testing.T) {
	tests := []struct {
		name      string
		rule      RuleID
		mod       func(*Cluster)
		target    string
		node      string // want Node to contain this
		value     string // want Value to contain this
		inMessage string // want Message to contain this
	}{
		{"an unhealthy server is named (server-unhealthy)", PrecheckServerUnhealthy,
			func(c *Cluster) { c.Servers[1].Healthy = false }, "1.13.9", "s2", "healthy=false", "s2"},
		{"a non-voter is named (server-not-voter)", PrecheckServerNotVoter,
			func(c *Cluster) { c.Servers[0].Voter = false }, "1.13.9", "s1", "voter=false", "s1"},
		{"a server with a bad version is named with the value (bad-version)", PrecheckBadVersion,
			func(c *Cluster) { c.Servers[1].Version = "1.x" }, "1.13.9", "s2", "1.x", "s2"},
		{"a bad target is named as the target (bad-version)", PrecheckBadVersion,
			nil, "latest", "target", "latest", "latest"},
		{"clients with a bad version are counted and named (bad-version)", PrecheckBadVersion,
			func(c *Cluster) { c.Clients[1].Version = "dev" }, "1.13.9", "client c2", "dev", "c2"},
		{"a server newer than the target is named (downgrade)", PrecheckDowngrade,
			func(c *Cluster) { c.Servers[2].Version = "1.14.0" }, "1.13.9", "s3", "1.14.0", "s3"},
		{"a client newer than the target is named (downgrade)", PrecheckDowngrade,
			func(c *Cluster) { c.Clients[0].Version = "1.14.0" }, "1.13.9", "client c1", "1.14.0", "c1"},
		{"a duplicate name is named with its count (duplicate-name)", PrecheckDuplicateName,
			func(c *Cluster) { c.Clients[0].Name = "s2" }, "1.13.9", "s2", "2 agents", "s2"},
		{"a server in an unlisted datacenter is named (unknown-datacenter)", PrecheckUnknownDatacenter,
			func(c *Cluster) {
				c.Datacenters = []Datacenter{{Name: "dc1", Primary: true}}
				c.Servers[0].Datacenter = "west"
			}, "1.13.9", "s1", "west", "west"},
		{"two leaders are both named (several-leaders)", PrecheckSeveralLeaders,
			func(c *Cluster) { c.Servers[0].Leader = true }, "1.13.9", "s1, s3", "2 leaders", "s1, s3"},
		{"a missing leader names the datacenter (no-leader)", PrecheckNoLeader,
			func(c *Cluster) { c.Servers[2].Leader = false }, "1.13.9", "", "0 leaders", "dc1"},
		{"a single server is named (failure-tolerance-zero)", PrecheckFailureTolerance,
			func(c *Cluster) { c.Servers = c.Servers[:1] }, "1.13.9", "s1", "1 server", "s1"},
		{"mixed server versions are listed (mixed-versions)", PrecheckMixedVersions,
			func(c *Cluster) { c.Servers[0].Version = "1.13.1" }, "1.13.9", "", "1.12.9, 1.13.1", "1.13.1"},
		{"a client newer than its servers is named (client-newer-than-servers)", PrecheckClientNewerThanSrvs,
			func(c *Cluster) { c.Clients[1].Version = "1.13.1" }, "1.13.9", "client c2", "1.13.1", "c2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := baseCluster("1.12.9")
			if tc.mod != nil {
				tc.mod(&c)
			}
			hits := findRule(Check(c, tc.target, Policy{}), tc.rule)
			if len(hits) != 1 {
				t.Fatalf("want one %s finding, got %d: %v", tc.rule, len(hits), hits)
			}
			f := hits[0]
			if !strings.Contains(f.Node, tc.node) || !strings.Contains(f.Value, tc.value) || !strings.Contains(f.Message, tc.inMessage) {
				t.Fatalf("finding %+v: want node ~%q, value ~%q, message ~%q", f, tc.node, tc.value, tc.inMessage)
			}
			if f.Hop != "" {
				t.Errorf("a pre-check belongs to no hop, got %q", f.Hop)
			}
		})
	}
}

func TestCheckReturnsEveryFinding(t *testing.T) {
	c := baseCluster("1.12.9")
	c.Servers[0].Healthy = false        // server-unhealthy
	c.Servers[1].Voter = false          // server-not-voter
	c.Clients[1].Name = "c1"            // duplicate-name
	c.Features.TLS.GRPCTLS = true       // grpc-tls-port-1.14
	fs := Check(c, "1.14.11", Policy{}) // known-good target, two majors
	for _, id := range []RuleID{PrecheckServerUnhealthy, PrecheckServerNotVoter, PrecheckDuplicateName, RuleGRPCTLSPort114} {
		if len(findRule(fs, id)) == 0 {
			t.Errorf("missing %s finding; got:\n%s", id, findingsText(fs))
		}
	}
	if n := len(fs.Blocking()); n < 4 {
		t.Fatalf("want >= 4 blocking findings, got %d", n)
	}
	if fs.Err() == nil {
		t.Fatal("blocking findings must make Err non-nil")
	}
}

func TestWaivingMarksFindingsAndClearsErr(t *testing.T) {
	c := baseCluster("1.12.9")
	c.Features.Connect = Yes
	fs := Check(c, "1.13.0", Policy{})
	if fs.Err() == nil {
		t.Fatal("1.13.0 should be refused")
	}
	fs = Check(c, "1.13.0", Policy{Waive: []RuleID{"known-bad-1.13.0"}})
	hits := findRule(fs, "known-bad-1.13.0")
	if len(hits) != 1 || !hits[0].Waived || hits[0].Severity != Blocking {
		t.Fatalf("waived finding must stay listed, blocking and Waived: %+v", hits)
	}
	if err := fs.Err(); err != nil {
		t.Fatalf("Err with everything waived = %v, want nil", err)
	}
	// Waiving a warning changes nothing.
	fs = Check(c, "1.13.9", Policy{ServerOrder: AsListed, Waive: []RuleID{RuleFollowersFirst}})
	for _, f := range findRule(fs, RuleFollowersFirst) {
		if f.Waived {
			t.Fatalf("non-blocking finding marked waived: %+v", f)
		}
	}
}

func TestUserRulesAreEvaluatedLikeBuiltins(t *testing.T) {
	c := baseCluster("1.12.9")
	for i := range c.Clients {
		c.Clients[i].Version = "1.12.2"
	}
	pol := Policy{
		Clients: ClientPolicy{Mode: ClientLeaveBehind},
		Rules: []Rule{
			{ID: "inhouse-sidecar-1.13", Kind: KindConfig, Severity: Blocking, Scope: ScopeServers, From: "< 1.13.0", To: ">= 1.13.0",
				Summary: "our sidecar image breaks on 1.13", Hint: "roll out sidecar v2 first", URL: "https://wiki.example/sidecar"},
			{ID: "inhouse-old-clients", Kind: KindPrecheck, Severity: Warning, Scope: ScopeClients, From: "< 1.12.5",
				Summary: "clients below 1.12.5 log too much", Hint: "upgrade clients soon"},
			{ID: "inhouse-quiet", Kind: KindPrecheck, Severity: Blocking, To: ">= 1.14.0", Summary: "never", Hint: "-"},
			{ID: "inhouse-acl", Kind: KindACL, Severity: Blocking, Summary: "only with ACLs", Hint: "-",
				When: func(rc RuleContext) bool { return rc.Cluster.Features.ACLs }},
		},
	}
	fs := Check(c, "1.13.9", pol)
	if got := findRule(fs, "inhouse-sidecar-1.13"); len(got) != 3 || got[0].Node != "s1" || got[0].Hop != "1.12.9 -> 1.13.9" {
		t.Fatalf("server-scoped user rule: want one finding per server, got %+v", got)
	}
	clients := findRule(fs, "inhouse-old-clients")
	if len(clients) != 1 || !strings.HasPrefix(clients[0].Node, "2 clients (c1, c2)") || clients[0].Value != "1.12.2" {
		t.Fatalf("client-scoped user rule: want one aggregated finding, got %+v", clients)
	}
	if len(findRule(fs, "inhouse-quiet")) != 0 || len(findRule(fs, "inhouse-acl")) != 0 {
		t.Fatal("user rules whose constraint or When does not hold must stay quiet")
	}
	fs = Check(c, "1.13.9", Policy{Rules: pol.Rules, Waive: []RuleID{"inhouse-sidecar-1.13"}})
	for _, f := range findRule(fs, "inhouse-sidecar-1.13") {
		if !f.Waived {
			t.Fatal("user rules are waived by ID like built-in ones")
		}
	}
}

func TestCheckOrderIsStable(t *testing.T) {
	c := baseCluster("1.10.12")
	c.Servers[0].Healthy = false
	c.Features.ACLs = true
	c.Features.LegacyACLs = true
	c.Features.Connect = Yes
	fs := Check(c, "1.15.1", Policy{NoSnapshot: true})
	hopIndex := map[string]int{"": -1}
	hops, _ := Path("1.10.12", "1.15.1", Policy{})
	for i, h := range hops {
		hopIndex[h.From+" -> "+h.To] = i
	}
	for i := 1; i < len(fs); i++ {
		a, b := fs[i-1], fs[i]
		ha, hb := hopIndex[a.Hop], hopIndex[b.Hop]
		switch {
		case ha < hb:
		case ha > hb:
			t.Fatalf("finding %d (%s) of hop %q before one of hop %q", i, b.Rule, b.Hop, a.Hop)
		case severityRank(a.Severity) > severityRank(b.Severity):
			t.Fatalf("finding %d: %s before %s", i, a.Severity, b.Severity)
		case a.Severity == b.Severity && a.Rule > b.Rule:
			t.Fatalf("finding %d: rule %s before %s", i, a.Rule, b.Rule)
		}
	}
	again := Check(c, "1.15.1", Policy{NoSnapshot: true})
	if fmt.Sprint(again) != fmt.Sprint(fs) {
		t.Fatal("two checks of the same input differ")
	}
}

func TestClientFindingsAreAggregated(t *testing.T) {
	c := baseCluster("1.6.10")
	c.Clients = nil
	for i := 0; i < 1000; i++ {
		v := "1.6.4"
		if i%2 == 1 {
			v = "1.6.3"
		}
		c.Clients = append(c.Clients, Client{Name: fmt.Sprintf("c%04d", i), Version: v})
	}
	fs := Check(c, "1.7.1", Policy{Clients: ClientPolicy{Mode: ClientLeaveBehind}})
	hits := findRule(fs, "session-renew-1.7.0")
	if len(hits) != 1 {
		t.Fatalf("want one aggregated finding for 1000 clients, got %d", len(hits))
	}
	f := hits[0]
	if !strings.HasPrefix(f.Node, "1000 clients (c0000, c0001, c0002, ...)") {
		t.Errorf("node label %q should count the clients and name the first three", f.Node)
	}
	if f.Value != "1.6.4, 1.6.3" {
		t.Errorf("value %q should list the versions concerned", f.Value)
	}
}

func TestDatacenterDefaults(t *testing.T) {
	// No datacenters listed: everything is dc1, nothing is unknown.
	c := baseCluster("1.12.9")
	c.Clients[0].Datacenter = "dc1"
	if hits := findRule(Check(c, "1.13.9", Policy{}), PrecheckUnknownDatacenter); len(hits) != 0 {
		t.Fatalf("unlisted datacenters are not checked: %v", hits)
	}
	// Several datacenters: an agent without one is unknown.
	c = baseCluster("1.12.9")
	c.Datacenters = []Datacenter{{Name: "a", Primary: true}, {Name: "b"}}
	for i := range c.Servers {
		c.Servers[i].Datacenter = "a"
	}
	hits := findRule(Check(c, "1.13.9", Policy{}), PrecheckUnknownDatacenter)
	if len(hits) != 1 || !strings.Contains(hits[0].Node, "2 clients") {
		t.Fatalf("clients without a datacenter among several: want one finding, got %v", hits)
	}
	// A listed datacenter with clients and no servers.
	for i := range c.Clients {
		c.Clients[i].Datacenter = "b"
	}
	if hits := findRule(Check(c, "1.13.9", Policy{}), PrecheckNoServers); len(hits) != 1 || !strings.Contains(hits[0].Message, "datacenter b") {
		t.Fatalf("datacenter b has clients and no server: got %v", hits)
	}
}

func TestCheckHandlesEmptyAndHostileInput(t *testing.T) {
	inputs := []Cluster{
		{},
		{Servers: []Server{{}}},
		{Clients: []Client{{}}},
		{Datacenters: []Datacenter{{}, {}}, Servers: []Server{{Name: "x", Version: "v"}}},
	}
	for _, c := range inputs {
		for _, target := range []string{"", "1.12.9", "9.9.9", "0.0.1"} {
			fs := Check(c, target, Policy{Rules: []Rule{{}}})
			if fs.Err() == nil {
				t.Errorf("Check(%+v, %q) passed a broken cluster", c, target)
			}
		}
	}
}

// benchClusterDCs: 5 servers and n clients over 3 datacenters, clients on a
// handful of versions.
func benchClusterDCs(n int) Cluster {
	c := Cluster{Datacenters: []Datacenter{{Name: "dc1", Primary: true}, {Name: "dc2"}, {Name: "dc3"}}}
	dcs := []string{"dc1", "dc1", "dc2", "dc2", "dc3"}
	for i, dc := range dcs {
		c.Servers = append(c.Servers, Server{Name: fmt.Sprintf("srv%d", i), Datacenter: dc, Version: "1.10.12", Voter: true, Healthy: true, Leader: i == 0 || i == 2 || i == 4})
	}
	versions := []string{"1.10.12", "1.10.12", "1.10.9", "1.9.17", "1.10.12+ent"}
	c.Clients = make([]Client, n)
	for i := range c.Clients {
		c.Clients[i] = Client{Name: fmt.Sprintf("client-%06d", i), Datacenter: dcs[i%5], Version: versions[i%len(versions)]}
	}
	c.Features = Features{ACLs: true, Connect: Yes, Envoy: Yes}
	return c
}

func TestCheck100kClientsHasNoPerClientFindings(t *testing.T) {
	c := benchClusterDCs(100_000)
	fs := Check(c, "1.15.10", Policy{Clients: ClientPolicy{Mode: ClientLeaveBehind}, Rules: []Rule{{ID: "every-client", Kind: KindPrecheck, Severity: Info, Scope: ScopeClients, Summary: "s", Hint: "h"}}})
	if len(fs) > 200 {
		t.Fatalf("%d findings for 100k clients: aggregation is broken", len(fs))
	}
	hits := findRule(fs, "every-client")
	if len(hits) == 0 || !strings.HasPrefix(hits[0].Node, "100000 clients (client-000000, client-000001, client-000002") {
		t.Fatalf("aggregated client finding: %+v", hits)
	}
}

func BenchmarkCheck100kClients(b *testing.B) {
	c := benchClusterDCs(100_000)
	pol := Policy{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fs := Check(c, "1.15.10", pol)
		if len(fs) == 0 {
			b.Fatal("no findings")
		}
	}
}
