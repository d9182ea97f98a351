package planner

import (
	"fmt"
	"strings"

	version "github.com/hashicorp/go-version"
)

// Rule IDs that other parts of the planner (Next, Plan) refer to. They are
// stable: operators waive blocking findings by these IDs.
const (
	RuleServersFirst     RuleID = "servers-before-clients"
	RuleOneServerAtATime RuleID = "one-server-at-a-time"
	RuleFollowersFirst   RuleID = "followers-first-leader-last"
	RuleNoLeaveInPlace   RuleID = "no-leave-in-place"
	RuleMaxMajors        RuleID = "max-majors-per-hop"
	RuleTombstoneWindow  RuleID = "tombstone-window-0.5"
	RuleRaftBoltDB       RuleID = "raft-boltdb-migration-0.5.1"
	RuleACLService05     RuleID = "acl-service-write-0.5"
	RuleLeaderPanic080   RuleID = "leader-panic-0.8.0"
	RuleDatacenterOrder  RuleID = "datacenter-order"
	RuleTransferLeader   RuleID = "transfer-leader-1.15"

	// RuleLeaveOnTerminate07: servers below 0.7.0 leave on SIGTERM.
	RuleLeaveOnTerminate07 RuleID = "leave-on-terminate-0.7"
	// RuleRaftProtocol3v19: 1.9+ servers only start with raft_protocol 3.
	RuleRaftProtocol3v19 RuleID = "raft-protocol-3-1.9"
	// RuleLegacyACLs111: the legacy ACL system is gone from 1.11.0.
	RuleLegacyACLs111 RuleID = "legacy-acls-removed-1.11"
	// RuleGRPCTLS113: 1.13 serves gRPC over TLS when tls.defaults hold
	// certificates; the fix needs the 1.12 tls stanza.
	RuleGRPCTLS113 RuleID = "grpc-tls-1.13"
	// RuleGRPCTLSPort114: from 1.14 TLS gRPC moves to ports.grpc_tls.
	RuleGRPCTLSPort114 RuleID = "grpc-tls-port-1.14"
	// RuleServersFirst119: from 1.19 servers before clients is mandatory.
	RuleServersFirst119 RuleID = "servers-before-clients-1.19"
	// RuleSnapshot: a snapshot before every hop.
	RuleSnapshot RuleID = "snapshot-before-hop"
	// RuleVersionNumbering2: 2.0.0 and later use IBM numbering.
	RuleVersionNumbering2 RuleID = "version-numbering-2.0"
	// RuleDisableUpgradeMigration: Enterprise autopilot upgrade migration
	// interferes with in-place rolling upgrades.
	RuleDisableUpgradeMigration RuleID = "disable-upgrade-migration"
	// RuleEnterprise1107Clients: Enterprise clients left behind below
	// 1.10.7 while servers go to 1.11+.
	RuleEnterprise1107Clients RuleID = "enterprise-1.10.7-left-behind-clients"
	// RuleEnterprise110Clients: Enterprise clients left behind below
	// 1.8.13 (or on 1.9.0-1.9.6) while servers go to 1.10+.
	RuleEnterprise110Clients RuleID = "enterprise-1.10-left-behind-clients"
	// RuleReplaceAutopilot100: the replace strategy on servers running
	// 1.0.0, whose autopilot promotes new servers only in pairs.
	RuleReplaceAutopilot100 RuleID = "replace-autopilot-pairs-1.0.0"
	// RuleLegacyACLs16: legacy ACL tokens must be migrated before leaving
	// 1.6.x (the 1.6.x upgrade guide).
	RuleLegacyACLs16 RuleID = "legacy-acls-before-leaving-1.6"
	// RuleFeaturesUnobserved: features the observer could not read
	// (Features.Unobserved) were evaluated at their defaults.
	RuleFeaturesUnobserved RuleID = "features-not-observed"
)

// Cluster pre-check IDs: findings about the cluster as observed, before any
// version rule.
const (
	PrecheckNoServers        RuleID = "no-servers"
	PrecheckNoLeader         RuleID = "no-leader"
	PrecheckSeveralLeaders   RuleID = "several-leaders"
	PrecheckServerUnhealthy  RuleID = "server-unhealthy"
	PrecheckServerNotVoter   RuleID = "server-not-voter"
	PrecheckEvenVoters       RuleID = "even-voters"
	PrecheckFailureTolerance RuleID = "failure-tolerance-zero"
	// PrecheckNoSpareVoter: a datacenter of two or more voters whose
	// failure tolerance is 0, so stopping any voter loses its quorum.
	PrecheckNoSpareVoter RuleID = "no-spare-voter"
	// PrecheckServerMissing: a server serf lists that is not in the Raft
	// configuration (Cluster.Missing).
	PrecheckServerMissing       RuleID = "server-missing"
	PrecheckMixedVersions       RuleID = "mixed-versions"
	PrecheckDuplicateName       RuleID = "duplicate-name"
	PrecheckDowngrade           RuleID = "downgrade"
	PrecheckBadVersion          RuleID = "bad-version"
	PrecheckUnknownDatacenter   RuleID = "unknown-datacenter"
	PrecheckNoPrimary           RuleID = "no-primary-datacenter"
	PrecheckDatacenterNotSeen   RuleID = "datacenter-not-observed"
	PrecheckClientNewerThanSrvs RuleID = "client-newer-than-servers"
	PrecheckBadRule             RuleID = "bad-rule"
)

// IDs of the other built-in version rules, in catalogue order. Like the
// IDs above, they are stable: operators waive blocking findings by them.
const (
	RuleACLMixedServers04         RuleID = "acl-mixed-servers-0.4"
	RuleMemoryStateStore06        RuleID = "memory-state-store-0.6"
	RuleACLServiceRead06          RuleID = "acl-service-read-0.6"
	RuleBindAddress06             RuleID = "bind-address-0.6"
	RulePreparedQueryACL064       RuleID = "prepared-query-acl-0.6.4"
	RuleGossipProtocol07          RuleID = "gossip-protocol-0.7"
	RuleRaftMultiplier07          RuleID = "raft-multiplier-0.7"
	RulePeersJSON07               RuleID = "peers-json-0.7"
	RuleReapRemoved071            RuleID = "reap-removed-0.7.1"
	RuleKnownBad080               RuleID = "known-bad-0.8.0"
	RuleACLEnforceVersion808      RuleID = "acl-enforce-version-8-0.8"
	RuleRPCRemoved08              RuleID = "rpc-removed-0.8"
	RuleAutopilotRaftProtocol3    RuleID = "autopilot-raft-protocol-3"
	RuleScriptChecks09            RuleID = "script-checks-0.9"
	RuleKnownBad100               RuleID = "known-bad-1.0.0"
	RuleRaftProtocol310           RuleID = "raft-protocol-3-1.0"
	RuleSingleServerRaft10        RuleID = "single-server-raft-1.0"
	RuleConfigRewrite10           RuleID = "config-rewrite-1.0"
	RuleStrictChecks10            RuleID = "strict-checks-1.0"
	RuleConsulIndex107            RuleID = "consul-index-1.0.7"
	RuleConfigRemovals11          RuleID = "config-removals-1.1"
	RuleThreeServers124           RuleID = "three-servers-1.2.4"
	RuleKnownBad130               RuleID = "known-bad-1.3.0"
	RuleNewACLs14                 RuleID = "new-acls-1.4"
	RulePrimaryDatacenterKey14    RuleID = "primary-datacenter-key-1.4"
	RuleConnectCAFederation14     RuleID = "connect-ca-federation-1.4"
	RuleManagedProxiesRemoved16   RuleID = "managed-proxies-removed-1.6"
	RuleKVSnapshot16              RuleID = "kv-snapshot-1.6"
	RuleStrictJSON162             RuleID = "strict-json-1.6.2"
	RuleHTTPMaxConns163           RuleID = "http-max-conns-1.6.3"
	RuleSessionRenew170           RuleID = "session-renew-1.7.0"
	RuleAPIStrict17               RuleID = "api-strict-1.7"
	RuleACLEnforceRemoved18       RuleID = "acl-enforce-removed-1.8"
	RuleLegacyACLsPanic19         RuleID = "legacy-acls-panic-1.9"
	RuleCentralConfig19           RuleID = "central-config-1.9"
	RuleIntentionsMigration19     RuleID = "intentions-migration-1.9"
	RuleEnterpriseLicense110      RuleID = "enterprise-license-1.10"
	RuleEnvoyXDSV3110             RuleID = "envoy-xds-v3-1.10"
	RuleACLTokenRenames111        RuleID = "acl-token-renames-1.11"
	RuleBbolt111                  RuleID = "bbolt-1.11"
	RuleVaultCATune1119           RuleID = "vault-ca-tune-1.11.9"
	RuleTLSStanza112              RuleID = "tls-stanza-1.12"
	RuleKnownBad1120Nomad         RuleID = "known-bad-1.12.0-nomad"
	RuleVaultCATune1125           RuleID = "vault-ca-tune-1.12.5"
	RuleKnownBad1130              RuleID = "known-bad-1.13.0"
	RuleAutoEncryptGRPC113        RuleID = "auto-encrypt-grpc-1.13"
	RuleDisableCompat19113        RuleID = "disable-compat-19-1.13"
	RuleVaultCATune1132           RuleID = "vault-ca-tune-1.13.2"
	RuleNomadDetection1138        RuleID = "nomad-detection-1.13.8"
	RulePeeringConnectDefaults114 RuleID = "peering-connect-defaults-1.14"
	RuleExperimentalPeering114    RuleID = "experimental-peering-1.14"
	RuleKnownBad1140Envoy         RuleID = "known-bad-1.14.0-envoy"
	RuleVaultCANamespace11410     RuleID = "vault-ca-namespace-1.14.10"
	RuleKnownBad11501151Mesh      RuleID = "known-bad-1.15.0-1.15.1-mesh"
	RuleServerlessPlugin115       RuleID = "serverless-plugin-1.15"
	RuleACLMigrationRemoved115    RuleID = "acl-migration-removed-1.15"
	RuleRaftLogstore115           RuleID = "raft-logstore-1.15"
	RuleVaultCANamespace1156      RuleID = "vault-ca-namespace-1.15.6"
	RulePathNormalization11515    RuleID = "path-normalization-1.15.15"
	RuleKnownBad11601161          RuleID = "known-bad-1.16.0-1.16.1"
	RuleHealthConnect403116       RuleID = "health-connect-403-1.16"
	RuleVaultCANamespace1162      RuleID = "vault-ca-namespace-1.16.2"
	RuleKnownBad1165              RuleID = "known-bad-1.16.5"
	RuleTemplatedPolicies117      RuleID = "templated-policies-1.17"
	RuleAPIChanges117             RuleID = "api-changes-1.17"
	RuleKnownBad1172              RuleID = "known-bad-1.17.2"
	RulePathNormalization1185     RuleID = "path-normalization-1.18.5"
	RuleMetrics119                RuleID = "metrics-1.19"
	RulePathNormalization1193     RuleID = "path-normalization-1.19.3"
	RulePathNormalization1201     RuleID = "path-normalization-1.20.1"
	RuleEnterpriseLicense1217     RuleID = "enterprise-license-1.21.7"
)

