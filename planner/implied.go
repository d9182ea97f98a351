package planner

import (
	"fmt"
	"strings"

	version "github.com/hashicorp/go-version"
)

// Facts the versions imply. A rule that reads a fact of Features must not
// wait for it to be declared when the versions the cluster runs already
// prove it (issue 22): every ACL token of a cluster whose servers run below
// 1.4.0 is a legacy token; a server on 0.8 or 0.9 runs Raft protocol 2
// unless configured otherwise. Check applies impliedFeatures to the cluster
// before any rule reads it, and the rules that depend on a version (the
// Raft protocol of a server) ask the helpers below.

// Versions the implied facts turn on.
var (
	v100 = version.Must(version.NewVersion("1.0.0"))
	v101 = version.Must(version.NewVersion("1.0.1"))
	v140 = version.Must(version.NewVersion("1.4.0"))
)

// impliedFeatures returns f with the facts that the servers' versions
// imply (lowest is the lowest server version that parses, nil when none
// does):
//
//   - ACLs: legacy tokens (LegacyACLs) and ACL replication exist only with
//     the ACL system on.
//   - LegacyACLs: with ACLs on and a server below 1.4.0, every token is a
//     legacy one (the new ACL system arrived in 1.4.0; the cluster leaves
//     legacy mode only once every primary server runs 1.4), whether or
//     not it was declared.
//
// It never clears a declared fact.
func impliedFeatures(f Features, lowest *version.Version) Features {
	if f.LegacyACLs || f.ACLReplication {
		f.ACLs = true
	}
	if f.ACLs && lowest != nil && lessThan(coreOf(lowest), v140) {
		f.LegacyACLs = true
	}
	return f
}

// legacyByVersion returns the lowest server below 1.4.0 when ACLs are on:
// the server whose version makes every token a legacy one (ok false when
// there is none).
func legacyByVersion(rc RuleContext) (name, ver string, ok bool) {
	if rc.Cluster == nil || !feat(rc).ACLs {
		return "", "", false
	}
	var low *version.Version
	for _, s := range rc.Cluster.Servers {
		v, err := parseVersion(s.Version)
		if err != nil || !lessThan(coreOf(v), v140) {
			continue
		}
		if low == nil || lessThan(v, low) {
			low, name, ver = v, s.Name, s.Version
		}
	}
	return name, ver, low != nil
}

// legacyMessage is the message of a rule about legacy tokens: summary, and
// when the tokens are legacy by version, why.
func legacyMessage(rc RuleContext, summary string) string {
	if name, ver, ok := legacyByVersion(rc); ok {
		return fmt.Sprintf("%s: ACLs are on and server %s runs %s, below the new ACL system of 1.4.0, so every token is a legacy token, declared or not", summary, name, ver)
	}
	return summary
}

// defaultRaftProtocol is the Raft protocol a server on v runs when its
// configuration does not set raft_protocol: 0 up to 0.6, 1 on 0.7, 2 on
// 0.8 and 0.9, 3 from 1.0 (version-specific notes, 0.8.0 and 1.0.0).
func defaultRaftProtocol(v *version.Version) int {
	c := coreOf(v)
	switch {
	case lessThan(c, v070):
		return 0
	case lessThan(c, v080):
		return 1
	case lessThan(c, v100):
		return 2
	}
	return 3
}

// raftProtocolOn is the Raft protocol a server on v runs: the configured
// one (Features.RaftProtocol), or v's default.
func raftProtocolOn(v *version.Version, f Features) int {
	if f.RaftProtocol != 0 {
		return f.RaftProtocol
	}
	return defaultRaftProtocol(v)
}

// pairwisePromoters lists the servers whose autopilot promotes new servers
// to voters only in pairs: every version before 1.0.1 that runs Raft
// protocol 3 (0.8.0-0.9.x configured to 3, 1.0.0 by default). The 1.0.1
// notes: "Consul 1.0 (and earlier versions of Consul when running with Raft
// protocol 3) had an issue where performing rolling updates of Consul
// servers could result in an outage from old servers remaining in the
// cluster".
func pairwisePromoters(rc RuleContext) []string {
	if rc.Cluster == nil {
		return nil
	}
	f := feat(rc)
	var out []string
	for _, s := range rc.Cluster.Servers {
		v, err := parseVersion(s.Version)
		if err != nil || !between(coreOf(v), v080, v101) || raftProtocolOn(v, f) != 3 {
			continue
		}
		out = append(out, fmt.Sprintf("%s (%s, raft protocol 3)", s.Name, s.Version))
	}
	return out
}

// joinNames joins names for a message, "a, b and 2 more" past limit.
func joinNames(names []string, limit int) string {
	if len(names) <= limit {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:limit], ", "), len(names)-limit)
}
