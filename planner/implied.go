package planner

import (
	"fmt"
	"strings"

	version "github.com/hashicorp/go-version"
)

// Facts the versions imply. A rule that reads a fact of Features must not
// wait for it to be declared when the versions the cluster runs already
// prove it: every ACL token of a cluster whose servers run below
// 1.4.0 is a legacy token; a server on 0.8 or 0.9 runs Raft protocol 2
// unless configured otherwise; before 1.13 an HTTPS port turns TLS on for
// gRPC too, and on 1.13 certificates in tls.defaults do. Check applies
// impliedFeatures to the cluster before any rule reads it, and the rules
// that depend on a version (the Raft protocol of a server, gRPC TLS at a
// hop) ask the helpers below.

// Versions the implied facts turn on.
var (
	v100  = version.Must(version.NewVersion("1.0.0"))
	v101  = version.Must(version.NewVersion("1.0.1"))
	v140  = version.Must(version.NewVersion("1.4.0"))
	v1120 = version.Must(version.NewVersion("1.12.0"))
	v1130 = version.Must(version.NewVersion("1.13.0"))
	v1132 = version.Must(version.NewVersion("1.13.2"))
	v1140 = version.Must(version.NewVersion("1.14.0"))
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

// envoyUsage is Features.Envoy, No when the mesh is known to be off.
func (f Features) envoyUsage() Usage {
	if f.Envoy == Unknown && f.Connect == No {
		return No
	}
	return f.Envoy
}

// grpcTLS113Risk reports whether agents moved onto 1.13.x would start
// serving gRPC over TLS and cut Envoy's plaintext xDS: certificates in
// tls.defaults (or the legacy top-level keys), no HTTPS port (with one, gRPC
// already runs TLS before 1.13 and keeps it), and Envoy not known to be
// absent. Version-specific notes, 1.13.x, "Service mesh deployments without
// the HTTPS port enabled on Consul agents".
func grpcTLS113Risk(f Features) bool {
	t := f.TLS
	return t.CertMaterial && !t.HTTPSPort && f.envoyUsage() != No
}

// grpcTLSOn reports whether agents on v serve gRPC over TLS on ports.grpc,
// and why: declared (Features.TLS.GRPCTLS), or implied by v and the TLS
// settings: before 1.13 an HTTPS port with certificates turns TLS on for
// gRPC too; on 1.13 certificates in tls.defaults (or the legacy keys) do,
// and 1.13.0-1.13.1 force it with auto-encrypt or auto-config
// (version-specific notes, 1.13.x and 1.14.x). From 1.14 ports.grpc is
// plaintext only, so the answer is false there.
func grpcTLSOn(v *version.Version, f Features) (on bool, why string) {
	t := f.TLS
	if t.GRPCTLS {
		return true, "gRPC is served over TLS (Features.TLS.GRPCTLS)"
	}
	if v == nil {
		return false, ""
	}
	c := coreOf(v)
	switch {
	case !lessThan(c, v1140):
		return false, ""
	case !lessThan(c, v1130) && t.CertMaterial:
		return true, fmt.Sprintf("on %s the certificates in tls.defaults (or the legacy top-level keys) serve gRPC over TLS", v.Original())
	case !lessThan(c, v1130) && t.AutoEncrypt && lessThan(c, v1132):
		return true, fmt.Sprintf("%s forces TLS on gRPC with auto-encrypt or auto-config", v.Original())
	case lessThan(c, v1130) && t.HTTPSPort && t.CertMaterial:
		return true, fmt.Sprintf("on %s an HTTPS port with certificates turns TLS on for gRPC too", v.Original())
	}
	return false, ""
}

// grpcTLSCrossing reports whether an agent that crosses 1.14 on rc's hop
// serves gRPC over TLS before it, and why: the hop's From, and every
// server (and, unless left behind, client) version of the cluster between
// it and 1.14, is judged by grpcTLSOn. A mixed cluster whose lowest server
// is on 1.12 (plaintext gRPC) may have others on 1.13 whose tls.defaults
// certificates already serve gRPC over TLS.
func grpcTLSCrossing(rc RuleContext) (bool, string) {
	f := feat(rc)
	if t := f.TLS; !t.GRPCTLS && !t.CertMaterial && !t.AutoEncrypt {
		return false, ""
	}
	from := hopFrom(rc)
	if on, why := grpcTLSOn(from, f); on || from == nil || rc.Cluster == nil {
		return on, why
	}
	seen := map[string]bool{rc.Hop.From: true}
	try := func(ver string) (bool, string) {
		if seen[ver] {
			return false, ""
		}
		seen[ver] = true
		v, err := parseVersion(ver)
		if err != nil || lessThan(coreOf(v), coreOf(from)) || !lessThan(coreOf(v), v1140) {
			return false, ""
		}
		return grpcTLSOn(v, f)
	}
	for _, s := range rc.Cluster.Servers {
		if on, why := try(s.Version); on {
			return true, "server " + s.Name + ": " + why
		}
	}
	if policy(rc).Clients.Mode != ClientLeaveBehind {
		last := ""
		for _, c := range rc.Cluster.Clients {
			if c.Version == last {
				continue
			}
			last = c.Version
			if on, why := try(c.Version); on {
				return true, "client " + c.Name + ": " + why
			}
		}
	}
	return false, ""
}

// hopFrom parses the From of rc's hop (nil when it does not parse).
func hopFrom(rc RuleContext) *version.Version {
	v, err := parseVersion(rc.Hop.From)
	if err != nil {
		return nil
	}
	return v
}

// joinNames joins names for a message, "a, b and 2 more" past limit.
func joinNames(names []string, limit int) string {
	if len(names) <= limit {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:limit], ", "), len(names)-limit)
}