// Public sources of the rules.
const (
	urlVersionSpecific = "https://github.com/hashicorp/consul/blob/07b1c3d227b3c2f094c7593b1ccf85f528ac0e6d/website/content/docs/upgrade/version-specific.mdx"
	urlUpgrade2015     = "https://github.com/hashicorp/consul/blob/056c0cb0a7c2cb07e3ce8d174bdfb344d654d783/website/source/docs/upgrade-specific.html.markdown"
	urlChangelog040    = "https://github.com/hashicorp/consul/blob/main/CHANGELOG.md#040-september-5-2014"
	urlChangelog050    = "https://github.com/hashicorp/consul/blob/main/CHANGELOG.md#050-febuary-19-2015"
	urlUpgradeIndex    = "https://github.com/hashicorp/web-unified-docs/blob/0c67911082b7ae16d493cba62591c3f51cbfe36f/content/consul/v1.22.x/content/docs/upgrade/index.mdx"
	urlGeneral         = "https://github.com/hashicorp/web-unified-docs/blob/c2a37a8a7a0058d99f2435edab30062e8af145e5/content/consul/v1.22.x/content/docs/upgrade/instructions/general.mdx"
	urlInstructions    = "https://github.com/hashicorp/consul/blob/599eeb3a469e54a3f58858f795503c7cb64c55b8/website/content/docs/upgrade/instructions/index.mdx"
	urlLTS             = "https://github.com/hashicorp/web-unified-docs/blob/0b0d980b52f91b0b01492be202909b858c129d39/content/consul/v1.22.x/content/docs/upgrade/lts.mdx"
	urlPath12          = "https://github.com/hashicorp/consul/blob/1a28cd9175dfd69dabb930256433e180b3bf4926/website/content/docs/upgrading/instructions/upgrade-to-1-2-x.mdx"
	urlPath16          = "https://github.com/hashicorp/consul/blob/07b1c3d227b3c2f094c7593b1ccf85f528ac0e6d/website/content/docs/upgrade/instructions/upgrade-to-1-6-x.mdx"
	urlPath18          = "https://github.com/hashicorp/consul/blob/07b1c3d227b3c2f094c7593b1ccf85f528ac0e6d/website/content/docs/upgrade/instructions/upgrade-to-1-8-x.mdx"
	urlPath110         = "https://github.com/hashicorp/consul/blob/3a56024ab505dc17d7be872dea915b05a0c49907/website/content/docs/upgrade/instructions/upgrade-to-1-10-x.mdx"
	urlGH2889          = "https://github.com/hashicorp/consul/issues/2889"
	urlGH8118          = "https://github.com/hashicorp/consul/issues/8118"
	urlGH9699          = "https://github.com/hashicorp/consul/issues/9699"
	urlPR17758         = "https://github.com/hashicorp/consul/pull/17758"
	urlBuilder         = "https://github.com/hashicorp/consul/blob/main/agent/config/builder.go"
	urlRelease1110     = "https://github.com/hashicorp/consul/releases/tag/v1.11.0"
	urlRelease1170     = "https://github.com/hashicorp/consul/releases/tag/v1.17.0"
	urlChangelog1150   = "https://raw.githubusercontent.com/hashicorp/consul/v1.15.0/CHANGELOG.md"
	urlFederated       = "https://github.com/hashicorp/consul/blob/1bb5b1c28013d3605eee30b43e8cc90f8729dd32/website/content/docs/upgrade/federated.mdx"
	urlTransferLeader  = "https://github.com/hashicorp/consul/blob/v1.15.0/command/operator/raft/transferleader/transfer_leader.go"
	urlCompatibility   = "https://github.com/hashicorp/consul/blob/b3e65e4e4978ea6240547e0f9a054d39b25149aa/website/content/docs/upgrade/compatibility.mdx"
	urlAutopilotAPI    = "https://github.com/hashicorp/consul/blob/00c2444cfce645c516074688ecfedf6fa99ab5aa/website/content/api-docs/operator/autopilot.mdx"
	urlAutopilotGuide  = "https://github.com/hashicorp/consul/blob/10e3835135bf496b344e303ba193c2503a224f2d/website/source/docs/guides/autopilot.html.md"
	urlSnapshotRestore = "https://github.com/hashicorp/consul/blob/077685d01ee488e9f95146eeeddcc75ebf7cc490/website/content/commands/snapshot/restore.mdx"
	urlEntUpgrades     = "https://github.com/hashicorp/consul/blob/main/website/content/docs/enterprise/upgrades.mdx"
	urlRaftWAL         = "https://github.com/hashicorp/consul/blob/769bbb78ad5e845de5847dd7b4f392c953505a4f/website/content/docs/upgrading/instructions/testing-experimental-raft-backend.mdx"
	urlVersionSpec122  = "https://github.com/hashicorp/web-unified-docs/blob/1146597bd226b37928818a10e1e833b044fc3a6a/content/consul/v1.22.x/content/docs/upgrade/version-specific.mdx"
	urlAutomated       = "https://github.com/hashicorp/web-unified-docs/blob/252471b82458a093760f6901af08869c674b60c5/content/consul/v1.22.x/content/docs/upgrade/automated.mdx"
	urlVersioning2     = "https://github.com/hashicorp/web-unified-docs/blob/4a006c1d6a2df029cd8b6d66b7a3b8276217b516/content/consul/global/partials/text/versioning/v2-schema.mdx"
)

// builtin is a catalogue rule with what only built-in rules have: a
// severity or message that depends on the context, or an evaluator of its
// own (cluster pre-checks, stepping-stone explanations).
type builtin struct {
	Rule
	// severity picks the severity for a context (nil: Rule.Severity, which
	// is then the most severe it can be).
	severity func(RuleContext) Severity
	// message replaces Summary in the finding's message (nil: Summary).
	message func(RuleContext) string
	// eval evaluates the rule itself (nil: by scope and constraints).
	eval func(*checker, *compiled)
	// stone: the rule explains the stepping stones it placed (hops whose
	// Rule is this ID) as findings.
	stone bool
	// once: only the first hop where the rule applies gets a finding.
	once bool
	// targetValue: the finding's Value is the hop's target, not the
	// running version (known-bad releases).
	targetValue bool
	// limit is the finding's Limit ("" derives it from From and To).
	limit string
}

// compiled is a rule with its constraints parsed.
type compiled struct {
	builtin
	from, to constraints
	err      error
}

// constraints is a rule's From or To parsed: one or more go-version
// constraints, any of which may match ("< 1.8.13 || >= 1.9.0, < 1.9.7").
// An empty one matches nothing; callers test len first ("" matches every
// version).
type constraints []constraintGroup

// constraintGroup is one go-version constraint list (all must match), with
// a form that compares release versions without allocating: Check runs for
// every rule on every hop, and go-version's own comparison formats both
// versions as strings each time.
type constraintGroup struct {
	c     version.Constraints
	parts []constraintPart // nil when some part needs go-version itself
}

// constraintPart is one comparison of a release version: op is one of
// "=", "!=", "<", "<=", ">", ">=".
type constraintPart struct {
	op  string
	seg [3]int64
}

// parseConstraints parses s: go-version constraints, several joined by
// "||".
func parseConstraints(s string) (constraints, error) {
	groups := strings.Split(s, "||")
	out := make(constraints, 0, len(groups))
	for _, g := range groups {
		c, err := version.NewConstraint(strings.TrimSpace(g))
		if err != nil {
			return nil, err
		}
		out = append(out, constraintGroup{c: c, parts: fastParts(c)})
	}
	return out, nil
}

// fastParts returns the comparisons of c, or nil when one of them is not
// a plain comparison with a release version (~>, a pre-release).
func fastParts(c version.Constraints) []constraintPart {
	parts := make([]constraintPart, 0, len(c))
	for _, one := range c {
		s := strings.TrimSpace(one.String())
		var op string
		for _, o := range []string{"<=", ">=", "!=", "~>", "<", ">", "="} {
			if strings.HasPrefix(s, o) {
				op, s = o, strings.TrimSpace(s[len(o):])
				break
			}
		}
		if op == "" {
			op = "="
		}
		seg, ok := releaseSegments(mustVersion(s))
		if op == "~>" || !ok {
			return nil
		}
		parts = append(parts, constraintPart{op: op, seg: seg})
	}
	return parts
}

// Check reports whether v satisfies any of the constraints.
func (cs constraints) Check(v *version.Version) bool {
	seg, release := releaseSegments(v)
	for _, g := range cs {
		if g.parts == nil || !release {
			if g.c.Check(v) {
				return true
			}
			continue
		}
		if g.match(seg) {
			return true
		}
	}
	return false
}

// match reports whether a release version with segments seg satisfies
// every part of g (go-version's comparison: segments in order, metadata
// ignored).
func (g constraintGroup) match(seg [3]int64) bool {
	for _, p := range g.parts {
		c := 0
		for i := range seg {
			if seg[i] != p.seg[i] {
				if seg[i] < p.seg[i] {
					c = -1
				} else {
					c = 1
				}
				break
			}
		}
		var ok bool
		switch p.op {
		case "=":
			ok = c == 0
		case "!=":
			ok = c != 0
		case "<":
			ok = c < 0
		case "<=":
			ok = c <= 0
		case ">":
			ok = c > 0
		case ">=":
			ok = c >= 0
		}
		if !ok {
			return false
		}
	}
	return true
}

type option func(*builtin)

func when(f func(RuleContext) bool) option      { return func(b *builtin) { b.When = f } }
func sevBy(f func(RuleContext) Severity) option { return func(b *builtin) { b.severity = f } }
func msgBy(f func(RuleContext) string) option   { return func(b *builtin) { b.message = f } }
func evalBy(f func(*checker, *compiled)) option { return func(b *builtin) { b.eval = f } }
func limit(s string) option                     { return func(b *builtin) { b.limit = s } }
func scope(s Scope) option                      { return func(b *builtin) { b.Scope = s } }

var (
	asStone     option = func(b *builtin) { b.stone = true }
	once        option = func(b *builtin) { b.once = true }
	targetValue option = func(b *builtin) { b.targetValue = true }
)

// def builds a cluster-scoped rule; options adjust it.
func def(id RuleID, kind Kind, sev Severity, from, to, url, summary, hint string, opts ...option) builtin {
	b := builtin{Rule: Rule{ID: id, Kind: kind, Severity: sev, Scope: ScopeCluster, From: from, To: to, Summary: summary, Hint: hint, URL: url}}
	for _, o := range opts {
		o(&b)
	}
	return b
}

