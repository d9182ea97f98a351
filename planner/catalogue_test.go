package planner

import (
	"fmt"
	"strings"
	"testing"
)

func TestCatalogueRulesAreWellFormed(t *testing.T) {
	kinds := map[Kind]bool{KindOrdering: true, KindSteppingStone: true, KindWindow: true, KindPrecheck: true, KindConfig: true, KindACL: true, KindRaft: true}
	sevs := map[Severity]bool{Blocking: true, Warning: true, Info: true}
	scopes := map[Scope]bool{ScopeCluster: true, ScopeServers: true, ScopeClients: true}
	seen := map[RuleID]bool{}
	rules := Catalogue()
	if len(rules) < 60 {
		t.Fatalf("catalogue has %d rules, want broad coverage (>= 60)", len(rules))
	}
	for _, r := range rules {
		if id := string(r.ID); id == "" || strings.ToLower(id) != id || strings.ContainsAny(id, " _") {
			t.Errorf("rule %q: ID must be non-empty kebab-case", r.ID)
		}
		if seen[r.ID] {
			t.Errorf("rule %q: duplicate ID", r.ID)
		}
		seen[r.ID] = true
		if r.Summary == "" || r.Hint == "" {
			t.Errorf("rule %s: empty summary or hint", r.ID)
		}
		if !strings.HasPrefix(r.URL, "https://") {
			t.Errorf("rule %s: URL %q is not https", r.ID, r.URL)
		}
		if !kinds[r.Kind] || !sevs[r.Severity] || !scopes[r.Scope] {
			t.Errorf("rule %s: kind %q, severity %q or scope %q is not valid", r.ID, r.Kind, r.Severity, r.Scope)
		}
		for _, c := range []string{r.From, r.To} {
			if c == "" {
				continue
			}
			if _, err := parseConstraints(c); err != nil {
				t.Errorf("rule %s: constraint %q does not parse: %v", r.ID, c, err)
			}
		}
	}
	for _, b := range builtins {
		if b.err != nil {
			t.Errorf("rule %s did not compile: %v", b.ID, b.err)
		}
	}
	for _, id := range []RuleID{RuleServersFirst, RuleOneServerAtATime, RuleFollowersFirst, RuleNoLeaveInPlace, RuleMaxMajors,
		RuleTombstoneWindow, RuleRaftBoltDB, RuleACLService05, RuleLeaderPanic080, RuleDatacenterOrder, RuleTransferLeader,
		"no-leader", "server-unhealthy", "server-not-voter", "even-voters", "failure-tolerance-zero", "mixed-versions",
		"duplicate-name", "downgrade", "bad-version", "unknown-datacenter", "no-primary-datacenter", "no-servers"} {
		if !seen[id] {
			t.Errorf("catalogue lacks rule %s", id)
		}
	}
}

func TestCatalogueReturnsAFreshCopy(t *testing.T) {
	a := Catalogue()
	a[0].ID = "changed"
	if b := Catalogue(); b[0].ID == "changed" {
		t.Fatal("Catalogue returned shared storage")
	}
}

// ruleCase is one case of TestEveryRule: a cluster whose servers and
// clients run from, upgraded to target, with mod applied.
type ruleCase struct {
	name   string
	rule   RuleID
	from   string
	target string
	fire   bool
	sev    Severity // checked when fire and not ""
	mod    func(*Cluster, *Policy)
}

// baseCluster: three healthy voters (s3 leads) and two clients, all on v.
func baseCluster(v string) Cluster {
	return Cluster{
		Servers: []Server{
			{Name: "s1", Version: v, Voter: true, Healthy: true},
			{Name: "s2", Version: v, Voter: true, Healthy: true},
			{Name: "s3", Version: v, Voter: true, Healthy: true, Leader: true},
		},
		Clients: []Client{{Name: "c1", Version: v}, {Name: "c2", Version: v}},
	}
}

func mods(fs ...func(*Cluster, *Policy)) func(*Cluster, *Policy) {
	return func(c *Cluster, p *Policy) {
		for _, f := range fs {
			f(c, p)
		}
	}
}

var (
	acls       = func(c *Cluster, _ *Policy) { c.Features.ACLs = true }
	aclDenyMod = func(c *Cluster, _ *Policy) { c.Features.ACLs = true; c.Features.ACLDefaultPolicy = "deny" }
	connectOn  = func(c *Cluster, _ *Policy) { c.Features.Connect = Yes }
	meshOff    = func(c *Cluster, _ *Policy) { c.Features.Connect = No }
	envoyOn    = func(c *Cluster, _ *Policy) { c.Features.Envoy = Yes }
	envoyTLSOn = func(c *Cluster, _ *Policy) { c.Features.Envoy = Yes; c.Features.TLS.HTTPSPort = true }
	// certsNoHTTPS: certificates in tls.defaults (or the legacy keys) and
	// no HTTPS port.
	certsNoHTTPS = func(c *Cluster, _ *Policy) { c.Features.TLS.CertMaterial = true }
	agentless    = func(c *Cluster, _ *Policy) { c.Features.Connect = Yes; c.Features.AgentlessMesh = Yes }
	termGWs      = func(c *Cluster, _ *Policy) { c.Features.TerminatingGateways = Yes }
	legacyACLs   = func(c *Cluster, _ *Policy) { c.Features.ACLs = true; c.Features.LegacyACLs = true }
	ent          = func(_ *Cluster, p *Policy) { p.Enterprise = true }
	asListed     = func(_ *Cluster, p *Policy) { p.ServerOrder = AsListed }
	noClients    = func(c *Cluster, _ *Policy) { c.Clients = nil }
	oneServer    = func(c *Cluster, _ *Policy) { c.Servers = c.Servers[2:] }
	twoServers   = func(c *Cluster, _ *Policy) { c.Servers = c.Servers[1:] }
	// missingS1: s1 died and autopilot removed it (run after twoServers).
	missingS1 = func(c *Cluster, _ *Policy) {
		c.Missing = append(c.Missing, MissingServer{Name: "s1", Version: c.Servers[0].Version, Status: "left"})
	}
	replaceMod = func(_ *Cluster, p *Policy) { p.Strategy = Replace }
	raftProto  = func(n int) func(*Cluster, *Policy) {
		return func(c *Cluster, _ *Policy) { c.Features.RaftProtocol = n }
	}
	leftOn = func(v string) func(*Cluster, *Policy) {
		return func(c *Cluster, p *Policy) {
			for i := range c.Clients {
				c.Clients[i].Version = v
			}
			p.Clients.Mode = ClientLeaveBehind
		}
	}
	twoDCs = func(c *Cluster, _ *Policy) {
		c.Datacenters = []Datacenter{{Name: "dc1", Primary: true}, {Name: "dc2"}}
		for i := range c.Servers {
			c.Servers[i].Datacenter = "dc1"
		}
		c.Servers = append(c.Servers, Server{Name: "s4", Datacenter: "dc2", Version: c.Servers[0].Version, Voter: true, Healthy: true, Leader: true})
	}
)