// checkGRPCTLS113 evaluates RuleGRPCTLS113 on every hop of the path: it
// explains the 1.12 stone PathFor placed for it, and judges each hop that
// lands on 1.13.x from below: from 1.12 or later a warning (the
// certificates can move out of tls.defaults now, and must before the hop),
// from below 1.12 blocking when Envoy is known to run (they cannot move
// before the hop: this only happens when no 1.12 release can be a stone)
// and a warning naming the feature when its use is unknown.
func (k *checker) checkGRPCTLS113(r *compiled) {
	f := k.c.Features
	if !grpcTLS113Risk(f) {
		return
	}
	for i, h := range k.path {
		if h.Rule == r.ID {
			k.add(i, r, Info, "", h.To, r.limit, fmt.Sprintf("stepping stone %s (hop %s -> %s): %s", h.To, h.From, h.To, h.Reason))
			continue
		}
		if !r.to.Check(k.pathTo[i]) || !r.from.Check(k.pathFrom[i]) {
			continue
		}
		if !lessThan(k.pathFrom[i], v1120) {
			k.add(i, r, Warning, "", h.From, r.limit, fmt.Sprintf("%s -> %s: %s; on %s, move the certificates into tls.https / tls.internal_rpc on every agent before this hop (Envoy keeps plaintext gRPC then)",
				h.From, h.To, r.Summary, h.From))
			continue
		}
		why := "the hop starts below 1.12, so the certificates cannot move out of tls.defaults before it"
		if len(k.pol.Releases) > 0 {
			why += " (Policy.Releases lists no 1.12 release to stop on: add one)"
		}
		msg := fmt.Sprintf("%s -> %s: %s; %s", h.From, h.To, r.Summary, why)
		sev := Blocking
		if f.envoyUsage() != Yes {
			sev = Warning
			msg = unknownUse(msg, "Envoy (sidecars or gateways)", `set Features.Envoy to "yes" or "no"`)
		}
		k.add(i, r, sev, "", h.From, r.limit, msg)
	}
}