// knownBad builds a rule for a release that should not be a target.
func knownBad(id RuleID, to, url, summary, hint string, opts ...option) builtin {
	return def(id, KindPrecheck, Blocking, "", to, url, summary, hint, append([]option{targetValue, limit("target not " + to)}, opts...)...)
}

// knownBadWith builds a rule for a release that is bad only for clusters
// that use a feature: blocking when use says Yes, quiet when No, and a
// warning naming the feature and the Features field that settles it when
// Unknown.
func knownBadWith(id RuleID, to, url, summary, hint, feature, field string, use func(RuleContext) Usage, opts ...option) builtin {
	base := []option{
		when(func(rc RuleContext) bool { return use(rc) != No }),
		sevBy(func(rc RuleContext) Severity {
			if use(rc) == Yes {
				return Blocking
			}
			return Warning
		}),
		msgBy(func(rc RuleContext) string {
			if use(rc) == Yes {
				return summary
			}
			return unknownUse(summary, feature, "set "+field+` to "yes" or "no"`)
		}),
	}
	return knownBad(id, to, url, summary, hint, append(base, opts...)...)
}

// unknownUse is the message of a feature-bound rule whose feature's use is
// not known; settle says how to make it known.
func unknownUse(summary, feature, settle string) string {
	return fmt.Sprintf("%s; blocking if you use %s; not observed here (%s)", summary, feature, settle)
}

// Context helpers; every one is safe on a zero RuleContext.

func feat(rc RuleContext) Features {
	if rc.Cluster == nil {
		return Features{}
	}
	return rc.Cluster.Features
}

func policy(rc RuleContext) Policy {
	if rc.Policy == nil {
		return Policy{}
	}
	return *rc.Policy
}

func aclsOn(rc RuleContext) bool { return feat(rc).ACLs }
func aclDeny(rc RuleContext) bool {
	f := feat(rc)
	return f.ACLs && strings.EqualFold(f.ACLDefaultPolicy, "deny")
}

// connect: the service mesh is known to be in use.
func connect(rc RuleContext) bool { return meshUse(rc) == Yes }

// envoy: Envoy proxies are known to run.
func envoy(rc RuleContext) bool { return envoyUse(rc) == Yes }

// meshUse is Features.Connect, or Yes when a mesh feature is known to be
// used although Connect was left unknown.
func meshUse(rc RuleContext) Usage {
	f := feat(rc)
	if f.Connect == Unknown && (f.Envoy == Yes || f.AgentlessMesh == Yes || f.TerminatingGateways == Yes) {
		return Yes
	}
	return f.Connect
}

// meshPart is the use of a feature that only exists inside the mesh: No
// when the mesh is known to be off, Yes/No when declared, else Unknown.
func meshPart(rc RuleContext, u Usage) Usage {
	if u == Unknown && feat(rc).Connect == No {
		return No
	}
	return u
}

func envoyUse(rc RuleContext) Usage     { return meshPart(rc, feat(rc).Envoy) }
func agentlessUse(rc RuleContext) Usage { return meshPart(rc, feat(rc).AgentlessMesh) }
func termGWUse(rc RuleContext) Usage    { return meshPart(rc, feat(rc).TerminatingGateways) }

// oldClientsBelow reports whether a listed client runs a version below v.
func oldClientsBelow(rc RuleContext, v string) bool {
	if rc.Cluster == nil {
		return false
	}
	for _, c := range rc.Cluster.Clients {
		if cv, err := parseVersion(c.Version); err == nil && !versionAtLeast(coreOf(cv).String(), v) {
			return true
		}
	}
	return false
}

// usageFeature reports whether a Features field is a Usage (yes/no/unknown):
// the rules that read those warn by themselves while the use is unknown.
func usageFeature(name string) bool {
	switch name {
	case "Connect", "Envoy", "AgentlessMesh", "TerminatingGateways":
		return true
	}
	return false
}

// envoyTLS: Envoy is known to run and the agents serve HTTPS, so
// consul connect envoy may reach them over TLS.
func envoyTLS(rc RuleContext) bool { return envoyUse(rc) == Yes && feat(rc).TLS.HTTPSPort }

func enterprise(rc RuleContext) bool {
	return policy(rc).Enterprise
}
func inPlace(rc RuleContext) bool { return policy(rc).Strategy != Replace }
func hasClients(rc RuleContext) bool {
	return rc.Cluster != nil && len(rc.Cluster.Clients) > 0
}
func serverCount(rc RuleContext) int {
	if rc.Cluster == nil {
		return 0
	}
	return len(rc.Cluster.Servers)
}

// smallestDatacenter returns the fewest servers any datacenter has (0 when
// there are no servers).
func smallestDatacenter(rc RuleContext) int {
	if rc.Cluster == nil || len(rc.Cluster.Servers) == 0 {
		return 0
	}
	def := defaultDatacenter(rc.Cluster)
	counts := map[string]int{}
	for _, s := range rc.Cluster.Servers {
		dc := s.Datacenter
		if dc == "" {
			dc = def
		}
		counts[dc]++
	}
	least := -1
	for _, n := range counts {
		if least < 0 || n < least {
			least = n
		}
	}
	return least
}

// liveWindow describes the observed servers of one datacenter where a
// server on or above a new version already leads while others still run
// below it: the datacenter, the leader, its version and the servers below.
type liveWindow struct {
	dc, leader, version string
	below               []string
}

// observedNewLeader finds, in the observed cluster, a datacenter whose
// leader runs at or above v while some of its servers run below v: from then
// on the leader replicates what the old servers cannot apply, whatever order
// the policy chose (the 0.5 tombstone reap, the 0.8.0 autopilot entry).
func observedNewLeader(rc RuleContext, v string) (liveWindow, bool) {
	if rc.Cluster == nil {
		return liveWindow{}, false
	}
	def := defaultDatacenter(rc.Cluster)
	dcOf := func(s *Server) string {
		if s.Datacenter == "" {
			return def
		}
		return s.Datacenter
	}
	for i := range rc.Cluster.Servers {
		l := &rc.Cluster.Servers[i]
		if !l.Leader || !versionAtLeast(l.Version, v) {
			continue
		}
		w := liveWindow{dc: dcOf(l), leader: l.Name, version: l.Version}
		for j := range rc.Cluster.Servers {
			s := &rc.Cluster.Servers[j]
			if dcOf(s) == w.dc && !versionAtLeast(s.Version, v) {
				if _, err := parseVersion(s.Version); err == nil {
					w.below = append(w.below, s.Name)
				}
			}
		}
		if len(w.below) > 0 {
			return w, true
		}
	}
	return liveWindow{}, false
}

// leader080 reports whether an observed 0.8.0 server leads servers older
// than 0.8.0 (0.8.1 fixed the entry they panic on).
func leader080(rc RuleContext) bool {
	w, ok := observedNewLeader(rc, "0.8.0")
	return ok && versionIs(w.version, "0.8.0")
}

// leaderAtLeast reports whether an observed leader runs v or later.
func leaderAtLeast(rc RuleContext, v string) bool {
	if rc.Cluster == nil {
		return false
	}
	for _, s := range rc.Cluster.Servers {
		if s.Leader && versionAtLeast(s.Version, v) {
			return true
		}
	}
	return false
}

// versionIs reports whether s's core is v; false when s does not parse.
func versionIs(s, v string) bool {
	sv, err := parseVersion(s)
	m := mustVersion(v)
	return err == nil && m != nil && coreOf(sv).Equal(m)
}