func ruleCases() []ruleCase {
	return []ruleCase{
		{"an unobserved feature is reported as a warning (features-not-observed)", RuleFeaturesUnobserved, "1.12.9", "1.13.9", true, Warning,
			func(c *Cluster, _ *Policy) {
				c.Features.Unobserved = []FeatureGap{{Feature: "LegacyACLs", Reason: "403"}, {Feature: "Envoy", Reason: "not in the API"}}
			}},
		{"unobserved mesh usage alone is information (features-not-observed)", RuleFeaturesUnobserved, "1.12.9", "1.13.9", true, Info,
			func(c *Cluster, _ *Policy) {
				c.Features.Unobserved = []FeatureGap{{Feature: "Envoy", Reason: "not in the API"}}
			}},
		{"a fully observed cluster has no gap (features-not-observed)", RuleFeaturesUnobserved, "1.12.9", "1.13.9", false, "", nil},
		// Cluster pre-checks.
		{"a cluster without servers cannot be planned (no-servers)", PrecheckNoServers, "1.12.9", "1.13.9", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Servers = nil }},
		{"a cluster with servers passes (no-servers)", PrecheckNoServers, "1.12.9", "1.13.9", false, "", nil},
		{"a cluster without a known leader is not touched (no-leader)", PrecheckNoLeader, "1.12.9", "1.13.9", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Servers[2].Leader = false }},
		{"a cluster with one leader passes (no-leader)", PrecheckNoLeader, "1.12.9", "1.13.9", false, "", nil},
		{"two leaders in one datacenter block (several-leaders)", PrecheckSeveralLeaders, "1.12.9", "1.13.9", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Servers[0].Leader = true }},
		{"one leader per datacenter passes (several-leaders)", PrecheckSeveralLeaders, "1.12.9", "1.13.9", false, "", twoDCs},
		{"an unhealthy server blocks (server-unhealthy)", PrecheckServerUnhealthy, "1.12.9", "1.13.9", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Servers[1].Healthy = false }},
		{"healthy servers pass (server-unhealthy)", PrecheckServerUnhealthy, "1.12.9", "1.13.9", false, "", nil},
		{"a server that is not a voter blocks (server-not-voter)", PrecheckServerNotVoter, "1.12.9", "1.13.9", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Servers[1].Voter = false }},
		{"voting servers pass (server-not-voter)", PrecheckServerNotVoter, "1.12.9", "1.13.9", false, "", nil},
		{"four voters warn that the fourth adds no fault tolerance (even-voters)", PrecheckEvenVoters, "1.12.9", "1.13.9", true, Warning,
			func(c *Cluster, _ *Policy) {
				c.Servers = append(c.Servers, Server{Name: "s4", Version: "1.12.9", Voter: true, Healthy: true})
			}},
		{"three voters are odd and pass (even-voters)", PrecheckEvenVoters, "1.12.9", "1.13.9", false, "", nil},
		{"a single server's swap is a planned outage, said as a warning (failure-tolerance-zero)", PrecheckFailureTolerance, "1.12.9", "1.13.9", true, Warning, oneServer},
		{"two servers are refused by no-spare-voter instead (failure-tolerance-zero)", PrecheckFailureTolerance, "1.12.9", "1.13.9", false, "", twoServers},
		{"three servers tolerate one failure (failure-tolerance-zero)", PrecheckFailureTolerance, "1.12.9", "1.13.9", false, "", nil},
		{"two voters left after autopilot removed a dead third are refused (no-spare-voter)", PrecheckNoSpareVoter, "1.12.9", "1.13.9", true, Blocking, mods(twoServers, missingS1)},
		{"two voters by design are refused too (no-spare-voter)", PrecheckNoSpareVoter, "1.12.9", "1.13.9", true, Blocking, twoServers},
		{"two voters under the replace strategy stop no voter in place, so only warn (no-spare-voter)", PrecheckNoSpareVoter, "1.12.9", "1.13.9", true, Warning, mods(twoServers, replaceMod)},
		{"two voters already on the target stop no voter, so only warn (no-spare-voter)", PrecheckNoSpareVoter, "1.13.9", "1.13.9", true, Warning, twoServers},
		{"three voters have a spare (no-spare-voter)", PrecheckNoSpareVoter, "1.12.9", "1.13.9", false, "", nil},
		{"a single server is a planned outage, not a lost quorum (no-spare-voter)", PrecheckNoSpareVoter, "1.12.9", "1.13.9", false, "", oneServer},
		{"three voters with one unhealthy are server-unhealthy's (no-spare-voter)", PrecheckNoSpareVoter, "1.12.9", "1.13.9", false, "",
			func(c *Cluster, _ *Policy) { c.Servers[0].Healthy = false }},
		{"a server serf lists outside the Raft configuration is named (server-missing)", PrecheckServerMissing, "1.12.9", "1.13.9", true, Warning, mods(twoServers, missingS1)},
		{"every server serf lists is in the Raft configuration (server-missing)", PrecheckServerMissing, "1.12.9", "1.13.9", false, "", nil},
		{"servers on different versions warn of a run stopped midway (mixed-versions)", PrecheckMixedVersions, "1.12.9", "1.13.9", true, Warning,
			func(c *Cluster, _ *Policy) { c.Servers[0].Version = "1.13.9" }},
		{"servers on one version pass (mixed-versions)", PrecheckMixedVersions, "1.12.9", "1.13.9", false, "", nil},
		{"a client named like a server blocks (duplicate-name)", PrecheckDuplicateName, "1.12.9", "1.13.9", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Clients[1].Name = "s1" }},
		{"unique names pass (duplicate-name)", PrecheckDuplicateName, "1.12.9", "1.13.9", false, "", nil},
		{"a target older than a client blocks (downgrade)", PrecheckDowngrade, "1.12.9", "1.13.0", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Clients[0].Version = "1.13.9" }},
		{"a target newer than every agent passes (downgrade)", PrecheckDowngrade, "1.12.9", "1.13.9", false, "", nil},
		{"a client reporting 'latest' blocks (bad-version)", PrecheckBadVersion, "1.12.9", "1.13.9", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Clients[0].Version = "latest" }},
		{"well-formed versions pass (bad-version)", PrecheckBadVersion, "1.12.9", "1.13.9", false, "", nil},
		{"a client in an unlisted datacenter blocks (unknown-datacenter)", PrecheckUnknownDatacenter, "1.12.9", "1.13.9", true, Blocking,
			func(c *Cluster, _ *Policy) {
				c.Datacenters = []Datacenter{{Name: "dc1", Primary: true}}
				c.Clients[0].Datacenter = "dc9"
			}},
		{"agents without a datacenter belong to the single listed one (unknown-datacenter)", PrecheckUnknownDatacenter, "1.12.9", "1.13.9", false, "",
			func(c *Cluster, _ *Policy) { c.Datacenters = []Datacenter{{Name: "east", Primary: true}} }},
		{"several datacenters and no primary block (no-primary-datacenter)", PrecheckNoPrimary, "1.12.9", "1.13.9", true, Blocking,
			mods(twoDCs, func(c *Cluster, _ *Policy) { c.Datacenters[0].Primary = false })},
		{"several datacenters with one primary pass (no-primary-datacenter)", PrecheckNoPrimary, "1.12.9", "1.13.9", false, "", twoDCs},
		{"a listed datacenter whose servers are not in the snapshot is left out of the plan, with a warning (datacenter-not-observed)", PrecheckDatacenterNotSeen, "1.12.9", "1.13.9", true, Warning,
			func(c *Cluster, _ *Policy) {
				c.Datacenters = []Datacenter{{Name: "dc1", Primary: true}, {Name: "dc2"}}
				for i := range c.Servers {
					c.Servers[i].Datacenter = "dc1"
				}
			}},
		{"every listed datacenter with servers in the snapshot is planned (datacenter-not-observed)", PrecheckDatacenterNotSeen, "1.12.9", "1.13.9", false, "", twoDCs},
		{"a client newer than its servers warns (client-newer-than-servers)", PrecheckClientNewerThanSrvs, "1.12.9", "1.14.11", true, Warning,
			func(c *Cluster, _ *Policy) { c.Clients[0].Version = "1.13.9" }},
		{"clients on the servers' version pass (client-newer-than-servers)", PrecheckClientNewerThanSrvs, "1.12.9", "1.14.11", false, "", nil},
		{"a user rule with an unparseable constraint blocks (bad-rule)", PrecheckBadRule, "1.12.9", "1.13.9", true, Blocking,
			func(_ *Cluster, p *Policy) {
				p.Rules = []Rule{{ID: "mine", Kind: KindPrecheck, Severity: Warning, From: "newer than 1", Summary: "s", Hint: "h"}}
			}},
		{"well-formed user rules pass (bad-rule)", PrecheckBadRule, "1.12.9", "1.13.9", false, "",
			func(_ *Cluster, p *Policy) {
				p.Rules = []Rule{{ID: "mine", Kind: KindPrecheck, Severity: Warning, From: ">= 1.0.0", Summary: "s", Hint: "h"}}
			}},
		{"a 2.x target is beyond the catalogue (version-numbering-2.0)", RuleVersionNumbering2, "1.21.5", "2.0.1", true, Blocking, nil},
		{"a 1.x target is within the catalogue (version-numbering-2.0)", RuleVersionNumbering2, "1.20.6", "1.21.5", false, "", nil},

		// How every hop runs.
		{"clients move after the servers of their datacenter (servers-before-clients)", RuleServersFirst, "1.12.9", "1.13.9", true, Info, nil},
		{"a cluster without clients has nothing to order (servers-before-clients)", RuleServersFirst, "1.12.9", "1.13.9", false, "", noClients},
		{"several servers are swapped one at a time (one-server-at-a-time)", RuleOneServerAtATime, "1.12.9", "1.13.9", true, Info, nil},
		{"a single server needs no serialising (one-server-at-a-time)", RuleOneServerAtATime, "1.12.9", "1.13.9", false, "", oneServer},
		{"followers go first and the leader last by default (followers-first-leader-last)", RuleFollowersFirst, "1.12.9", "1.13.9", true, Info, nil},
		{"swapping servers as listed warns that the leader may go early (followers-first-leader-last)", RuleFollowersFirst, "1.12.9", "1.13.9", true, Warning, asListed},
		{"a single server has no followers (followers-first-leader-last)", RuleFollowersFirst, "1.12.9", "1.13.9", false, "", oneServer},
		{"consul leave before an in-place server swap blocks (no-leave-in-place)", RuleNoLeaveInPlace, "1.12.9", "1.13.9", true, Blocking,
			func(_ *Cluster, p *Policy) { p.StopMode = StopLeave }},
		{"the default stop mode does not leave (no-leave-in-place)", RuleNoLeaveInPlace, "1.12.9", "1.13.9", false, "", nil},
		{"SIGTERM on a server below 0.7 may make it leave (leave_on_terminate), so it warns (leave-on-terminate-0.7)", RuleLeaveOnTerminate07, "0.6.4", "0.7.5", true, Warning,
			func(_ *Cluster, p *Policy) { p.StopMode = StopTerminate }},
		{"SIGTERM on servers from 0.7 does not leave (leave-on-terminate-0.7)", RuleLeaveOnTerminate07, "0.7.5", "0.8.5", false, "",
			func(_ *Cluster, p *Policy) { p.StopMode = StopTerminate }},
		{"skipping snapshots warns on every hop (snapshot-before-hop)", RuleSnapshot, "1.12.9", "1.13.9", true, Warning,
			func(_ *Cluster, p *Policy) { p.NoSnapshot = true }},
		{"snapshots by default (snapshot-before-hop)", RuleSnapshot, "1.12.9", "1.13.9", false, "", nil},
		{"Enterprise in-place upgrades disable upgrade migration first (disable-upgrade-migration)", RuleDisableUpgradeMigration, "1.12.9", "1.13.9", true, Warning, ent},
		{"Enterprise replacement one server at a time stalls under upgrade migration (disable-upgrade-migration)", RuleDisableUpgradeMigration, "1.12.9", "1.13.9", true, Warning,
			mods(ent, func(_ *Cluster, p *Policy) { p.Strategy = Replace })},
		{"Consul CE has no upgrade migration (disable-upgrade-migration)", RuleDisableUpgradeMigration, "1.12.9", "1.13.9", false, "", nil},
		{"several datacenters are ordered primary first (datacenter-order)", RuleDatacenterOrder, "1.12.9", "1.13.9", true, Info, twoDCs},
		{"one datacenter needs no order (datacenter-order)", RuleDatacenterOrder, "1.12.9", "1.13.9", false, "", nil},
		{"leadership transfer is on by default from 1.15 on both sides (transfer-leader-1.15)", RuleTransferLeader, "1.15.10", "1.16.6", true, Info, nil},
		{"turning leadership transfer off is said in the plan (transfer-leader-1.15)", RuleTransferLeader, "1.15.10", "1.16.6", true, Info,
			func(_ *Cluster, p *Policy) { p.NoTransferLeadership = true }},
		{"an observed 1.15 leader over 1.14 followers is transferred from (transfer-leader-1.15)", RuleTransferLeader, "1.14.8", "1.16.6", true, Info,
			func(c *Cluster, _ *Policy) { c.Servers[2].Version = "1.15.2" }},
		{"a 1.15 follower under a 1.14 leader brings no transfer (transfer-leader-1.15)", RuleTransferLeader, "1.14.8", "1.16.6", false, "",
			func(c *Cluster, _ *Policy) { c.Servers[0].Version = "1.15.2" }},
		{"no leadership transfer when the old side is below 1.15 (transfer-leader-1.15)", RuleTransferLeader, "1.14.8", "1.15.4", false, "", nil},
		{"the replace strategy follows the automated-upgrade sequence (automated-upgrades-replace)", "automated-upgrades-replace", "1.12.9", "1.13.9", true, Info,
			func(_ *Cluster, p *Policy) { p.Strategy = Replace }},
		{"in-place upgrades do not replace servers (automated-upgrades-replace)", "automated-upgrades-replace", "1.12.9", "1.13.9", false, "", nil},

		// Stepping stones.
		{"1.10 to 1.15 stops every two majors (max-majors-per-hop)", RuleMaxMajors, "1.10.12", "1.15.2", true, Info, nil},
		{"one major needs no stone (max-majors-per-hop)", RuleMaxMajors, "1.12.9", "1.13.9", false, "", nil},
		{"0.6 to 0.8 passes through 0.7.5 (raft-protocol-adjacency-0.7)", RuleRaftProtocol07, "0.6.4", "0.8.5", true, Info, nil},
		{"0.7 to 0.8 is already adjacent (raft-protocol-adjacency-0.7)", RuleRaftProtocol07, "0.7.5", "0.8.5", false, "", nil},
		{"0.9 goes straight to 1.2.4 (dedicated-path-1.2.4)", RuleDedicated124, "0.9.4", "1.2.4", true, Info, nil},
		{"1.2.4 onwards is past the 1.2.4 path (dedicated-path-1.2.4)", RuleDedicated124, "1.2.4", "1.3.1", false, "", nil},
		{"1.3 goes straight to 1.6.10 (dedicated-path-1.6.10)", RuleDedicated1610, "1.3.1", "1.6.10", true, Info, nil},
		{"1.6.10 onwards is past the 1.6.10 path (dedicated-path-1.6.10)", RuleDedicated1610, "1.6.10", "1.7.14", false, "", nil},
		{"1.7 goes straight to 1.8.19 (dedicated-path-1.8.19)", RuleDedicated1819, "1.7.2", "1.8.19", true, Info, nil},
		{"1.8.19 to 1.9 needs no dedicated path (dedicated-path-1.8.19)", RuleDedicated1819, "1.8.19", "1.9.17", false, "", nil},
		{"1.9 goes to 1.10.12 (dedicated-path-1.10.12)", RuleDedicated11012, "1.9.3", "1.10.12", true, Info, nil},
		{"1.10.12 onwards is past the 1.10.12 path (dedicated-path-1.10.12)", RuleDedicated11012, "1.10.12", "1.11.11", false, "", nil},
		{"Enterprise 1.9.3 reaches 1.10 through 1.9.17 (enterprise-license-stone-1.10)", RuleEnterprise110, "1.9.3", "1.10.12", true, Info, ent},
		{"Consul CE 1.9.3 needs no license stone (enterprise-license-stone-1.10)", RuleEnterprise110, "1.9.3", "1.10.12", false, "", nil},
		{"Enterprise 1.10.2 reaches 1.11 through 1.10.12 (enterprise-1.10.7-before-1.11)", RuleEnterprise1107, "1.10.2", "1.11.11", true, Info, ent},
		{"Consul CE 1.10.2 goes straight to 1.11 (enterprise-1.10.7-before-1.11)", RuleEnterprise1107, "1.10.2", "1.11.11", false, "", nil},

		// 0.4 to 0.7.
		{"ACLs while servers cross 0.4 warn of panics (acl-mixed-servers-0.4)", "acl-mixed-servers-0.4", "0.3.1", "0.4.1", true, Warning, acls},
		{"no ACLs, no 0.4 ACL risk (acl-mixed-servers-0.4)", "acl-mixed-servers-0.4", "0.3.1", "0.4.1", false, "", nil},
		{"default-deny ACLs crossing 0.5 block until service write is granted (acl-service-write-0.5)", RuleACLService05, "0.4.1", "0.5.2", true, Blocking, aclDenyMod},
		{"default-allow ACLs crossing 0.5 are only informed (acl-service-write-0.5)", RuleACLService05, "0.4.1", "0.5.2", true, Info, acls},
		{"without ACLs the 0.5 ACL change does not matter (acl-service-write-0.5)", RuleACLService05, "0.4.1", "0.5.2", false, "", nil},
		{"servers swapped as listed across 0.5 must finish within 15 minutes (tombstone-window-0.5)", RuleTombstoneWindow, "0.4.1", "0.5.2", true, Warning, asListed},
		{"followers first across 0.5 has no deadline (tombstone-window-0.5)", RuleTombstoneWindow, "0.4.1", "0.5.2", true, Info, nil},
		{"a 0.5 leader observed with old followers is inside the 15-minute window whatever the order (tombstone-window-0.5)", RuleTombstoneWindow, "0.4.1", "0.5.2", true, Warning,
			func(c *Cluster, _ *Policy) { c.Servers[2].Version = "0.5.2" }},
		{"an old leader observed with 0.5 followers is outside the window with followers first (tombstone-window-0.5)", RuleTombstoneWindow, "0.4.1", "0.5.2", true, Info,
			func(c *Cluster, _ *Policy) { c.Servers[0].Version = "0.5.2" }},
		{"Enterprise clients left on 1.10.3 block servers going to 1.11 (enterprise-1.10.7-left-behind-clients)", RuleEnterprise1107Clients, "1.10.12", "1.11.11", true, Blocking,
			mods(ent, leftOn("1.10.3"))},
		{"Enterprise clients left on 1.10.7 keep their services (enterprise-1.10.7-left-behind-clients)", RuleEnterprise1107Clients, "1.10.12", "1.11.11", false, "",
			mods(ent, leftOn("1.10.7"))},
		{"Enterprise clients on 1.10.3 upgraded in waves reach 1.10.12 first (enterprise-1.10.7-left-behind-clients)", RuleEnterprise1107Clients, "1.10.12", "1.11.11", false, "",
			mods(ent, func(c *Cluster, _ *Policy) {
				for i := range c.Clients {
					c.Clients[i].Version = "1.10.3"
				}
			})},
		{"Consul CE clients left on 1.10.3 are not affected (enterprise-1.10.7-left-behind-clients)", RuleEnterprise1107Clients, "1.10.12", "1.11.11", false, "",
			leftOn("1.10.3")},
		{"Enterprise clients left on 1.9.17 are below 1.10.7 too and block servers going to 1.11 (enterprise-1.10.7-left-behind-clients)", RuleEnterprise1107Clients, "1.10.12", "1.11.11", true, Blocking,
			mods(ent, leftOn("1.9.17"))},
		{"Enterprise clients left on 1.9.3 warn when servers go to 1.10 (enterprise-1.10-left-behind-clients)", RuleEnterprise110Clients, "1.9.17", "1.10.12", true, Warning,
			mods(ent, leftOn("1.9.3"))},
		{"Enterprise clients left on 1.8.12 warn when servers go to 1.10 (enterprise-1.10-left-behind-clients)", RuleEnterprise110Clients, "1.9.17", "1.10.12", true, Warning,
			mods(ent, leftOn("1.8.12"))},
		{"Enterprise clients left on 1.9.7 may stay when servers go to 1.10 (enterprise-1.10-left-behind-clients)", RuleEnterprise110Clients, "1.9.17", "1.10.12", false, "",
			mods(ent, leftOn("1.9.7"))},
		{"Enterprise clients left on 1.8.13 may stay when servers go to 1.10 (enterprise-1.10-left-behind-clients)", RuleEnterprise110Clients, "1.9.17", "1.10.12", false, "",
			mods(ent, leftOn("1.8.13"))},
		{"Enterprise clients on 1.9.3 upgraded in waves pass 1.9.17 first (enterprise-1.10-left-behind-clients)", RuleEnterprise110Clients, "1.9.17", "1.10.12", false, "",
			mods(ent, func(c *Cluster, _ *Policy) {
				for i := range c.Clients {
					c.Clients[i].Version = "1.9.3"
				}
			})},
		{"Consul CE clients left on 1.9.3 have no license to lose (enterprise-1.10-left-behind-clients)", RuleEnterprise110Clients, "1.9.17", "1.10.12", false, "", leftOn("1.9.3")},
		{"replacing servers that run 1.0.0 stalls on pairwise promotion (replace-autopilot-pairs-1.0.0)", RuleReplaceAutopilot100, "1.0.0", "1.0.8", true, Blocking,
			func(_ *Cluster, p *Policy) { p.Strategy = Replace }},
		{"replacing 1.0.0 servers on raft protocol 2 adds voters directly (replace-autopilot-pairs-1.0.0)", RuleReplaceAutopilot100, "1.0.0", "1.0.8", false, "",
			mods(raftProto(2), func(_ *Cluster, p *Policy) { p.Strategy = Replace })},
		{"leaving 1.0.0 in place promotes nobody (replace-autopilot-pairs-1.0.0)", RuleReplaceAutopilot100, "1.0.0", "1.0.8", false, "", nil},
		{"replacing servers on 1.0.1 promotes each new server once stable (replace-autopilot-pairs-1.0.0)", RuleReplaceAutopilot100, "1.0.1", "1.0.8", false, "",
			func(_ *Cluster, p *Policy) { p.Strategy = Replace }},
		{"replacing 0.9 servers configured to raft protocol 3 stalls on pairwise promotion too (replace-autopilot-pairs-1.0.0)", RuleReplaceAutopilot100, "0.9.4", "1.0.8", true, Blocking,
			mods(raftProto(3), func(_ *Cluster, p *Policy) { p.Strategy = Replace })},
		{"replacing 0.9 servers on their default raft protocol 2 adds voters directly (replace-autopilot-pairs-1.0.0)", RuleReplaceAutopilot100, "0.9.4", "1.0.8", false, "",
			func(_ *Cluster, p *Policy) { p.Strategy = Replace }},
		{"legacy ACL tokens leaving 1.6.x block until migrated (legacy-acls-before-leaving-1.6)", RuleLegacyACLs16, "1.5.3", "1.8.19", true, Blocking, legacyACLs},
		{"legacy ACL tokens may reach 1.6.10, where they are migrated (legacy-acls-before-leaving-1.6)", RuleLegacyACLs16, "1.5.3", "1.6.10", false, "", legacyACLs},
		{"migrated tokens leave 1.6.x (legacy-acls-before-leaving-1.6)", RuleLegacyACLs16, "1.6.10", "1.8.19", false, "", acls},
		{"ACLs on servers below 1.4 are legacy tokens, declared or not, and block leaving 1.6.x (legacy-acls-before-leaving-1.6)", RuleLegacyACLs16, "1.3.1", "1.8.19", true, Blocking, acls},
		{"ACLs on servers below 1.4 may reach 1.6.10 (legacy-acls-before-leaving-1.6)", RuleLegacyACLs16, "1.3.1", "1.6.10", false, "", acls},
		{"servers already on 0.5 have no tombstone window (tombstone-window-0.5)", RuleTombstoneWindow, "0.5.0", "0.5.2", false, "", nil},
		{"servers below 0.5.1 migrate the Raft store on first boot (raft-boltdb-migration-0.5.1)", RuleRaftBoltDB, "0.4.1", "0.5.2", true, Info, nil},
		{"servers on 0.5.1 already migrated (raft-boltdb-migration-0.5.1)", RuleRaftBoltDB, "0.5.1", "0.5.2", false, "", nil},
		{"0.6 needs twice the state in RAM (memory-state-store-0.6)", "memory-state-store-0.6", "0.5.2", "0.6.4", true, Info, nil},
		{"servers on 0.6 already keep state in memory (memory-state-store-0.6)", "memory-state-store-0.6", "0.6.0", "0.6.4", false, "", nil},
		{"default-deny ACLs crossing 0.6 block until service read is granted (acl-service-read-0.6)", "acl-service-read-0.6", "0.5.2", "0.6.4", true, Blocking, aclDenyMod},
		{"default-allow ACLs keep discovery open at 0.6 (acl-service-read-0.6)", "acl-service-read-0.6", "0.5.2", "0.6.4", false, "", acls},
		{"0.6 needs a bind address on multi-IP hosts (bind-address-0.6)", "bind-address-0.6", "0.5.2", "0.6.4", true, Info, nil},
		{"0.6 to 0.7 does not change bind rules (bind-address-0.6)", "bind-address-0.6", "0.6.4", "0.7.5", false, "", nil},
		{"ACLs crossing 0.6.4 get query rules (prepared-query-acl-0.6.4)", "prepared-query-acl-0.6.4", "0.6.0", "0.6.4", true, Info, acls},
		{"no ACLs, no query rules (prepared-query-acl-0.6.4)", "prepared-query-acl-0.6.4", "0.6.0", "0.6.4", false, "", nil},
		{"clients below 0.4 left behind cannot gossip with 0.7 (gossip-protocol-0.7)", "gossip-protocol-0.7", "0.5.2", "0.7.5", true, Blocking,
			func(c *Cluster, p *Policy) {
				c.Clients[0].Version = "0.3.1"
				p.Clients.Mode = ClientLeaveBehind
			}},
		{"clients below 0.4 upgraded in waves reach 0.5 first (gossip-protocol-0.7)", "gossip-protocol-0.7", "0.5.2", "0.7.5", false, "",
			func(c *Cluster, _ *Policy) { c.Clients[0].Version = "0.3.1" }},
		{"0.7 slows Raft timing by default (raft-multiplier-0.7)", "raft-multiplier-0.7", "0.6.4", "0.7.5", true, Info, nil},
		{"servers on 0.7 already have the new timing (raft-multiplier-0.7)", "raft-multiplier-0.7", "0.7.0", "0.7.5", false, "", nil},
		{"0.7 replaces peers.json (peers-json-0.7)", "peers-json-0.7", "0.6.4", "0.7.5", true, Info, nil},
		{"servers on 0.7 already dropped peers.json (peers-json-0.7)", "peers-json-0.7", "0.7.0", "0.7.5", false, "", nil},
		{"0.7.1 removes reap (reap-removed-0.7.1)", "reap-removed-0.7.1", "0.7.0", "0.7.5", true, Info, nil},
		{"servers on 0.7.1 no longer reap (reap-removed-0.7.1)", "reap-removed-0.7.1", "0.7.1", "0.7.5", false, "", nil},

		// 0.8 to 1.2.
		{"0.8.0 is a known-bad target (known-bad-0.8.0)", "known-bad-0.8.0", "0.7.5", "0.8.0", true, Blocking, nil},
		{"0.8.1 is fine (known-bad-0.8.0)", "known-bad-0.8.0", "0.7.5", "0.8.1", false, "", nil},
		{"targeting 0.8.0 warns of the leader panic (leader-panic-0.8.0)", RuleLeaderPanic080, "0.7.5", "0.8.0", true, Warning, nil},
		{"targeting 0.8.0 as listed blocks (leader-panic-0.8.0)", RuleLeaderPanic080, "0.7.5", "0.8.0", true, Blocking, asListed},
		{"a 0.8.0 leader observed over 0.7.5 followers warns whatever the target (leader-panic-0.8.0)", RuleLeaderPanic080, "0.7.5", "0.8.5", true, Warning,
			func(c *Cluster, _ *Policy) { c.Servers[2].Version = "0.8.0" }},
		{"a 0.8.1 leader observed over 0.7.5 followers writes nothing they panic on (leader-panic-0.8.0)", RuleLeaderPanic080, "0.7.5", "0.8.5", false, "",
			func(c *Cluster, _ *Policy) { c.Servers[2].Version = "0.8.1" }},
		{"targeting 0.8.1 has no leader panic (leader-panic-0.8.0)", RuleLeaderPanic080, "0.7.5", "0.8.1", false, "", nil},
		{"ACLs crossing 0.8 enforce version 8 (acl-enforce-version-8-0.8)", "acl-enforce-version-8-0.8", "0.7.5", "0.8.5", true, Warning, acls},
		{"no ACLs, no version 8 enforcement (acl-enforce-version-8-0.8)", "acl-enforce-version-8-0.8", "0.7.5", "0.8.5", false, "", nil},
		{"0.8 removes the RPC interface (rpc-removed-0.8)", "rpc-removed-0.8", "0.7.5", "0.8.5", true, Info, nil},
		{"servers on 0.8 have no RPC interface left (rpc-removed-0.8)", "rpc-removed-0.8", "0.8.0", "0.8.5", false, "", nil},
		{"0.9 targets on raft_protocol 2 lack autopilot health (autopilot-raft-protocol-3)", "autopilot-raft-protocol-3", "0.8.5", "0.9.4", true, Info, nil},
		{"raft_protocol 3 has autopilot health (autopilot-raft-protocol-3)", "autopilot-raft-protocol-3", "0.8.5", "0.9.4", false, "", raftProto(3)},
		{"0.9 makes script checks opt-in (script-checks-0.9)", "script-checks-0.9", "0.8.5", "0.9.4", true, Info, nil},
		{"agents on 0.9 already opted in (script-checks-0.9)", "script-checks-0.9", "0.9.0", "0.9.4", false, "", nil},
		{"1.0.0 is a known-bad target (known-bad-1.0.0)", "known-bad-1.0.0", "0.9.4", "1.0.0", true, Blocking, nil},
		{"1.0.1 is fine (known-bad-1.0.0)", "known-bad-1.0.0", "0.9.4", "1.0.1", false, "", nil},
		{"1.0 defaults to Raft protocol 3, servers on 2 must keep it while 0.x remains (raft-protocol-3-1.0)", "raft-protocol-3-1.0", "0.9.4", "1.0.8", true, Warning,
			func(c *Cluster, _ *Policy) { c.Features.RaftProtocol = 2 }},
		{"1.0 defaults to Raft protocol 3, already run everywhere (raft-protocol-3-1.0)", "raft-protocol-3-1.0", "0.9.4", "1.0.8", true, Info,
			func(c *Cluster, _ *Policy) { c.Features.RaftProtocol = 3 }},
		{"servers on 1.0 already default to 3 (raft-protocol-3-1.0)", "raft-protocol-3-1.0", "1.0.1", "1.0.8", false, "", nil},
		{"a single server crossing 1.0 cannot elect itself (single-server-raft-1.0)", "single-server-raft-1.0", "0.9.4", "1.0.8", true, Warning, oneServer},
		{"three servers crossing 1.0 elect normally (single-server-raft-1.0)", "single-server-raft-1.0", "0.9.4", "1.0.8", false, "", nil},
		{"a single 0.9 server reporting raft protocol 2, its default, still needs 2 pinned for 1.0 (single-server-raft-1.0)", "single-server-raft-1.0", "0.9.4", "1.0.8", true, Info, mods(oneServer, raftProto(2))},
		{"1.0 drops deprecated config (config-rewrite-1.0)", "config-rewrite-1.0", "0.9.4", "1.0.8", true, Info, nil},
		{"configs on 1.0 are already rewritten (config-rewrite-1.0)", "config-rewrite-1.0", "1.0.1", "1.0.8", false, "", nil},
		{"1.0 refuses invalid checks (strict-checks-1.0)", "strict-checks-1.0", "0.9.4", "1.0.8", true, Info, nil},
		{"agents on 1.0 already validate checks (strict-checks-1.0)", "strict-checks-1.0", "1.0.1", "1.0.8", false, "", nil},
		{"1.0.7 makes service indexes per service (consul-index-1.0.7)", "consul-index-1.0.7", "1.0.6", "1.0.8", true, Info, nil},
		{"servers on 1.0.7 already index per service (consul-index-1.0.7)", "consul-index-1.0.7", "1.0.7", "1.0.8", false, "", nil},
		{"1.1 removes old config keys (config-removals-1.1)", "config-removals-1.1", "1.0.8", "1.1.1", true, Info, nil},
		{"agents on 1.1 lost them already (config-removals-1.1)", "config-removals-1.1", "1.1.0", "1.1.1", false, "", nil},
		{"two servers on the 1.2.4 path risk a leaderless loop (three-servers-1.2.4)", "three-servers-1.2.4", "1.1.1", "1.2.4", true, Warning, twoServers},
		{"three servers on the 1.2.4 path are enough (three-servers-1.2.4)", "three-servers-1.2.4", "1.1.1", "1.2.4", false, "", nil},

		// 1.3 to 1.7.
		{"1.3.0 is a known-bad target while 1.2 clients remain (known-bad-1.3.0)", "known-bad-1.3.0", "1.2.4", "1.3.0", true, Blocking, nil},
		{"1.3.1 is fine (known-bad-1.3.0)", "known-bad-1.3.0", "1.2.4", "1.3.1", false, "", nil},
		{"1.3.0 without clients ignores no tag filter (known-bad-1.3.0)", "known-bad-1.3.0", "1.2.4", "1.3.0", false, "", noClients},
		{"ACLs crossing 1.4 move to the new ACL system (new-acls-1.4)", "new-acls-1.4", "1.3.1", "1.4.5", true, Warning, acls},
		{"no ACLs, no ACL transition (new-acls-1.4)", "new-acls-1.4", "1.3.1", "1.4.5", false, "", nil},
		{"1.4 renames acl_datacenter (primary-datacenter-key-1.4)", "primary-datacenter-key-1.4", "1.3.1", "1.4.5", true, Info, nil},
		{"agents on 1.4 know primary_datacenter (primary-datacenter-key-1.4)", "primary-datacenter-key-1.4", "1.4.0", "1.4.5", false, "", nil},
		{"Enterprise Connect crossing 1.4 federates the CA later (connect-ca-federation-1.4)", "connect-ca-federation-1.4", "1.3.1", "1.4.5", true, Info, mods(ent, connectOn)},
		{"Consul CE without Connect has no CA federation (connect-ca-federation-1.4)", "connect-ca-federation-1.4", "1.3.1", "1.4.5", false, "", nil},
		{"Connect crossing 1.6 loses managed proxies (managed-proxies-removed-1.6)", "managed-proxies-removed-1.6", "1.5.3", "1.6.10", true, Warning, connectOn},
		{"no Connect, no managed proxies (managed-proxies-removed-1.6)", "managed-proxies-removed-1.6", "1.5.3", "1.6.10", false, "", nil},
		{"crossing 1.6 from 1.5 takes a fresh snapshot after (kv-snapshot-1.6)", "kv-snapshot-1.6", "1.5.3", "1.6.10", true, Warning, nil},
		{"servers on 1.6 write new snapshots already (kv-snapshot-1.6)", "kv-snapshot-1.6", "1.6.0", "1.6.10", false, "", nil},
		{"1.6.2 decodes JSON strictly (strict-json-1.6.2)", "strict-json-1.6.2", "1.6.1", "1.6.10", true, Info, nil},
		{"agents on 1.6.2 already decode strictly (strict-json-1.6.2)", "strict-json-1.6.2", "1.6.2", "1.6.10", false, "", nil},
		{"1.6.3-1.7.0 limit HTTP connections for Vault (http-max-conns-1.6.3)", "http-max-conns-1.6.3", "1.6.2", "1.6.5", true, Info, nil},
		{"targets past 1.7.0 raise the limit again (http-max-conns-1.6.3)", "http-max-conns-1.6.3", "1.6.10", "1.7.14", false, "", nil},
		{"clients left on 1.6.4 facing 1.7.1 servers lose sessions (session-renew-1.7.0)", "session-renew-1.7.0", "1.6.10", "1.7.1", true, Blocking, leftOn("1.6.4")},
		{"1.7.2 servers accept old clients' sessions (session-renew-1.7.0)", "session-renew-1.7.0", "1.6.10", "1.7.2", false, "", leftOn("1.6.4")},
		{"clients upgraded in waves reach 1.6.10 before 1.7.1 servers (session-renew-1.7.0)", "session-renew-1.7.0", "1.6.4", "1.7.1", false, "", nil},
		{"1.7 rejects unknown API fields (api-strict-1.7)", "api-strict-1.7", "1.6.10", "1.7.14", true, Info, nil},
		{"agents on 1.7 already reject them (api-strict-1.7)", "api-strict-1.7", "1.7.0", "1.7.14", false, "", nil},

		// 1.8 to 1.12.
		{"1.8 removes acl_enforce_version_8 (acl-enforce-removed-1.8)", "acl-enforce-removed-1.8", "1.7.14", "1.8.19", true, Info, nil},
		{"agents on 1.8 no longer read it (acl-enforce-removed-1.8)", "acl-enforce-removed-1.8", "1.8.0", "1.8.19", false, "", nil},
		{"raft_protocol 2 crossing 1.9 blocks until a separate restart sets 3 (raft-protocol-3-1.9)", RuleRaftProtocol3v19, "1.8.19", "1.9.17", true, Blocking, raftProto(2)},
		{"raft_protocol 3 crosses 1.9 (raft-protocol-3-1.9)", RuleRaftProtocol3v19, "1.8.19", "1.9.17", false, "", raftProto(3)},
		{"legacy tokens crossing 1.9 risk server panics (legacy-acls-panic-1.9)", "legacy-acls-panic-1.9", "1.8.19", "1.9.17", true, Warning, legacyACLs},
		{"no legacy tokens, no 1.9 panic (legacy-acls-panic-1.9)", "legacy-acls-panic-1.9", "1.8.19", "1.9.17", false, "", acls},
		{"ACLs on servers below 1.4 going to 1.9 hold legacy tokens (legacy-acls-panic-1.9)", "legacy-acls-panic-1.9", "1.3.1", "1.9.17", true, Warning, acls},
		{"1.9 turns on central service config (central-config-1.9)", "central-config-1.9", "1.8.19", "1.9.17", true, Info, nil},
		{"agents on 1.9 have it on already (central-config-1.9)", "central-config-1.9", "1.9.0", "1.9.17", false, "", nil},
		{"Connect crossing 1.9 migrates intentions (intentions-migration-1.9)", "intentions-migration-1.9", "1.8.19", "1.9.17", true, Info, connectOn},
		{"no Connect, no intentions to migrate (intentions-migration-1.9)", "intentions-migration-1.9", "1.8.19", "1.9.17", false, "", nil},
		{"Enterprise crossing 1.10 needs the license in config (enterprise-license-1.10)", "enterprise-license-1.10", "1.9.17", "1.10.12", true, Warning, ent},
		{"Consul CE needs no license (enterprise-license-1.10)", "enterprise-license-1.10", "1.9.17", "1.10.12", false, "", nil},
		{"Envoy crossing 1.10 moves to xDS v3 (envoy-xds-v3-1.10)", "envoy-xds-v3-1.10", "1.9.17", "1.10.12", true, Warning, envoyOn},
		{"no Envoy, no xDS change (envoy-xds-v3-1.10)", "envoy-xds-v3-1.10", "1.9.17", "1.10.12", false, "", nil},
		{"Envoy on 1.10 going to 1.11 must speak xDS v3 already (envoy-xds-v3-1.10)", "envoy-xds-v3-1.10", "1.10.12", "1.11.11", true, Warning, envoyOn},
		{"agents on 1.11 dropped xDS v2 already (envoy-xds-v3-1.10)", "envoy-xds-v3-1.10", "1.11.0", "1.11.11", false, "", envoyOn},
		{"legacy ACL tokens crossing 1.11 block until migrated (legacy-acls-removed-1.11)", RuleLegacyACLs111, "1.10.12", "1.11.11", true, Blocking, legacyACLs},
		{"migrated tokens cross 1.11 (legacy-acls-removed-1.11)", RuleLegacyACLs111, "1.10.12", "1.11.11", false, "", acls},
		{"ACLs on servers below 1.4 going to 1.11 hold legacy tokens (legacy-acls-removed-1.11)", RuleLegacyACLs111, "1.3.1", "1.11.11", true, Blocking, acls},
		{"1.11 renames the master tokens (acl-token-renames-1.11)", "acl-token-renames-1.11", "1.10.12", "1.11.11", true, Info, nil},
		{"agents on 1.11 know the new names (acl-token-renames-1.11)", "acl-token-renames-1.11", "1.11.0", "1.11.11", false, "", nil},
		{"1.11 moves Raft to bbolt (bbolt-1.11)", "bbolt-1.11", "1.10.12", "1.11.11", true, Info, nil},
		{"servers on 1.11 use bbolt already (bbolt-1.11)", "bbolt-1.11", "1.11.0", "1.11.11", false, "", nil},
		{"Connect targeting 1.11.9 needs a wider Vault policy (vault-ca-tune-1.11.9)", "vault-ca-tune-1.11.9", "1.10.12", "1.11.9", true, Warning, connectOn},
		{"1.11.11 needs no wider Vault policy (vault-ca-tune-1.11.9)", "vault-ca-tune-1.11.9", "1.10.12", "1.11.11", false, "", connectOn},
		{"TLS material crossing 1.12 moves into the tls stanza (tls-stanza-1.12)", "tls-stanza-1.12", "1.11.11", "1.12.9",
			true, Info, func(c *Cluster, _ *Policy) { c.Features.TLS.CertMaterial = true }},
		{"no TLS material, nothing to move (tls-stanza-1.12)", "tls-stanza-1.12", "1.11.11", "1.12.9", false, "", nil},
		{"Enterprise 1.12.0 breaks Nomad namespaces (known-bad-1.12.0-nomad)", "known-bad-1.12.0-nomad", "1.11.11", "1.12.0", true, Warning, ent},
		{"Consul CE 1.12.0 has no namespace issue (known-bad-1.12.0-nomad)", "known-bad-1.12.0-nomad", "1.11.11", "1.12.0", false, "", nil},
		{"Connect targeting 1.12.5 needs a wider Vault policy (vault-ca-tune-1.12.5)", "vault-ca-tune-1.12.5", "1.11.11", "1.12.5", true, Warning, connectOn},
		{"1.12.6 needs no wider Vault policy (vault-ca-tune-1.12.5)", "vault-ca-tune-1.12.5", "1.11.11", "1.12.6", false, "", connectOn},

		// 1.13 and 1.14.
		{"the mesh targeting 1.13.0 blocks (known-bad-1.13.0)", "known-bad-1.13.0", "1.12.9", "1.13.0", true, Blocking, connectOn},
		{"1.13.0 warns when mesh use is unknown (known-bad-1.13.0)", "known-bad-1.13.0", "1.12.9", "1.13.0", true, Warning, nil},
		{"a cluster without the mesh may target 1.13.0 (known-bad-1.13.0)", "known-bad-1.13.0", "1.12.9", "1.13.0", false, "", meshOff},
		{"1.13.1 is fine (known-bad-1.13.0)", "known-bad-1.13.0", "1.12.9", "1.13.1", false, "", connectOn},
		{"certificates in tls.defaults without HTTPS stop the path from 1.11 on 1.12, which then skips 1.13 (grpc-tls-1.13)", RuleGRPCTLS113, "1.11.11", "1.14.11", true, Info, certsNoHTTPS},
		{"certificates in tls.defaults without HTTPS on 1.12 going to 1.13 must move first: a warning (grpc-tls-1.13)", RuleGRPCTLS113, "1.12.9", "1.13.9", true, Warning, certsNoHTTPS},
		{"with Envoy, a hop from 1.11 onto 1.13 that no 1.12 release can break blocks (grpc-tls-1.13)", RuleGRPCTLS113, "1.11.11", "1.13.9", true, Blocking,
			mods(certsNoHTTPS, envoyOn, func(_ *Cluster, p *Policy) { p.Releases = []string{"1.11.11", "1.13.9"} })},
		{"Envoy use unknown on such a hop only warns (grpc-tls-1.13)", RuleGRPCTLS113, "1.11.11", "1.13.9", true, Warning,
			mods(certsNoHTTPS, func(_ *Cluster, p *Policy) { p.Releases = []string{"1.11.11", "1.13.9"} })},
		{"certificates with an HTTPS port keep gRPC on TLS already (grpc-tls-1.13)", RuleGRPCTLS113, "1.11.11", "1.13.9", false, "",
			func(c *Cluster, _ *Policy) { c.Features.TLS.CertMaterial = true; c.Features.TLS.HTTPSPort = true }},
		{"certificates without HTTPS and no mesh have no Envoy to cut (grpc-tls-1.13)", RuleGRPCTLS113, "1.11.11", "1.13.9", false, "", mods(certsNoHTTPS, meshOff)},
		{"1.12 to 1.14 never runs 1.13, so the certificates may stay (grpc-tls-1.13)", RuleGRPCTLS113, "1.12.9", "1.14.11", false, "", certsNoHTTPS},
		{"auto-encrypt targeting 1.13.1 forces gRPC TLS and blocks (auto-encrypt-grpc-1.13)", "auto-encrypt-grpc-1.13", "1.12.9", "1.13.1", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Features.TLS.AutoEncrypt = true }},
		{"auto-encrypt targeting 1.13.9 only needs use_auto_cert (auto-encrypt-grpc-1.13)", "auto-encrypt-grpc-1.13", "1.12.9", "1.13.9", true, Warning,
			func(c *Cluster, _ *Policy) { c.Features.TLS.AutoEncrypt = true }},
		{"no auto-encrypt, no gRPC certificate change (auto-encrypt-grpc-1.13)", "auto-encrypt-grpc-1.13", "1.12.9", "1.13.9", false, "", nil},
		{"1.13 removes disable_compat_19 (disable-compat-19-1.13)", "disable-compat-19-1.13", "1.12.9", "1.13.9", true, Info, nil},
		{"agents on 1.13 no longer read it (disable-compat-19-1.13)", "disable-compat-19-1.13", "1.13.0", "1.13.9", false, "", nil},
		{"Connect targeting 1.13.2 needs a wider Vault policy (vault-ca-tune-1.13.2)", "vault-ca-tune-1.13.2", "1.12.9", "1.13.2", true, Warning, connectOn},
		{"1.13.3 needs no wider Vault policy (vault-ca-tune-1.13.2)", "vault-ca-tune-1.13.2", "1.12.9", "1.13.3", false, "", connectOn},
		{"1.13.8 breaks Nomad version detection (nomad-detection-1.13.8)", "nomad-detection-1.13.8", "1.12.9", "1.13.8", true, Warning, nil},
		{"1.13.9 detects fine (nomad-detection-1.13.8)", "nomad-detection-1.13.8", "1.12.9", "1.13.9", false, "", nil},
		{"TLS gRPC crossing 1.14 blocks until ports.grpc_tls is set (grpc-tls-port-1.14)", RuleGRPCTLSPort114, "1.13.9", "1.14.11", true, Blocking,
			func(c *Cluster, _ *Policy) { c.Features.TLS.GRPCTLS = true }},
		{"plaintext gRPC crosses 1.14 (grpc-tls-port-1.14)", RuleGRPCTLSPort114, "1.13.9", "1.14.11", false, "", nil},
		{"an HTTPS port with certificates before 1.13 serves gRPC over TLS too: with Envoy, crossing 1.14 blocks (grpc-tls-port-1.14)", RuleGRPCTLSPort114, "1.12.9", "1.14.11", true, Blocking,
			mods(envoyOn, func(c *Cluster, _ *Policy) { c.Features.TLS.CertMaterial = true; c.Features.TLS.HTTPSPort = true })},
		{"certificates in tls.defaults on 1.13 serve gRPC over TLS: Envoy use unknown warns (grpc-tls-port-1.14)", RuleGRPCTLSPort114, "1.13.9", "1.14.11", true, Warning, certsNoHTTPS},
		{"certificates in tls.defaults on 1.13 without the mesh serve no Envoy (grpc-tls-port-1.14)", RuleGRPCTLSPort114, "1.13.9", "1.14.11", false, "", mods(certsNoHTTPS, meshOff)},
		{"certificates without HTTPS before 1.13 leave gRPC plaintext (grpc-tls-port-1.14)", RuleGRPCTLSPort114, "1.12.9", "1.14.11", false, "", mods(certsNoHTTPS, envoyOn)},
		{"1.14 turns on peering and Connect (peering-connect-defaults-1.14)", "peering-connect-defaults-1.14", "1.13.9", "1.14.11", true, Info, nil},
		{"agents on 1.14 have them on already (peering-connect-defaults-1.14)", "peering-connect-defaults-1.14", "1.14.0", "1.14.11", false, "", nil},
		{"1.13 peerings do not survive 1.14 (experimental-peering-1.14)", "experimental-peering-1.14", "1.13.9", "1.14.11", true, Info, nil},
		{"1.12 had no peerings to lose (experimental-peering-1.14)", "experimental-peering-1.14", "1.12.9", "1.14.11", false, "", nil},
		{"Envoy with HTTPS targeting 1.14.0 blocks (known-bad-1.14.0-envoy)", "known-bad-1.14.0-envoy", "1.13.9", "1.14.0", true, Blocking, envoyTLSOn},
		{"Envoy without an observed HTTPS port targeting 1.14.0 warns (known-bad-1.14.0-envoy)", "known-bad-1.14.0-envoy", "1.13.9", "1.14.0", true, Warning, envoyOn},
		{"1.14.0 warns when Envoy use is unknown (known-bad-1.14.0-envoy)", "known-bad-1.14.0-envoy", "1.13.9", "1.14.0", true, Warning, nil},
		{"no Envoy, 1.14.0 passes (known-bad-1.14.0-envoy)", "known-bad-1.14.0-envoy", "1.13.9", "1.14.0", false, "", func(c *Cluster, _ *Policy) { c.Features.Envoy = No }},
		{"no mesh, no Envoy, 1.14.0 passes (known-bad-1.14.0-envoy)", "known-bad-1.14.0-envoy", "1.13.9", "1.14.0", false, "", meshOff},
		{"Connect targeting 1.14.10 risks the Vault namespace bug (vault-ca-namespace-1.14.10)", "vault-ca-namespace-1.14.10", "1.13.9", "1.14.10", true, Warning, connectOn},
		{"1.14.11 has no Vault namespace bug (vault-ca-namespace-1.14.10)", "vault-ca-namespace-1.14.10", "1.13.9", "1.14.11", false, "", connectOn},

		// 1.15 to 1.21.
		{"the mesh targeting 1.15.1 blocks (known-bad-1.15.0-1.15.1-mesh)", "known-bad-1.15.0-1.15.1-mesh", "1.14.11", "1.15.1", true, Blocking, connectOn},
		{"the mesh targeting 1.15.2 passes (known-bad-1.15.0-1.15.1-mesh)", "known-bad-1.15.0-1.15.1-mesh", "1.14.11", "1.15.2", false, "", connectOn},
		{"1.15.1 warns when mesh use is unknown (known-bad-1.15.0-1.15.1-mesh)", "known-bad-1.15.0-1.15.1-mesh", "1.14.11", "1.15.1", true, Warning, nil},
		{"a cluster without the mesh may target 1.15.1 (known-bad-1.15.0-1.15.1-mesh)", "known-bad-1.15.0-1.15.1-mesh", "1.14.11", "1.15.1", false, "", meshOff},
		{"1.15 removes the serverless plugin key (serverless-plugin-1.15)", "serverless-plugin-1.15", "1.14.11", "1.15.10", true, Info, nil},
		{"agents on 1.15 no longer read it (serverless-plugin-1.15)", "serverless-plugin-1.15", "1.15.0", "1.15.10", false, "", nil},
		{"ACLs crossing 1.15 lose the migration code (acl-migration-removed-1.15)", "acl-migration-removed-1.15", "1.14.11", "1.15.10", true, Warning, acls},
		{"no ACLs, no migration code needed (acl-migration-removed-1.15)", "acl-migration-removed-1.15", "1.14.11", "1.15.10", false, "", nil},
		{"legacy tokens declared without ACLs mean ACLs are on (acl-migration-removed-1.15)", "acl-migration-removed-1.15", "1.14.11", "1.15.10", true, Warning,
			func(c *Cluster, _ *Policy) { c.Features.LegacyACLs = true }},
		{"a WAL log store before 1.15 cannot exist yet (raft-logstore-1.15)", "raft-logstore-1.15", "1.14.11", "1.15.10", true, Warning,
			func(c *Cluster, _ *Policy) { c.Features.RaftLogStore = "wal" }},
		{"BoltDB crosses 1.15 unchanged (raft-logstore-1.15)", "raft-logstore-1.15", "1.14.11", "1.15.10", false, "",
			func(c *Cluster, _ *Policy) { c.Features.RaftLogStore = "boltdb" }},
		{"Connect targeting 1.15.6 risks the Vault namespace bug (vault-ca-namespace-1.15.6)", "vault-ca-namespace-1.15.6", "1.15.2", "1.15.6", true, Warning, connectOn},
		{"1.15.7 has no Vault namespace bug (vault-ca-namespace-1.15.6)", "vault-ca-namespace-1.15.6", "1.15.2", "1.15.7", false, "", connectOn},
		{"the mesh reaching 1.15.15 normalizes paths (path-normalization-1.15.15)", "path-normalization-1.15.15", "1.15.10", "1.15.15", true, Info, connectOn},
		{"1.15.14 does not normalize yet (path-normalization-1.15.15)", "path-normalization-1.15.15", "1.15.10", "1.15.14", false, "", connectOn},
		{"agentless mesh targeting 1.16.1 blocks (known-bad-1.16.0-1.16.1)", "known-bad-1.16.0-1.16.1", "1.15.10", "1.16.1", true, Blocking, agentless},
		{"1.16.1 warns when agentless mesh use is unknown (known-bad-1.16.0-1.16.1)", "known-bad-1.16.0-1.16.1", "1.15.10", "1.16.1", true, Warning, nil},
		{"1.16.1 warns when the mesh is on but agentless use is unknown (known-bad-1.16.0-1.16.1)", "known-bad-1.16.0-1.16.1", "1.15.10", "1.16.1", true, Warning, connectOn},
		{"a cluster without the mesh may target 1.16.1 (known-bad-1.16.0-1.16.1)", "known-bad-1.16.0-1.16.1", "1.15.10", "1.16.1", false, "", meshOff},
		{"a mesh with client agents only may target 1.16.1 (known-bad-1.16.0-1.16.1)", "known-bad-1.16.0-1.16.1", "1.15.10", "1.16.1", false, "",
			func(c *Cluster, _ *Policy) { c.Features.Connect = Yes; c.Features.AgentlessMesh = No }},
		{"1.16.2 is fine (known-bad-1.16.0-1.16.1)", "known-bad-1.16.0-1.16.1", "1.15.10", "1.16.2", false, "", agentless},
		{"1.16 answers 403 on health/connect without service read (health-connect-403-1.16)", "health-connect-403-1.16", "1.15.10", "1.16.6", true, Info, nil},
		{"servers on 1.16 answer 403 already (health-connect-403-1.16)", "health-connect-403-1.16", "1.16.0", "1.16.6", false, "", nil},
		{"Connect targeting 1.16.2 risks the Vault namespace bug (vault-ca-namespace-1.16.2)", "vault-ca-namespace-1.16.2", "1.15.10", "1.16.2", true, Warning, connectOn},
		{"1.16.3 has no Vault namespace bug (vault-ca-namespace-1.16.2)", "vault-ca-namespace-1.16.2", "1.15.10", "1.16.3", false, "", connectOn},
		{"terminating gateways targeting 1.16.5 block (known-bad-1.16.5)", "known-bad-1.16.5", "1.15.10", "1.16.5", true, Blocking, termGWs},
		{"1.16.5 warns when terminating gateway use is unknown (known-bad-1.16.5)", "known-bad-1.16.5", "1.15.10", "1.16.5", true, Warning, nil},
		{"a cluster without the mesh may target 1.16.5 (known-bad-1.16.5)", "known-bad-1.16.5", "1.15.10", "1.16.5", false, "", meshOff},
		{"1.16.6 is fine (known-bad-1.16.5)", "known-bad-1.16.5", "1.15.10", "1.16.6", false, "", termGWs},
		{"ACLs crossing 1.17 wait with templated policies (templated-policies-1.17)", "templated-policies-1.17", "1.16.6", "1.17.3", true, Info, acls},
		{"no ACLs, no templated policies (templated-policies-1.17)", "templated-policies-1.17", "1.16.6", "1.17.3", false, "", nil},
		{"1.17 changes RaftLeaderTransfer (api-changes-1.17)", "api-changes-1.17", "1.16.6", "1.17.3", true, Info, nil},
		{"agents on 1.17 have the new API (api-changes-1.17)", "api-changes-1.17", "1.17.0", "1.17.3", false, "", nil},
		{"terminating gateways targeting 1.17.2 block (known-bad-1.17.2)", "known-bad-1.17.2", "1.16.6", "1.17.2", true, Blocking, termGWs},
		{"1.17.2 warns when terminating gateway use is unknown (known-bad-1.17.2)", "known-bad-1.17.2", "1.16.6", "1.17.2", true, Warning, nil},
		{"a mesh without terminating gateways may target 1.17.2 (known-bad-1.17.2)", "known-bad-1.17.2", "1.16.6", "1.17.2", false, "",
			func(c *Cluster, _ *Policy) { c.Features.Connect = Yes; c.Features.TerminatingGateways = No }},
		{"1.17.3 is fine (known-bad-1.17.2)", "known-bad-1.17.2", "1.16.6", "1.17.3", false, "", termGWs},
		{"the mesh reaching 1.18.5 normalizes paths (path-normalization-1.18.5)", "path-normalization-1.18.5", "1.18.2", "1.18.5", true, Info, connectOn},
		{"1.18.4 does not normalize yet (path-normalization-1.18.5)", "path-normalization-1.18.5", "1.18.2", "1.18.4", false, "", connectOn},
		{"crossing 1.19 with clients makes servers first mandatory (servers-before-clients-1.19)", RuleServersFirst119, "1.18.2", "1.19.2", true, Info, nil},
		{"crossing 1.19 without clients has no order to keep (servers-before-clients-1.19)", RuleServersFirst119, "1.18.2", "1.19.2", false, "", noClients},
		{"1.19 drops duplicate metrics (metrics-1.19)", "metrics-1.19", "1.18.2", "1.19.2", true, Info, nil},
		{"agents on 1.19 dropped them already (metrics-1.19)", "metrics-1.19", "1.19.0", "1.19.2", false, "", nil},
		{"the mesh reaching 1.19.3 normalizes paths (path-normalization-1.19.3)", "path-normalization-1.19.3", "1.19.2", "1.19.3", true, Info, connectOn},
		{"1.19.2 does not normalize yet (path-normalization-1.19.3)", "path-normalization-1.19.3", "1.19.0", "1.19.2", false, "", connectOn},
		{"the mesh reaching 1.20.1 normalizes paths (path-normalization-1.20.1)", "path-normalization-1.20.1", "1.20.0", "1.20.1", true, Info, connectOn},
		{"agents on 1.20.1 normalize already (path-normalization-1.20.1)", "path-normalization-1.20.1", "1.20.1", "1.20.6", false, "", connectOn},
		{"Enterprise reaching 1.21.7 swaps the license in a second phase (enterprise-license-1.21.7)", "enterprise-license-1.21.7", "1.21.5", "1.21.7", true, Info, ent},
		{"Consul CE has no license phase (enterprise-license-1.21.7)", "enterprise-license-1.21.7", "1.21.5", "1.21.7", false, "", nil},
	}
}