// catalogue is the built-in rule set, in the order Catalogue returns it.
func catalogue() []builtin {
	return []builtin{
		// Cluster pre-checks: the cluster as observed.
		def(PrecheckNoServers, KindPrecheck, Blocking, "", "", urlGeneral,
			"the cluster (or a datacenter with clients) has no server agents",
			"add the server agents to the snapshot; a datacenter needs servers before its clients can be upgraded",
			evalBy((*checker).checkNoServers)),
		def(PrecheckNoLeader, KindPrecheck, Blocking, "", "", urlGeneral,
			"a datacenter has no known Raft leader",
			"restore a leader before upgrading (consul operator raft list-peers must show one); never start an upgrade on a cluster without quorum; in a hand-built cluster description, mark the leader (Server.Leader, JSON \"leader\": true) or set Cluster.LeaderUnknown",
			evalBy((*checker).checkLeaders)),
		def(PrecheckSeveralLeaders, KindPrecheck, Blocking, "", "", urlGeneral,
			"a datacenter reports more than one Raft leader",
			"re-read the cluster until exactly one leader is reported per datacenter; the snapshot is inconsistent or the cluster is split",
			evalBy((*checker).checkLeaders)),
		def(PrecheckServerUnhealthy, KindPrecheck, Blocking, "", "", urlAutopilotAPI,
			"a server is not healthy before the upgrade starts",
			"on a live cluster, fix the server until /v1/operator/autopilot/health reports it healthy (swapping another server now could lose quorum); in a hand-built cluster description, the server was given no health: set Server.Healthy (JSON \"healthy\": true, the default when absent) or build it with planner.NewServer",
			scope(ScopeServers), evalBy((*checker).checkServerHealth)),
		def(PrecheckServerNotVoter, KindPrecheck, Blocking, "", "", urlGH8118,
			"a server is not a Raft voter",
			"on a live cluster, wait until autopilot promotes it (ServerStabilizationTime) or find out why it stays a non-voter (restarting servers while one is not a voter can lose quorum); in a hand-built cluster description, set Server.Voter (JSON \"voter\": true, the default when absent) or build it with planner.NewServer",
			scope(ScopeServers), evalBy((*checker).checkServerHealth)),
		def(PrecheckEvenVoters, KindPrecheck, Warning, "", "", urlAutopilotAPI,
			"a datacenter has an even number of voters: the last voter adds no fault tolerance",
			"run an odd number of servers (3 or 5); the upgrade can go on",
			evalBy((*checker).checkVoters)),
		def(PrecheckFailureTolerance, KindPrecheck, Warning, "", "", urlAutopilotAPI,
			"a datacenter has a single server: its swap is a planned outage, with no leader until the server is back",
			"add servers to reach 3 before upgrading, or accept that the datacenter has no leader and writes fail while its server restarts",
			evalBy((*checker).checkVoters)),
		def(PrecheckNoSpareVoter, KindPrecheck, Blocking, "", "", urlAutopilotAPI,
			"a datacenter of two or more voters has failure tolerance 0: stopping any voter leaves the voters that are up without a quorum",
			"restore a server first: start or replace the missing or unhealthy server and wait until it is a healthy voter again (consul operator raft list-peers; consul operator autopilot state), or add servers until the datacenter tolerates a failure (3 voters); then plan again. Waive no-spare-voter only to accept that the datacenter has no leader while each of its servers restarts",
			evalBy((*checker).checkVoters)),
		def(PrecheckServerMissing, KindPrecheck, Warning, "", "", urlAutopilotAPI,
			"a server that serf lists (failed, or left and not yet reaped) is not in the Raft configuration: the datacenter has one voter fewer than it had",
			"if the server was not retired on purpose, start or replace it and wait until it is a voter again (consul operator raft list-peers) before upgrading; once it is gone for good, consul force-leave -prune NODE forgets it",
			evalBy((*checker).checkMissing)),
		def(PrecheckMixedVersions, KindPrecheck, Warning, "", "", urlGeneral,
			"servers already run different versions: a previous run probably stopped midway",
			"nothing to do: the plan continues from the observed versions; make sure no other upgrade is running",
			evalBy((*checker).checkMixed)),
		def(PrecheckDuplicateName, KindPrecheck, Blocking, "", "", urlCompatibility,
			"two agents share a node name",
			"give every agent a unique node_name; the plan addresses agents by name",
			evalBy((*checker).checkDuplicates)),
		def(PrecheckDowngrade, KindPrecheck, Blocking, "", "", urlSnapshotRestore,
			"the target is older than a running agent",
			"choose a target >= the newest running version; to roll back, reinstall the old version everywhere and restore a snapshot taken on it",
			evalBy((*checker).checkDowngrade)),
		def(PrecheckBadVersion, KindPrecheck, Blocking, "", "", urlInstructions,
			"a version is not a Consul version (want X.Y.Z)",
			"write the version as X.Y.Z, optionally -pre or +build (e.g. 1.12.9, 1.13.0-rc1, 1.12.9+ent; not v1.12.9 or 1.12.09): the finding names the fix",
			evalBy((*checker).checkBadVersions)),
		def(PrecheckUnknownRelease, KindPrecheck, Blocking, "", "", urlReleases,
			"the target is not a Consul release (a version never released, a pre-release, or one newer than the release catalogue)",
			"target a release (planner.Releases lists them; the finding names the nearest); for an in-house build, list it in Policy.Releases; for a release newer than the catalogue, list it in Policy.Releases or waive "+PrecheckUnknownRelease,
			evalBy((*checker).checkRelease)),
		def(PrecheckUnknownDatacenter, KindPrecheck, Blocking, "", "", urlFederated,
			"an agent names a datacenter that the cluster does not list",
			"add the datacenter to Cluster.Datacenters or fix the agent's datacenter",
			evalBy((*checker).checkDatacenters)),
		def(PrecheckNoPrimary, KindPrecheck, Blocking, "", "", urlFederated,
			"several datacenters and not exactly one is marked primary",
			"mark exactly one datacenter primary (the primary_datacenter / acl_datacenter of the servers)",
			evalBy((*checker).checkDatacenters)),
		def(PrecheckDatacenterNotSeen, KindPrecheck, Warning, "", "", urlFederated,
			"a listed datacenter has no servers in the snapshot, so the plan does not upgrade it",
			"plan that datacenter from a snapshot of its own agents (upgrade.Discover through one of them); keep the datacenter order of each hop (planner.DatacenterOrder, recorded in the plan's Hop.Datacenters: primary first, or last on the 1.2.4 and 1.6.10 path hops with ACL replication)",
			evalBy((*checker).checkDatacenters)),
		def(PrecheckClientNewerThanSrvs, KindPrecheck, Warning, "", "", urlCompatibility,
			"clients run a newer version than the servers of their datacenter",
			"upgrade servers before clients; the plan brings the servers up first",
			evalBy((*checker).checkClientSkew)),
		def(PrecheckBadRule, KindPrecheck, Blocking, "", "", urlInstructions,
			"a rule in Policy.Rules has a constraint that does not parse",
			"fix the rule's From/To (go-version syntax, e.g. \">= 1.10.0, < 1.11.0\")",
			evalBy((*checker).checkUserRules)),
		def(RuleFeaturesUnobserved, KindPrecheck, Warning, "", "", urlVersionSpecific,
			"features that version rules read could not be observed, so those rules saw their defaults",
			"declare them: on the command line with -feature NAME=VALUE, once per feature named above (e.g. -feature Connect=no -feature Envoy=no), given to plan and apply alike; in Go with upgrade.Config.Features, which wins over observation (Cluster.Features for a hand-built cluster); or run with a token that can read them",
			once, when(func(rc RuleContext) bool { return len(feat(rc).Unobserved) > 0 }),
			sevBy(func(rc RuleContext) Severity {
				for _, g := range feat(rc).Unobserved {
					if !usageFeature(g.Feature) {
						return Warning
					}
				}
				return Info
			}),
			msgBy(func(rc RuleContext) string {
				parts := make([]string, 0, len(feat(rc).Unobserved))
				for _, g := range feat(rc).Unobserved {
					parts = append(parts, g.Feature+" ("+g.Reason+")")
				}
				return "not observed: " + strings.Join(parts, "; ")
			})),
		def(RuleVersionNumbering2, KindPrecheck, Blocking, "", ">= 2.0.0", urlVersioning2,
			"from 2.0.0 Consul uses IBM version-modification-fix numbering: the planner has no rules for it yet",
			"plan to the newest 1.x release; 2.x support needs new path rules",
			evalBy((*checker).checkUnsupported)),

		// General ordering: how every hop is run.
		def(RuleServersFirst, KindOrdering, Info, "", "", urlUpgradeIndex,
			"servers of a datacenter are upgraded before its clients",
			"nothing to do: the plan swaps each datacenter's servers first, then its clients (in waves, unless the policy leaves them behind)",
			once, when(hasClients), msgBy(func(rc RuleContext) string {
				if policy(rc).Clients.Mode == ClientLeaveBehind {
					return "clients are left on their versions (leave-behind); servers move on without them"
				}
				return "servers of a datacenter are upgraded before its clients, which follow in waves"
			})),
		def(RuleOneServerAtATime, KindOrdering, Info, "", "", urlUpgradeIndex,
			"one server at a time: each swap waits until the server is back, a healthy voter, before the next",
			"nothing to do: every server step is gated on leader, voter, health and stability",
			once, when(func(rc RuleContext) bool { return serverCount(rc) > 1 && inPlace(rc) })),
		def(RuleFollowersFirst, KindOrdering, Warning, "", "", urlGeneral,
			"followers first, leader last",
			"keep the default server order (followers-first); swapping the leader early causes extra elections and, on some hops, panics of old servers",
			once, when(func(rc RuleContext) bool { return serverCount(rc) > 1 && inPlace(rc) }),
			sevBy(func(rc RuleContext) Severity {
				if policy(rc).ServerOrder == AsListed {
					return Warning
				}
				return Info
			}),
			msgBy(func(rc RuleContext) string {
				if policy(rc).ServerOrder == AsListed {
					return "servers are swapped as listed: the leader may go before its followers"
				}
				return "followers are swapped first and the leader last"
			})),
		def(RuleNoLeaveInPlace, KindOrdering, Blocking, "", "", urlPR17758,
			"stop mode 'leave' for an in-place server swap: a leaving server inflates its Raft term and forces leader changes",
			"use the default stop mode (kill, or terminate on servers >= 0.7), which restarts the server without leaving",
			once, when(func(rc RuleContext) bool {
				return policy(rc).StopMode == StopLeave && inPlace(rc) && serverCount(rc) > 0
			}),
			limit("stop mode kill or terminate")),
		def(RuleLeaveOnTerminate07, KindOrdering, Warning, "< 0.7.0", "", urlVersionSpecific,
			"stop mode 'terminate' on a server below 0.7.0: whether SIGTERM makes it leave depends on its leave_on_terminate setting (only from 0.7.0 do servers default to staying)",
			"use stop mode kill (the default below 0.7.0: SIGKILL never leaves), or confirm leave_on_terminate is false on every server",
			scope(ScopeServers), when(func(rc RuleContext) bool { return policy(rc).StopMode == StopTerminate && inPlace(rc) }),
			limit("servers < 0.7.0 stop with kill")),
		def(RuleSnapshot, KindPrecheck, Warning, "", "", urlGeneral,
			"the hop runs without a snapshot (NoSnapshot): a failed hop cannot be rolled back",
			"drop NoSnapshot: a verified backup before each hop is the only rollback (a snapshot restores only on the version that took it; below 0.7.1 the backup is a logical export of KV and ACL tokens, since those versions have no snapshot API)",
			when(func(rc RuleContext) bool { return policy(rc).NoSnapshot }),
			msgBy(func(rc RuleContext) string {
				if rc.Hop.From != "" && !versionAtLeast(rc.Hop.From, "0.7.1") {
					return "the hop runs without a backup (NoSnapshot): servers below 0.7.1 have no snapshot API, and the logical backup of KV and ACL tokens that replaces it is skipped too"
				}
				return "the hop runs without a snapshot (NoSnapshot): a failed hop cannot be rolled back"
			})),
		def(RuleDisableUpgradeMigration, KindConfig, Warning, ">= 0.8.0", "", urlGeneral,
			"Enterprise autopilot upgrade migration can elect an upgraded leader early or stall in-place upgrades",
			"run consul operator autopilot set-config -disable-upgrade-migration=true before the upgrade: in place, autopilot may otherwise elect an upgraded server before the old leader's turn; with the replace strategy, it keeps each new server a non-voter until as many new servers as voters exist, so the plan's one-at-a-time additions never pass their voter gate (GH-9699)",
			once, when(enterprise),
			msgBy(func(rc RuleContext) string {
				if !inPlace(rc) {
					return "replace strategy on Enterprise: with upgrade migration on, autopilot keeps new-version servers non-voters until their count matches the voters, so adding and retiring servers one at a time stalls (" + urlGH9699 + ")"
				}
				return "Enterprise autopilot upgrade migration can elect an upgraded leader early or stall in-place upgrades"
			})),
		def(RuleDatacenterOrder, KindOrdering, Info, "", "", urlFederated,
			"several datacenters: the primary goes first, then each secondary",
			"nothing to do: the plan orders datacenters per hop",
			when(func(rc RuleContext) bool { return rc.Cluster != nil && len(rc.Cluster.Datacenters) > 1 }),
			msgBy(func(rc RuleContext) string {
				if PrimaryLast(rc.Hop, feat(rc)) {
					return "ACL replication on a dedicated path hop: secondary datacenters first, the primary last (primary first breaks replication)"
				}
				return "several datacenters: the primary first, then each secondary (servers, then clients)"
			})),
		def(RuleTransferLeader, KindOrdering, Info, "", "", urlTransferLeader,
			"leadership transfer moves the leader to an upgraded server before the old leader is swapped",
			"nothing to do: the runner uses POST /v1/operator/raft/transfer-leader?id=<raft id> (the 1.15/1.16 CLI ignores -id) and waits until the named server leads; set no_transfer_leadership to swap the leader last instead",
			when(func(rc RuleContext) bool {
				// Next transfers when the leader (not the lowest server)
				// runs 1.15+, so an observed 1.15+ leader counts too.
				return serverCount(rc) > 1 && versionAtLeast(rc.Hop.To, "1.15.0") &&
					(versionAtLeast(rc.Hop.From, "1.15.0") || leaderAtLeast(rc, "1.15.0"))
			}),
			msgBy(func(rc RuleContext) string {
				if policy(rc).NoTransferLeadership {
					return "leadership transfer is turned off (no_transfer_leadership): the leader is swapped last and the cluster waits out an election (a few seconds without a leader)"
				}
				return "leadership moves to an upgraded voter before the old leader is swapped or retired (no election timeout)"
			})),

		// Stepping stones placed by Path, explained.
		def(RuleMaxMajors, KindSteppingStone, Info, "", "", urlInstructions,
			"at most two majors per hop (three between Enterprise LTS lines 1.15, 1.18, 1.21)",
			"nothing to do: the path stops at the newest patch two majors ahead; read the notes of every major in between",
			asStone),
		def(RuleRaftProtocol07, KindSteppingStone, Info, "", "", urlVersionSpecific,
			"only adjacent Raft protocols interoperate: servers <= 0.6 pass through 0.7.x before 0.8+",
			"nothing to do: the path stops at 0.7.5; run 0.8 servers with raft_protocol=1 while older servers remain",
			asStone),
		def(RuleDedicated124, KindSteppingStone, Info, "", "", urlPath12,
			"dedicated path: 0.8.5-1.2.3 go straight to 1.2.4 (0.8.0-0.8.4 via 0.8.5)",
			"check /v1/acl/replication in every datacenter, upgrade one datacenter at a time, then rename pre-1.0 config keys and run consul validate",
			asStone),
		def(RuleDedicated1610, KindSteppingStone, Info, "", "", urlPath16,
			"dedicated path: 1.2.4-1.6.9 go straight to 1.6.10",
			"upgrade secondary datacenters first and the ACL primary last; migrate legacy ACL tokens on 1.6.x before going further",
			asStone),
		def(RuleDedicated1819, KindSteppingStone, Info, "", "", urlPath18,
			"dedicated path: 1.6.9-1.8.18 go straight to 1.8.19",
			"check ACL replication before and after the hop; no config changes are needed",
			asStone),
		def(RuleDedicated11012, KindSteppingStone, Info, "", "", urlPath110,
			"dedicated path: 1.8.0-1.9.17 go to 1.10.12",
			"snapshot before and after; on Enterprise put the license in the config (license_path) before starting 1.10",
			asStone),
		def(RuleEnterprise110, KindSteppingStone, Info, "", "", urlVersionSpecific,
			"Consul Enterprise reaches 1.10 only from 1.8.13+ or 1.9.7+ (licensing)",
			"nothing to do: the path goes to the newest 1.8.x/1.9.x first",
			asStone),
		def(RuleEnterprise1107, KindSteppingStone, Info, "", "", urlVersionSpecific,
			"Consul Enterprise 1.10.0-1.10.6 agents deregister their own services once servers run 1.11+",
			"nothing to do: the path brings servers and clients to 1.10.12 before 1.11",
			asStone),
		def(RuleEnterprise1107Clients, KindOrdering, Blocking, "< 1.10.7", ">= 1.11.0", urlVersionSpecific,
			"Consul Enterprise clients left behind below 1.10.7 while servers go to 1.11+: the 1.11 notes ask every client and server on 1.10.7 or later before any server runs 1.11 (1.10.0-1.10.6 deregister their own services and checks; older agents are not forward compatible either)",
			"bring these clients to 1.10.7 or later (1.10.12) before any server goes to 1.11: plan with client waves, or run a plan to 1.10.12 first and leave them behind only after it",
			scope(ScopeClients), when(enterprise), limit("clients on 1.10.7+ before servers run 1.11")),
		def(RuleEnterprise110Clients, KindOrdering, Warning, "< 1.8.13 || >= 1.9.0, < 1.9.7", ">= 1.10.0", urlPath110,
			"Consul Enterprise clients left behind below 1.8.13 (or on 1.9.0-1.9.6) while servers go to 1.10+: Enterprise 1.10 is reached only from 1.8.13+ or 1.9.7+, every agent through the newest 1.8.x/1.9.x first, and older agents are not forward compatible with 1.10's licensing (agents may fail to start)",
			"bring these clients to the newest 1.8.x or 1.9.x (1.8.19, 1.9.17) before any server goes to 1.10: plan with client waves, or run a plan to 1.9.17 first and leave them behind only after it",
			scope(ScopeClients), when(enterprise), limit("clients on 1.8.13+ or 1.9.7+ before servers run 1.10")),

		// 0.4 and 0.5.
		def(RuleACLMixedServers04, KindACL, Warning, "< 0.4.0", ">= 0.4.0", urlChangelog040,
			"ACLs enabled while servers cross 0.4.0: mixed-version servers with ACLs can panic",
			"enable ACLs only after every server runs 0.4 or later",
			when(aclsOn)),
		def(RuleACLService05, KindACL, Blocking, "< 0.5.0", ">= 0.5.0", urlUpgrade2015,
			"from 0.5 ACLs also cover service registration",
			"while still on 0.4, add service \"\" { policy = \"write\" } (or per-service rules) to the tokens the agents use; it takes effect once 0.5 runs",
			when(aclsOn),
			sevBy(func(rc RuleContext) Severity {
				if aclDeny(rc) {
					return Blocking
				}
				return Info
			}),
			msgBy(func(rc RuleContext) string {
				if aclDeny(rc) {
					return "ACLs with default deny: from 0.5 every service registration without service write is refused"
				}
				return "ACLs with default allow: 0.5 enforces service rules, nothing is refused by default"
			}),
			limit("service write granted before 0.5")),
		def(RuleTombstoneWindow, KindWindow, Warning, "< 0.5.0", ">= 0.5.0", urlChangelog050,
			"0.5 servers replicate a tombstone-reap Raft command that older servers panic on",
			"keep followers-first while the leader is still old (no deadline), or finish every server swap within 15 minutes (the default tombstone TTL); once a 0.5 server leads, swap the remaining old servers at once; an old server that panics is upgraded and restarted without data loss",
			when(func(rc RuleContext) bool { return serverCount(rc) > 0 }),
			sevBy(func(rc RuleContext) Severity {
				if _, live := observedNewLeader(rc, "0.5.0"); live || (policy(rc).ServerOrder == AsListed && inPlace(rc)) {
					return Warning
				}
				return Info
			}),
			msgBy(func(rc RuleContext) string {
				if w, live := observedNewLeader(rc, "0.5.0"); live {
					return fmt.Sprintf("leader %s of %s already runs %s while %s still run(s) below 0.5: the 15-minute window is running whatever the server order, and the old servers panic once the leader reaps tombstones; finish their swaps within it",
						w.leader, w.dc, w.version, strings.Join(w.below, ", "))
				}
				if policy(rc).ServerOrder == AsListed && inPlace(rc) {
					return "servers swapped as listed across 0.5.0: all server swaps must finish within 15 minutes, before old servers panic on tombstone reaping"
				}
				return "followers first, leader last across 0.5.0: old followers never receive the reap command while the leader is still old, so no deadline applies"
			}),
			limit("900s over all server swaps unless followers-first with an old leader")),
		def(RuleRaftBoltDB, KindRaft, Info, "< 0.5.1", ">= 0.5.1", urlUpgrade2015,
			"the Raft log store moves from LMDB to BoltDB on first start of 0.5.1/0.5.2",
			"boot each server once on 0.5.1/0.5.2 and look for \"Successfully migrated raft data\" in its log before going further (0.6 refuses the old layout)",
			scope(ScopeServers)),
		// 0.6.
		def(RuleMemoryStateStore06, KindPrecheck, Info, "< 0.6.0", ">= 0.6.0", urlVersionSpecific,
			"0.6 keeps the state store in memory: servers need about twice the data set in RAM",
			"check server memory against 2x the state size before the hop",
			scope(ScopeServers)),
		def(RuleACLServiceRead06, KindACL, Blocking, "< 0.6.0", ">= 0.6.0", urlVersionSpecific,
			"ACLs with default deny: from 0.6 service discovery (HTTP and DNS) needs service read",
			"before the hop add service \"\" { policy = \"read\" } to the tokens used for discovery and to the agents' acl_token (DNS); add event and keyring rules only after the hop",
			when(aclDeny)),
		def(RuleBindAddress06, KindConfig, Info, "< 0.6.0", ">= 0.6.0", urlVersionSpecific,
			"0.6 refuses to start on hosts with several private IPs unless bind_addr/advertise_addr is set",
			"set bind_addr (and advertise_addr) on such hosts before the hop"),
		def(RulePreparedQueryACL064, KindACL, Info, "< 0.6.4", ">= 0.6.4", urlVersionSpecific,
			"prepared-query ACLs change: named queries are governed by the new query policy",
			"add query rules after the hop",
			when(aclsOn)),
		// 0.7.
		def(RuleGossipProtocol07, KindSteppingStone, Blocking, "< 0.4.0", ">= 0.7.0", urlCompatibility,
			"agents below 0.4 speak only gossip protocol 1, which 0.7+ dropped",
			"upgrade these agents to 0.4-0.6 before any 0.7+ node joins (do not leave them behind)",
			scope(ScopeClients)),
		def(RuleRaftMultiplier07, KindConfig, Info, "< 0.7.0", ">= 0.7.0", urlVersionSpecific,
			"0.7 defaults to slower Raft timing (performance.raft_multiplier)",
			"set performance { raft_multiplier = 1 } on servers to keep the old timing"),
		def(RulePeersJSON07, KindRaft, Info, "< 0.7.0", ">= 0.7.0", urlVersionSpecific,
			"peers.json is removed on first start of 0.7 (raft/peers.info replaces it)",
			"update outage-recovery runbooks; do not rely on peers.json during the hop"),
		def(RuleReapRemoved071, KindConfig, Info, "< 0.7.1", ">= 0.7.1", urlVersionSpecific,
			"the reap option is gone and dns max_stale defaults to about 10 years",
			"remove reap from configs (use a PID-1 wrapper in containers) and review dns_config.max_stale"),
		// 0.8 and 0.9.
		knownBad(RuleKnownBad080, "= 0.8.0", urlGH2889,
			"0.8.0 is a known-bad target: its leader writes a Raft entry older servers panic on",
			"target 0.8.1 or later (0.8.5 is the newest 0.8.x)"),
		def(RuleLeaderPanic080, KindOrdering, Blocking, "< 0.8.0", ">= 0.8.0", urlGH2889,
			"a 0.8.0 leader writes an autopilot Raft entry that older servers panic on",
			"swap followers first and the leader last, and prefer 0.8.1+ as the target; once a 0.8.0 server leads older ones, swap the older servers at once",
			once, when(func(rc RuleContext) bool {
				return versionIs(rc.Hop.To, "0.8.0") || leader080(rc)
			}),
			sevBy(func(rc RuleContext) Severity {
				if policy(rc).ServerOrder == AsListed && versionIs(rc.Hop.To, "0.8.0") {
					return Blocking
				}
				return Warning
			}),
			msgBy(func(rc RuleContext) string {
				if w, ok := observedNewLeader(rc, "0.8.0"); ok && leader080(rc) {
					return fmt.Sprintf("leader %s of %s already runs %s while %s run(s) older versions: it writes an autopilot Raft entry they panic on (GH-2889), whatever the server order",
						w.leader, w.dc, w.version, strings.Join(w.below, ", "))
				}
				return "a 0.8.0 leader writes an autopilot Raft entry that older servers panic on"
			})),
		def(RuleACLEnforceVersion808, KindACL, Warning, "< 0.8.0", ">= 0.8.0", urlVersionSpecific,
			"acl_enforce_version_8 defaults to true from 0.8",
			"set acl_enforce_version_8 = false on servers and clients during the upgrade and acl_datacenter on every agent",
			when(aclsOn)),
		def(RuleRPCRemoved08, KindConfig, Info, "< 0.8.0", ">= 0.8.0", urlVersionSpecific,
			"the CLI RPC interface is gone (ports.rpc, addresses.rpc, -rpc-addr) and remote exec is off by default",
			"remove the rpc keys; set disable_remote_exec = false if consul exec is used"),
		def(RuleAutopilotRaftProtocol3, KindRaft, Info, "", ">= 0.8.0, < 1.0.0", urlAutopilotGuide,
			"0.8/0.9 default to raft_protocol 2: autopilot health (the gate's voter and stability checks) needs 3 on every server",
			"expect gates to fall back to leader and serf checks, or set raft_protocol = 3 in a separate rolling restart once every server runs 0.8+",
			when(func(rc RuleContext) bool { return feat(rc).RaftProtocol != 3 })),
		def(RuleScriptChecks09, KindConfig, Info, "< 0.9.0", ">= 0.9.0", urlVersionSpecific,
			"script checks become opt-in in 0.9",
			"set enable_script_checks (or enable_local_script_checks from 0.9.4) on agents that run script checks"),
		// 1.0 and 1.1.
		knownBad(RuleKnownBad100, "= 1.0.0", urlVersionSpecific,
			"1.0.0 is a known-bad target: autopilot promoted new servers in pairs and could strand rolling upgrades without quorum",
			"target 1.0.1 or later (1.0.8 is the newest 1.0.x)"),
		def(RuleReplaceAutopilot100, KindOrdering, Blocking, "", "", urlVersionSpecific,
			"replace strategy while servers run autopilot before 1.0.1 on Raft protocol 3 (1.0.0 by default, 0.8/0.9 configured to 3): it promotes new servers only in pairs, so a one-at-a-time replacement can stall or lose quorum (GH-3611)",
			"take the hop past 1.0.0 in place (strategy in-place, or raft_protocol = 2, under which new servers join as voters), then replace on 1.0.1+; after a replacement that ran on such servers, consul force-leave the stale old servers",
			once, when(func(rc RuleContext) bool {
				return !inPlace(rc) && len(pairwisePromoters(rc)) > 0
			}),
			msgBy(func(rc RuleContext) string {
				return fmt.Sprintf("replace strategy while server(s) %s run autopilot before 1.0.1 on Raft protocol 3: it promotes new servers only in pairs (1.0.1 promotes each once stable), so the plan's single new server is never promoted and stale old servers need force-leave (GH-3611)",
					joinNames(pairwisePromoters(rc), 5))
			}),
			limit("no server before 1.0.1 on raft protocol 3 while replacing")),
		def(RuleRaftProtocol310, KindRaft, Warning, "< 1.0.0", ">= 1.0.0", urlVersionSpecific,
			"1.0 defaults to raft_protocol 3, which needs every server on 0.8+",
			"when the servers run raft protocol 2 (the 0.8/0.9 default), start the upgraded servers with raft_protocol = 2 until no 0.x server remains, then move every server to 3 in a separate rolling restart (before 1.9); the peers.json format changes too",
			// A warning, not info: 1.x servers on protocol 3 beside 0.x ones
			// on 2 can lose their leader after the leader's swap (real runs:
			// tests/README.md; TestHop_0_8_5_to_1_2_4 in tests/e2e/hops/old).
			sevBy(func(rc RuleContext) Severity {
				if feat(rc).RaftProtocol == 3 {
					return Info
				}
				return Warning
			}),
			msgBy(func(rc RuleContext) string {
				if feat(rc).RaftProtocol == 3 {
					return "1.0 defaults to raft_protocol 3; every server already runs it"
				}
				return "1.0 defaults to raft_protocol 3, and these servers run 2 (or it was not observed): an upgraded server on 3 beside 0.x servers on 2 can leave the cluster without a leader"
			})),
		def(RuleSingleServerRaft10, KindPrecheck, Warning, "< 1.0.0", ">= 1.0.0", urlVersionSpecific,
			"a single server restarted in place on Raft protocol 3 cannot elect itself",
			"keep raft_protocol = 2 in the single server's configuration for the 1.x binary, or prepare a peers.json with its node ID",
			when(func(rc RuleContext) bool { return smallestDatacenter(rc) == 1 }),
			sevBy(func(rc RuleContext) Severity {
				if feat(rc).RaftProtocol == 2 {
					return Info
				}
				return Warning
			}),
			msgBy(func(rc RuleContext) string {
				if feat(rc).RaftProtocol == 2 {
					return "a single server restarted in place on Raft protocol 3 cannot elect itself; raft protocol 2 is reported, which is also the 0.8/0.9 default: only raft_protocol = 2 in the configuration the 1.x binary starts with keeps it (1.0 defaults to 3)"
				}
				return "a single server restarted in place on Raft protocol 3 (the 1.0 default) cannot elect itself"
			})),
		def(RuleConfigRewrite10, KindConfig, Info, "< 1.0.0", ">= 1.0.0", urlVersionSpecific,
			"1.0 drops deprecated flags and keys and wants .hcl/.json config files",
			"rewrite the configs and run consul validate with the 1.0 binary before the hop"),
		def(RuleStrictChecks10, KindPrecheck, Info, "< 1.0.0", ">= 1.0.0", urlVersionSpecific,
			"1.0 agents refuse invalid check definitions and unauthorized KV reads return 403",
			"validate check definitions and API clients before the hop"),
		def(RuleConsulIndex107, KindPrecheck, Info, "< 1.0.7", ">= 1.0.7", urlVersionSpecific,
			"X-Consul-Index of service endpoints becomes per service and can go backwards during the hop",
			"test blocking-query consumers; restart tools that assume the index only grows"),
		def(RuleConfigRemovals11, KindConfig, Info, "< 1.1.0", ">= 1.1.0", urlVersionSpecific,
			"1.1 removes CheckID, check script, enableTagOverride and the consul.consul.* metrics",
			"rewrite configs (id, args, enable_tag_override) before the hop"),
		def(RuleThreeServers124, KindPrecheck, Warning, "< 1.2.4", ">= 1.2.4", urlPath12,
			"the 1.2.4 path needs at least 3 servers: a single server loops on \"No cluster leader\"",
			"add servers to reach 3 before the hop, or prepare a peers.json recovery",
			when(func(rc RuleContext) bool { n := smallestDatacenter(rc); return n > 0 && n < 3 })),
		// 1.3 to 1.5.
		knownBad(RuleKnownBad130, "= 1.3.0", urlVersionSpecific,
			"1.3.0 is a known-bad target while clients older than 1.3 remain: catalog tag filters are ignored",
			"target 1.3.1 or later",
			when(func(rc RuleContext) bool { return oldClientsBelow(rc, "1.3.0") })),
		def(RuleNewACLs14, KindACL, Warning, "< 1.4.0", ">= 1.4.0", urlVersionSpecific,
			"1.4 brings the new ACL system: servers stay in legacy mode until every primary server runs 1.4, and a downgrade is no longer possible",
			"snapshot every datacenter first; expect legacy-mode errors on new ACL APIs until the transition; wait until every token has an AccessorID before migrating tokens",
			when(aclsOn)),
		def(RulePrimaryDatacenterKey14, KindConfig, Info, "< 1.4.0", ">= 1.4.0", urlVersionSpecific,
			"acl_datacenter becomes primary_datacenter and acl_* keys move into the acl block",
			"rename the keys soon after the hop"),
		def(RuleConnectCAFederation14, KindOrdering, Info, "< 1.4.0", ">= 1.4.0", urlVersionSpecific,
			"secondary datacenters federate the Connect CA only once all servers of both sides run 1.4+",
			"upgrade datacenters in any order; CA federation follows the last server",
			when(func(rc RuleContext) bool { return enterprise(rc) && connect(rc) })),
		// 1.6 and 1.7.
		def(RuleLegacyACLs16, KindACL, Blocking, ">= 1.4.0, < 1.7.0", ">= 1.7.0", urlPath16,
			"legacy ACL tokens are still in use: the 1.6.x upgrade guide requires migrating them before upgrading past 1.6.x",
			"plan to 1.6.10 first (the path stops there), wait until every token has an AccessorID, migrate each legacy token (consul acl token update -id <id> -upgrade-legacy) and confirm none is left (Features.LegacyACLs false) before planning further",
			when(func(rc RuleContext) bool { return feat(rc).LegacyACLs }), limit("no legacy tokens past 1.6.x"),
			msgBy(func(rc RuleContext) string {
				return legacyMessage(rc, "legacy ACL tokens are still in use: the 1.6.x upgrade guide requires migrating them before upgrading past 1.6.x")
			})),
		def(RuleManagedProxiesRemoved16, KindPrecheck, Warning, "< 1.6.0", ">= 1.6.0", urlVersionSpecific,
			"managed proxies are removed in 1.6",
			"move managed proxies to sidecar service registrations before the hop",
			when(connect)),
		def(RuleKVSnapshot16, KindPrecheck, Warning, "< 1.6.0", ">= 1.6.0", "https://github.com/hashicorp/consul/issues/9329",
			"restoring snapshots written by <= 1.5.3 on >= 1.6.0 has reverted KV values",
			"take a fresh snapshot right after the hop and compare KV checksums before and after"),
		def(RuleStrictJSON162, KindConfig, Info, "< 1.6.2", ">= 1.6.2", urlPath16,
			"1.6.2 decodes JSON strictly (e.g. Connect: null in service definitions fails)",
			"validate service definitions before the hop"),
		def(RuleHTTPMaxConns163, KindConfig, Info, "< 1.6.3", ">= 1.6.3, <= 1.7.0", urlVersionSpecific,
			"1.6.3-1.7.0 limit HTTP connections per client to 100; Vault can open up to 128",
			"if Vault uses this cluster, set limits.http_max_conns_per_client = 200"),
		def(RuleSessionRenew170, KindPrecheck, Blocking, "<= 1.6.4", ">= 1.7.0, < 1.7.2", "https://github.com/hashicorp/consul/issues/7395",
			"1.7.0/1.7.1 servers reject session renewals from clients <= 1.6.4 (breaks Vault, locks, snapshot agents)",
			"target 1.7.2 or later directly",
			scope(ScopeClients), limit("clients > 1.6.4 or target >= 1.7.2")),
		def(RuleAPIStrict17, KindConfig, Info, "< 1.7.0", ">= 1.7.0", urlVersionSpecific,
			"1.7 rejects unknown JSON fields in the HTTP API and adds the datacenter to DNS PTR answers",
			"check API clients and DNS consumers before the hop"),
		// 1.8 to 1.10.
		def(RuleACLEnforceRemoved18, KindConfig, Info, "< 1.8.0", ">= 1.8.0", urlVersionSpecific,
			"acl_enforce_version_8 is removed in 1.8",
			"remove acl_enforce_version_8 from configs"),
		def(RuleRaftProtocol3v19, KindRaft, Blocking, "< 1.9.0", ">= 1.9.0", urlBuilder,
			"1.9 servers refuse to start unless raft_protocol is 3",
			"on the current version, set raft_protocol = 3 on every server in a separate rolling restart first, then upgrade",
			when(func(rc RuleContext) bool { p := feat(rc).RaftProtocol; return p != 0 && p != 3 }),
			limit("raft_protocol 3")),
		def(RuleLegacyACLsPanic19, KindACL, Warning, "< 1.9.0", ">= 1.9.0", "https://github.com/hashicorp/consul/issues/9566",
			"servers panicked on 1.9.x with legacy ACL tokens still in use",
			"migrate legacy tokens before 1.9 and rehearse the hop on a snapshot copy",
			when(func(rc RuleContext) bool { return feat(rc).LegacyACLs }),
			msgBy(func(rc RuleContext) string {
				return legacyMessage(rc, "servers panicked on 1.9.x with legacy ACL tokens still in use")
			})),
		def(RuleCentralConfig19, KindConfig, Info, "< 1.9.0", ">= 1.9.0", urlVersionSpecific,
			"enable_central_service_config defaults to true from 1.9",
			"set it to false explicitly if the old behaviour is needed"),
		def(RuleIntentionsMigration19, KindOrdering, Info, "< 1.9.0", ">= 1.9.0", urlVersionSpecific,
			"intentions migrate to config entries once every primary server runs 1.9; intention writes are blocked until then",
			"avoid intention writes during the hop and confirm the migration finished before resuming automation",
			when(connect)),
		def(RuleEnterpriseLicense110, KindConfig, Warning, "< 1.10.0", ">= 1.10.0", urlPath110,
			"Consul Enterprise 1.10 servers need the license in config or environment before they start",
			"set license_path (or CONSUL_LICENSE_PATH / CONSUL_LICENSE) on servers, and on clients and snapshot agents when ACLs are off",
			when(enterprise)),
		def(RuleEnvoyXDSV3110, KindOrdering, Warning, "< 1.11.0", ">= 1.10.0", urlVersionSpecific,
			"1.10 moves Envoy to xDS v3 and 1.11 drops v2: every Envoy must be re-bootstrapped with the 1.10+ CLI before 1.11",
			"upgrade Envoy to a version both Consul versions support, convert escape hatches to v3, upgrade Consul to 1.10, re-bootstrap every Envoy with the 1.10+ CLI (consul connect envoy), and only then go to 1.11",
			// Every path from below 1.10 to 1.11+ stops on 1.10.12 (the
			// dedicated paths), so a hop never skips 1.10: the rule judges
			// the hop into 1.10 and the hop into 1.11.
			when(envoy),
			msgBy(func(rc RuleContext) string {
				if f := hopFrom(rc); f != nil && !coreOf(f).LessThan(v1100) {
					return "1.11 drops xDS v2 (Envoy 1.16 and older): every Envoy must have been re-bootstrapped with the 1.10+ CLI, speaking xDS v3, before this hop"
				}
				return "1.10 moves Envoy to xDS v3 and 1.11 drops v2: follow the stairstep (Envoy first, then Consul, then re-bootstrap every Envoy with the 1.10+ CLI) before going on to 1.11"
			})),
		// 1.11 and 1.12.
		def(RuleLegacyACLs111, KindACL, Blocking, "< 1.11.0", ">= 1.11.0", urlRelease1110,
			"legacy ACL tokens are still in use and 1.11 removes the legacy ACL system",
			"migrate every legacy token to the new ACL system on 1.6.x-1.10.x (consul acl token update -upgrade-legacy) and stop using legacy endpoints before the hop",
			when(func(rc RuleContext) bool { return feat(rc).LegacyACLs }), limit("no legacy tokens"),
			msgBy(func(rc RuleContext) string {
				return legacyMessage(rc, "legacy ACL tokens are still in use and 1.11 removes the legacy ACL system")
			})),
		def(RuleACLTokenRenames111, KindConfig, Info, "< 1.11.0", ">= 1.11.0", urlVersionSpecific,
			"acl.tokens master/agent_master are renamed initial_management/agent_recovery",
			"rename the keys and scripts (the old names still work for now)"),
		def(RuleBbolt111, KindRaft, Info, "< 1.11.0", ">= 1.11.0", urlVersionSpecific,
			"1.11 moves the Raft store to bbolt: going back needs a snapshot restore",
			"take a snapshot before the hop; treat it as a point of no return for the binary"),
		def(RuleVaultCATune1119, KindPrecheck, Warning, "", ">= 1.11.9, < 1.11.11", urlVersionSpecific,
			"1.11.9-1.11.10 need update on sys/mounts/<intermediate>/tune in the Vault CA policy",
			"extend the Vault policy before the hop, or target 1.11.11+",
			targetValue, when(connect)),
		def(RuleTLSStanza112, KindConfig, Info, "< 1.12.0", ">= 1.12.0", urlVersionSpecific,
			"top-level TLS keys are deprecated in favour of the tls stanza",
			"move TLS settings into tls { defaults / https / internal_rpc / grpc }",
			when(func(rc RuleContext) bool { return feat(rc).TLS.CertMaterial })),
		def(RuleKnownBad1120Nomad, KindPrecheck, Warning, "", "= 1.12.0", urlVersionSpecific,
			"Consul Enterprise 1.12.0 keeps Nomad Enterprise from removing services in non-default namespaces",
			"target 1.12.1 or later",
			targetValue, when(enterprise)),
		def(RuleVaultCATune1125, KindPrecheck, Warning, "", "= 1.12.5", urlVersionSpecific,
			"1.12.5 needs update on sys/mounts/<intermediate>/tune in the Vault CA policy",
			"extend the Vault policy before the hop, or target 1.12.6+",
			targetValue, when(connect)),
		// 1.13 and 1.14.
		knownBadWith(RuleKnownBad1130, "= 1.13.0", urlVersionSpecific,
			"1.13.0 is a known-bad target with the service mesh: servers fail to restore pre-1.13 state that holds mesh proxy registrations (GH-14107)",
			"target 1.13.1 or later (1.13.9 is the newest 1.13.x)",
			"the service mesh (proxy registrations)", "Features.Connect", meshUse),
		def(RuleGRPCTLS113, KindSteppingStone, Blocking, "< 1.13.0", ">= 1.13.0, < 1.14.0", urlVersionSpecific,
			"tls.defaults hold certificates without an HTTPS port: agents landing on 1.13 serve gRPC over TLS and Envoy loses its plaintext xDS connection",
			"move the certificate material out of tls.defaults (and the legacy top-level keys) into tls.https / tls.internal_rpc before the hop into 1.13; that needs the 1.12 tls stanza, so the path stops on 1.12.x for agents below it, and a target past 1.13 is reached from 1.12 without landing on 1.13",
			evalBy((*checker).checkGRPCTLS113), limit("certificates out of tls.defaults before 1.13, on 1.12+")),
		def(RuleAutoEncryptGRPC113, KindConfig, Blocking, "< 1.13.0", ">= 1.13.0", urlVersionSpecific,
			"with auto-encrypt/auto-config, 1.13.0-1.13.1 force TLS on gRPC and 1.13.2+ need tls.grpc.use_auto_cert",
			"target 1.13.2+ and set tls.grpc.use_auto_cert = true when Envoy relies on auto-encrypt certificates",
			when(func(rc RuleContext) bool { return feat(rc).TLS.AutoEncrypt }),
			sevBy(func(rc RuleContext) Severity {
				if versionAtLeast(rc.Hop.To, "1.13.2") {
					return Warning
				}
				return Blocking
			})),
		def(RuleDisableCompat19113, KindConfig, Info, "< 1.13.0", ">= 1.13.0", urlVersionSpecific,
			"telemetry.disable_compat_19 is removed in 1.13",
			"remove disable_compat_19 before the hop"),
		def(RuleVaultCATune1132, KindPrecheck, Warning, "", "= 1.13.2", urlVersionSpecific,
			"1.13.2 needs update on sys/mounts/<intermediate>/tune in the Vault CA policy",
			"extend the Vault policy before the hop, or target 1.13.3+",
			targetValue, when(connect)),
		def(RuleNomadDetection1138, KindPrecheck, Warning, "", "= 1.13.8", urlVersionSpecific,
			"1.13.8 breaks Nomad's Consul version detection",
			"if Nomad uses this cluster, skip 1.13.8 (1.13.9 is fine)",
			targetValue),
		def(RuleGRPCTLSPort114, KindConfig, Blocking, "< 1.14.0", ">= 1.14.0", urlVersionSpecific,
			"gRPC is served over TLS: from 1.14 ports.grpc is plaintext only and TLS moves to ports.grpc_tls",
			"configure ports.grpc_tls (default 8503 on servers) and re-bootstrap Envoy with -grpc-ca-file before the hop",
			when(func(rc RuleContext) bool {
				on, _ := grpcTLSCrossing(rc)
				return on && (feat(rc).TLS.GRPCTLS || envoyUse(rc) != No)
			}),
			sevBy(func(rc RuleContext) Severity {
				if feat(rc).TLS.GRPCTLS || envoyUse(rc) == Yes {
					return Blocking
				}
				return Warning
			}),
			msgBy(func(rc RuleContext) string {
				const summary = "gRPC is served over TLS: from 1.14 ports.grpc is plaintext only and TLS moves to ports.grpc_tls"
				_, why := grpcTLSCrossing(rc)
				switch {
				case feat(rc).TLS.GRPCTLS:
					return summary
				case envoyUse(rc) == Yes:
					return summary + " (" + why + ")"
				}
				return unknownUse(summary+" ("+why+")", "Envoy over TLS gRPC", `set Features.Envoy to "yes" or "no", or Features.TLS.GRPCTLS`)
			}),
			limit("ports.grpc_tls configured")),
		def(RulePeeringConnectDefaults114, KindConfig, Info, "< 1.14.0", ">= 1.14.0", urlVersionSpecific,
			"1.14 enables cluster peering and Connect by default",
			"set peering.enabled / connect.enabled = false to keep the old behaviour"),
		def(RuleExperimentalPeering114, KindPrecheck, Info, ">= 1.13.0, < 1.14.0", ">= 1.14.0", urlVersionSpecific,
			"experimental 1.13 peerings do not work with 1.14",
			"delete 1.13 peerings before the hop"),
		knownBad(RuleKnownBad1140Envoy, "= 1.14.0", urlVersionSpecific,
			"1.14.0 is a known-bad target with Envoy and HTTPS: consul connect envoy wrongly enables gRPC TLS when HTTP uses TLS",
			"target 1.14.1 or later (1.14.11 is the newest 1.14.x); upgrade Nomad past 1.4.3 first if it runs mesh tasks",
			when(func(rc RuleContext) bool { return envoyUse(rc) != No }),
			sevBy(func(rc RuleContext) Severity {
				if envoyTLS(rc) {
					return Blocking
				}
				return Warning
			}),
			msgBy(func(rc RuleContext) string {
				const summary = "1.14.0 is a known-bad target with Envoy and HTTPS: consul connect envoy wrongly enables gRPC TLS when HTTP uses TLS"
				switch {
				case envoyTLS(rc):
					return summary
				case envoyUse(rc) == Yes:
					return unknownUse(summary, "consul connect envoy over HTTPS with plaintext gRPC", "no HTTPS port seen; set Features.TLS.HTTPSPort when the agents serve HTTPS")
				}
				return unknownUse(summary, "Envoy with an HTTPS agent API", `set Features.Envoy to "yes" or "no"`)
			})),
		def(RuleVaultCANamespace11410, KindPrecheck, Warning, "", "= 1.14.10", urlVersionSpecific,
			"1.14.10 fails to initialise a Vault Enterprise CA with namespace set but no PKI namespaces",
			"set intermediate_pki_namespace and root_pki_namespace, or skip this release",
			targetValue, when(connect)),
		// 1.15 to 1.17.
		knownBadWith(RuleKnownBad11501151Mesh, ">= 1.15.0, < 1.15.2", urlVersionSpecific,
			"1.15.0-1.15.1 are known-bad targets with the service mesh: a leaf certificate race can cut instances out after 72h",
			"target 1.15.2 or later (not 1.15.6 with a Vault Enterprise CA)",
			"the service mesh", "Features.Connect", meshUse),
		def(RuleServerlessPlugin115, KindConfig, Info, "< 1.15.0", ">= 1.15.0", urlVersionSpecific,
			"1.15 removes connect.enable_serverless_plugin and deprecates the token query parameter and -join",
			"remove the key; send tokens in X-Consul-Token; use retry_join"),
		def(RuleACLMigrationRemoved115, KindACL, Warning, "< 1.15.0", ">= 1.15.0", urlChangelog1150,
			"1.15 removes the ACL migration code: tokens without an AccessorID can break snapshot restore",
			"confirm every token has an AccessorID and no legacy token or policy remains before the hop",
			when(aclsOn)),
		def(RuleRaftLogstore115, KindRaft, Warning, "< 1.15.0", ">= 1.15.0", urlRaftWAL,
			"the WAL Raft log store exists only from 1.15, and switching backends needs a resync",
			"finish the version hop on BoltDB, then switch one server at a time to wal in a separate step",
			when(func(rc RuleContext) bool { return strings.EqualFold(feat(rc).RaftLogStore, "wal") })),
		def(RuleVaultCANamespace1156, KindPrecheck, Warning, "", "= 1.15.6", urlVersionSpecific,
			"1.15.6 fails to initialise a Vault Enterprise CA with namespace set but no PKI namespaces",
			"set intermediate_pki_namespace and root_pki_namespace, or skip this release",
			targetValue, when(connect)),
		def(RulePathNormalization11515, KindConfig, Info, "< 1.15.15", ">= 1.15.15, < 1.16.0", urlVersionSpecific,
			"Envoy path normalization is on by default for inbound mesh traffic",
			"if path-matching intentions break, set insecure_disable_path_normalization in the mesh config entry",
			when(connect)),
		knownBadWith(RuleKnownBad11601161, ">= 1.16.0, < 1.16.2", urlVersionSpecific,
			"1.16.0-1.16.1 are known-bad targets with agentless mesh: while servers host xDS streams, a snapshot restore can mis-populate Envoy endpoints",
			"target 1.16.2 or later",
			"agentless mesh (consul-dataplane proxies fed xDS by the servers)", "Features.AgentlessMesh", agentlessUse),
		def(RuleHealthConnect403116, KindACL, Info, "< 1.16.0", ">= 1.16.0", urlVersionSpecific,
			"/v1/health/connect and /v1/health/ingress return 403 without service read (was an empty 200)",
			"check API consumers and add Peer to upstream overrides before the hop"),
		def(RuleVaultCANamespace1162, KindPrecheck, Warning, "", "= 1.16.2", urlVersionSpecific,
			"1.16.2 fails to initialise a Vault Enterprise CA with namespace set but no PKI namespaces",
			"set intermediate_pki_namespace and root_pki_namespace, or skip this release",
			targetValue, when(connect)),
		knownBadWith(RuleKnownBad1165, "= 1.16.5", urlVersionSpecific,
			"1.16.5 is a known-bad target with terminating gateways: over-strict TLS SAN checks cut connections to services outside the mesh (GH-20360)",
			"target 1.16.6 or later",
			"terminating gateways", "Features.TerminatingGateways", termGWUse),
		def(RuleTemplatedPolicies117, KindACL, Info, "< 1.17.0", ">= 1.17.0", urlVersionSpecific,
			"older servers ignore templated policies of tokens created on 1.17+",
			"create templated-policy tokens only after every server runs 1.17+",
			when(aclsOn)),
		def(RuleAPIChanges117, KindConfig, Info, "< 1.17.0", ">= 1.17.0", urlRelease1170,
			"RaftLeaderTransfer takes an id argument from 1.17 (and Enterprise audit log names change)",
			"update API callers before the hop"),
		knownBadWith(RuleKnownBad1172, "= 1.17.2", urlVersionSpecific,
			"1.17.2 is a known-bad target with terminating gateways: over-strict TLS SAN checks cut connections to services outside the mesh (GH-20360)",
			"target 1.17.3 or later",
			"terminating gateways", "Features.TerminatingGateways", termGWUse),
		// 1.18 to 1.21.
		def(RulePathNormalization1185, KindConfig, Info, "< 1.18.5", ">= 1.18.5, < 1.19.0", urlVersionSpecific,
			"Envoy path normalization is on by default for inbound mesh traffic",
			"if path-matching intentions break, set insecure_disable_path_normalization in the mesh config entry",
			when(connect)),
		def(RuleServersFirst119, KindOrdering, Info, "< 1.19.0", ">= 1.19.0", urlVersionSpecific,
			"from 1.19 health filtering runs on the servers: every server must be upgraded before any client",
			"nothing to do: the plan upgrades all servers of a datacenter before its clients; do not upgrade clients by hand first",
			when(hasClients)),
		def(RuleMetrics119, KindConfig, Info, "< 1.19.0", ">= 1.19.0", urlVersionSpecific,
			"duplicate consul.consul.* state-store metrics are gone in 1.19",
			"update dashboards and alerts before the hop"),
		def(RulePathNormalization1193, KindConfig, Info, "< 1.19.3", ">= 1.19.3, < 1.20.0", urlVersionSpecific,
			"Envoy path normalization is on by default for inbound mesh traffic",
			"if path-matching intentions break, set insecure_disable_path_normalization in the mesh config entry",
			when(connect)),
		def(RulePathNormalization1201, KindConfig, Info, "< 1.20.1", ">= 1.20.1", urlVersionSpecific,
			"Envoy path normalization is on by default for inbound mesh traffic",
			"if path-matching intentions break, set insecure_disable_path_normalization in the mesh config entry",
			when(connect)),
		def(RuleEnterpriseLicense1217, KindOrdering, Info, "< 1.21.7", ">= 1.21.7", urlVersionSpec122,
			"Consul Enterprise 1.21.7+ takes the new IBM license in a second phase",
			"upgrade servers then clients with the current license, then install the new license and restart servers one at a time, then clients",
			when(enterprise)),
		def(RuleAutomatedReplace, KindOrdering, Info, ">= 0.8.0", "", urlAutomated,
			"replace strategy: new servers join as non-voters and old ones are retired once the new ones are stable voters",
			"keep min_quorum at the intended server count and retire old servers only when the new ones are voters",
			once, when(func(rc RuleContext) bool { return policy(rc).Strategy == Replace })),
	}
}

// builtins is the compiled catalogue. It is built once and never changed.
var builtins = compileAll(catalogue())

// compileAll parses the constraints of rules.
func compileAll(bs []builtin) []compiled {
	out := make([]compiled, len(bs))
	for i, b := range bs {
		out[i] = compile(b)
	}
	return out
}

// compile parses a rule's constraints; a bad one is recorded in err.
func compile(b builtin) compiled {
	c := compiled{builtin: b}
	if b.From != "" {
		c.from, c.err = parseConstraints(b.From)
	}
	if c.err == nil && b.To != "" {
		c.to, c.err = parseConstraints(b.To)
	}
	return c
}

// Catalogue returns the built-in rules (a fresh copy each call): cluster
// pre-checks, ordering rules, stepping stones and the version notes of
// Consul 0.4 to 1.21. Rules whose severity depends on the cluster or policy
// carry the most severe one here.
func Catalogue() []Rule {
	out := make([]Rule, len(builtins))
	for i, b := range builtins {
		out[i] = b.Rule
	}
	return out
}

// PrimaryLast reports whether, on hop h, the primary datacenter is upgraded
// after the secondaries: on the hops of the dedicated 1.2.4 and 1.6.10 paths
// (0.8.5-1.2.3 landing on 1.2.x at 1.2.4 or later, 1.2.4-1.6.9 landing on
// 1.6.x at 1.6.10 or later) with ACL replication, where upgrading the
// primary first breaks replication. On every other hop the primary goes
// first, 1.6.9 -> 1.8.19 included (the 1.8.19 path runs the general process
// in every datacenter). It is the one rule of datacenter order: Next, Plan,
// Check and DatacenterOrder all read it.
func PrimaryLast(h Hop, f Features) bool {
	if !f.ACLReplication {
		return false
	}
	from, err1 := parseVersion(h.From)
	to, err2 := parseVersion(h.To)
	if err1 != nil || err2 != nil {
		return false
	}
	from, to = coreOf(from), coreOf(to)
	if between(from, v085, v124) && between(to, v124, v130) {
		return true
	}
	return between(from, v124, v1610) && between(to, v1610, v170)
}

// versionAtLeast reports s >= min; false when s does not parse.
func versionAtLeast(s, min string) bool {
	v, err := parseVersion(s)
	if err != nil {
		return false
	}
	m := mustVersion(min)
	return m != nil && !coreOf(v).LessThan(m)
}