func TestEveryRule(t *testing.T) {
	// The catalogue carries the most severe severity a rule can have.
	most := map[RuleID]Severity{}
	for _, r := range Catalogue() {
		most[r.ID] = r.Severity
	}
	for _, tc := range allRuleCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := baseCluster(tc.from)
			var pol Policy
			if tc.mod != nil {
				tc.mod(&c, &pol)
			}
			fs := Check(c, tc.target, pol)
			var hits Findings
			for _, f := range fs {
				if f.Rule == tc.rule {
					hits = append(hits, f)
				}
			}
			if !tc.fire {
				if len(hits) > 0 {
					t.Fatalf("rule %s fired: %s", tc.rule, hits[0])
				}
				return
			}
			if len(hits) == 0 {
				t.Fatalf("rule %s did not fire; findings:\n%s", tc.rule, findingsText(fs))
			}
			for _, f := range hits {
				if tc.sev != "" && f.Severity != tc.sev {
					t.Errorf("rule %s: severity %s, want %s (%s)", tc.rule, f.Severity, tc.sev, f)
				}
				if severityRank(f.Severity) < severityRank(most[tc.rule]) {
					t.Errorf("rule %s: a %s finding, but the catalogue says the rule is at most %s", tc.rule, f.Severity, most[tc.rule])
				}
				if f.Message == "" || f.Hint == "" || f.URL == "" || f.Kind == "" {
					t.Errorf("rule %s: finding lacks message, hint, URL or kind: %+v", tc.rule, f)
				}
			}
		})
	}
}

func TestEveryRuleHasAFiringAndAQuietCase(t *testing.T) {
	fires, quiet := map[RuleID]bool{}, map[RuleID]bool{}
	for _, tc := range allRuleCases() {
		if tc.fire {
			fires[tc.rule] = true
		} else {
			quiet[tc.rule] = true
		}
		if !strings.Contains(tc.name, "("+string(tc.rule)+")") {
			t.Errorf("case %q does not cite its rule %s", tc.name, tc.rule)
		}
	}
	for _, r := range Catalogue() {
		if !fires[r.ID] {
			t.Errorf("rule %s has no case where it fires", r.ID)
		}
		if !quiet[r.ID] {
			t.Errorf("rule %s has no case where it stays quiet", r.ID)
		}
	}
}

func findingsText(fs Findings) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  [%s %s] %s\n", f.Severity, f.Hop, f)
	}
	return b.String()
}

func TestRuleWhenIsSafeOnAZeroContext(t *testing.T) {
	for _, r := range Catalogue() {
		if r.When != nil {
			r.When(RuleContext{}) // must not panic
		}
	}
	for _, b := range builtins {
		if b.severity != nil {
			b.severity(RuleContext{})
		}
		if b.message != nil {
			b.message(RuleContext{})
		}
	}
}

func TestPrimaryLast(t *testing.T) {
	repl := Features{ACLReplication: true}
	tests := []struct {
		name string
		hop  Hop
		f    Features
		want bool
	}{
		{"the 1.2.4 path with ACL replication upgrades secondaries first (datacenter-order)", Hop{From: "0.9.4", To: "1.2.4"}, repl, true},
		{"the 1.6.10 path with ACL replication upgrades secondaries first (datacenter-order)", Hop{From: "1.3.1", To: "1.6.10"}, repl, true},
		{"other hops go primary first (datacenter-order)", Hop{From: "1.12.9", To: "1.13.9"}, repl, false},
		{"without ACL replication the primary goes first (datacenter-order)", Hop{From: "1.3.1", To: "1.6.10"}, Features{}, false},
		{"1.6.9 takes the 1.8.19 path, primary first (datacenter-order)", Hop{From: "1.6.9", To: "1.8.19"}, repl, false},
		{"1.6.9 to 1.6.10 is the 1.6.10 path (datacenter-order)", Hop{From: "1.6.9", To: "1.6.10"}, repl, true},
		{"0.8.2 to 0.8.5 leads to the 1.2.4 path but is not on it (datacenter-order)", Hop{From: "0.8.2", To: "0.8.5"}, repl, false},
		{"0.8.5 to 1.2.4 is the 1.2.4 path (datacenter-order)", Hop{From: "0.8.5", To: "1.2.4+ent"}, repl, true},
		{"1.2.4 to 1.2.5 is past the 1.2.4 path (datacenter-order)", Hop{From: "1.2.4", To: "1.2.5"}, repl, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PrimaryLast(tc.hop, tc.f); got != tc.want {
				t.Fatalf("PrimaryLast(%+v) = %v, want %v", tc.hop, got, tc.want)
			}
		})
	}
}
