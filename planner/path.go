package planner

import (
	"fmt"
	"slices"
	"strings"

	version "github.com/hashicorp/go-version"
)

// newestPatch is the newest patch release of each Consul minor line known
// to the release catalogue (releaseLines in releases.go, which says where
// the list comes from and until when it is current), keyed by minorIndex.
// Path picks stepping stones from it; none of them is a known-bad release
// (TestPathStonesAreNotKnownBad checks this against the rules catalogue),
// and each is its line's newest release in the release catalogue
// (TestNewestPatchIsEachLinesNewestRelease).
var newestPatch = map[int]string{
	1:  "0.1.0",
	2:  "0.2.1",
	3:  "0.3.1",
	4:  "0.4.1",
	5:  "0.5.2",
	6:  "0.6.4",
	7:  "0.7.5",
	8:  "0.8.5",
	9:  "0.9.4",
	10: "1.0.8",
	11: "1.1.1",
	12: "1.2.4",
	13: "1.3.1",
	14: "1.4.5",
	15: "1.5.3",
	16: "1.6.10",
	17: "1.7.14",
	18: "1.8.19",
	19: "1.9.17",
	20: "1.10.12",
	21: "1.11.11",
	22: "1.12.9",
	23: "1.13.9",
	24: "1.14.11",
	25: "1.15.11",
	26: "1.16.7",
	27: "1.17.4",
	28: "1.18.2",
	29: "1.19.2",
	30: "1.20.6",
	31: "1.21.5",
}

// ltsLine reports whether a minor index is a Consul Enterprise long-term
// support line (1.15, 1.18, 1.21).
func ltsLine(idx int) bool { return idx == 25 || idx == 28 || idx == 31 }

// Path rule IDs that only place stepping stones (see Catalogue for the rest).
const (
	// RuleRaftProtocol07 places 0.7.5 between <= 0.6 (Raft protocol 0) and
	// >= 0.8 (Raft protocol 1-3): only adjacent Raft protocols interoperate.
	RuleRaftProtocol07 RuleID = "raft-protocol-adjacency-0.7"
	// RuleDedicated124 is the dedicated path 0.8.5-1.2.3 -> 1.2.4.
	RuleDedicated124 RuleID = "dedicated-path-1.2.4"
	// RuleDedicated1610 is the dedicated path 1.2.4-1.6.9 -> 1.6.10.
	RuleDedicated1610 RuleID = "dedicated-path-1.6.10"
	// RuleDedicated1819 is the dedicated path 1.6.9-1.8.18 -> 1.8.19.
	RuleDedicated1819 RuleID = "dedicated-path-1.8.19"
	// RuleDedicated11012 is the dedicated path 1.8.0-1.9.17 -> 1.10.12.
	RuleDedicated11012 RuleID = "dedicated-path-1.10.12"
	// RuleEnterprise110 makes Enterprise 1.9.0-1.9.6 go to 1.9.17 before
	// 1.10 (licensing: 1.10 is reachable from 1.8.13+ or 1.9.7+ only).
	RuleEnterprise110 RuleID = "enterprise-license-stone-1.10"
	// RuleEnterprise1107 makes Enterprise 1.10.0-1.10.6 go to 1.10.12
	// before 1.11 (older 1.10 agents deregister their services).
	RuleEnterprise1107 RuleID = "enterprise-1.10.7-before-1.11"
)

// Versions Path compares against, parsed once.
var (
	v051   = version.Must(version.NewVersion("0.5.1"))
	v060   = version.Must(version.NewVersion("0.6.0"))
	v070   = version.Must(version.NewVersion("0.7.0"))
	v080   = version.Must(version.NewVersion("0.8.0"))
	v085   = version.Must(version.NewVersion("0.8.5"))
	v124   = version.Must(version.NewVersion("1.2.4"))
	v130   = version.Must(version.NewVersion("1.3.0"))
	v169   = version.Must(version.NewVersion("1.6.9"))
	v1610  = version.Must(version.NewVersion("1.6.10"))
	v170   = version.Must(version.NewVersion("1.7.0"))
	v180   = version.Must(version.NewVersion("1.8.0"))
	v1819  = version.Must(version.NewVersion("1.8.19"))
	v190   = version.Must(version.NewVersion("1.9.0"))
	v197   = version.Must(version.NewVersion("1.9.7"))
	v1100  = version.Must(version.NewVersion("1.10.0"))
	v1107  = version.Must(version.NewVersion("1.10.7"))
	v11012 = version.Must(version.NewVersion("1.10.12"))
	v1110  = version.Must(version.NewVersion("1.11.0"))
)

// maxHops bounds the loop in Path; a real path has fewer than 20 hops.
const maxHops = 64

// Path returns the stepping stones from one version to another: every
// server reaches a hop's To before any server starts the next hop. Each hop
// names the rule that put its stone there and why ("" for a final hop that
// no rule forced).
//
// A version that does not parse yields a *VersionError (Node ""), a target
// older than from a *DowngradeError, a version >= 2.0.0 an
// *UnsupportedVersionError, a target that is not a Consul release an
// *UnknownReleaseError (see CheckRelease: a version pol.Releases lists, or
// a waived unknown-release, passes). from == to yields an empty path.
//
// Either version on an Enterprise build (+ent) makes the path an Enterprise
// one whether or not pol.Enterprise is set, and when to carries build
// metadata every stepping stone carries the same (1.9.17+ent on the way to
// 1.10.12+ent), so a transport fetches the same edition at every hop.
//
// Path knows nothing of the cluster's features; PathFor adds the stones
// they call for, and is the path Check, Next and Plan follow.
func Path(from, to string, pol Policy) ([]Hop, error) {
	return pathFor(from, to, pol, pathFacts{})
}

// PathFor is Path for a cluster whose features are f: it adds the stepping
// stones those features call for. Today that is one: with certificates in
// tls.defaults (or the legacy top-level keys), no HTTPS port and Envoy not
// known to be absent (Features.Envoy, Features.Connect), agents below 1.12
// do not land on 1.13.x, which would serve gRPC over TLS and cut Envoy's
// plaintext xDS: they stop on 1.12.x (the newest 1.12 patch, or the newest
// listed in pol.Releases), where the tls stanza lets the operator move the
// certificates into tls.https / tls.internal_rpc, and a target beyond 1.13
// is then reached from 1.12 without landing on 1.13 at all (RuleGRPCTLS113;
// version-specific notes, 1.13.x: "consider upgrading agents to Consul 1.12
// before upgrading to 1.13"). Check, Next and Plan compute their path with
// it, and so should anything that must agree with them (a runner checking
// the versions a run will install).
func PathFor(from, to string, pol Policy, f Features) ([]Hop, error) {
	return pathFor(from, to, pol, factsOf(f))
}

// pathFacts are the facts of a cluster that place stepping stones.
type pathFacts struct {
	// grpcTLS113: agents must not land on 1.13.x from below 1.12
	// (grpcTLS113Risk).
	grpcTLS113 bool
}

func factsOf(f Features) pathFacts {
	return pathFacts{grpcTLS113: grpcTLS113Risk(f)}
}

// pathFor is Path and PathFor.
func pathFor(from, to string, pol Policy, facts pathFacts) ([]Hop, error) {
	f, err := ParseVersion(from)
	if err != nil {
		return nil, err
	}
	t, err := ParseVersion(to)
	if err != nil {
		return nil, err
	}
	if !pol.Enterprise && (enterpriseBuild(from) || enterpriseBuild(to)) {
		pol.Enterprise = true
	}
	hops, err := pathVersions(f, t, pol, facts)
	if err != nil {
		return nil, err
	}
	if err := CheckRelease(to, pol); err != nil {
		return nil, err
	}
	return hops, nil
}

// pathVersions is pathFor on parsed versions.
func pathVersions(f, t *version.Version, pol Policy, facts pathFacts) ([]Hop, error) {
	fc, tc := coreOf(f), coreOf(t)
	if !lessThan(fc, maxSupported) {
		return nil, &UnsupportedVersionError{Value: f.Original(), Limit: "< " + maxSupported.String()}
	}
	if !lessThan(tc, maxSupported) {
		return nil, &UnsupportedVersionError{Value: t.Original(), Limit: "< " + maxSupported.String()}
	}
	if lessThan(t, f) {
		return nil, &DowngradeError{From: f.Original(), To: t.Original()}
	}
	for _, r := range pol.Releases {
		if _, err := ParseVersion(r); err != nil {
			return nil, &VersionError{Node: "policy releases", Value: r, Err: err}
		}
	}
	var hops []Hop
	cur := f
	for !cur.Equal(t) {
		if len(hops) == maxHops {
			return nil, fmt.Errorf("path %s -> %s: more than %d hops (limit %d); this is a planner bug, please report it with both versions", f.Original(), t.Original(), maxHops, maxHops)
		}
		h, next, err := hopAfter(cur, t, pol, facts)
		if err != nil {
			return nil, err
		}
		hops = append(hops, h)
		cur = next
	}
	return hops, nil
}

// hopAfter is the hop of the path from cur (< t) to t that starts at cur,
// and the version it lands on.
func hopAfter(cur, t *version.Version, pol Policy, facts pathFacts) (Hop, *version.Version, error) {
	next, rule, reason, err := nextStone(cur, t, pol, facts)
	if err != nil {
		return Hop{}, nil, err
	}
	if next == nil || !lessThan(cur, next) || lessThan(t, next) {
		// Never loop or overshoot: go straight to the target.
		next, rule, reason = t, "", "final hop to the target"
	}
	if next != t && next.Equal(t) {
		// A stone equal to the target is the target, metadata and all.
		next = t
	} else if next != t && t.Metadata() != "" && next.Metadata() == "" {
		// Stones are the target's edition: 1.9.17+ent on the way to
		// 1.10.12+ent.
		if v := mustVersion(next.Original() + "+" + t.Metadata()); v != nil {
			next = v
		}
	}
	return Hop{From: cur.Original(), To: next.Original(), Rule: rule, Reason: reason}, next, nil
}

// clusterPath is the path of a cluster whose agents run the versions vs
// (any order, at least one, duplicates allowed) to t: hop by hop from the
// lowest version, each hop ending on the nearest of the first stepping
// stones of every version it moves (the versions below where it lands).
// So no agent skips a stone of its own path: an Enterprise server on 1.9.1
// beside servers on 1.8.5 stops on 1.9.17 before 1.10 (the licensing stone
// of its own path), although the path from 1.8.5 alone goes 1.8.19 ->
// 1.10.x. Agents below a hop's end move to it, those at or above it wait;
// for a cluster on one version it is the path from that version. A hop
// shortened for a higher version names that version's rule and says so.
func clusterPath(vs []*version.Version, t *version.Version, pol Policy, facts pathFacts) ([]Hop, error) {
	set := make([]*version.Version, 0, len(vs))
	for _, v := range vs {
		if v != nil && lessThan(v, t) {
			set = append(set, v)
		}
	}
	if len(set) == 0 {
		// Every agent is at or past t: no hop, but the checks of a path
		// (a downgrade, a version beyond the catalogue) still apply.
		var low *version.Version
		for _, v := range vs {
			if v != nil && (low == nil || lessThan(v, low)) {
				low = v
			}
		}
		if low == nil {
			return nil, nil
		}
		return pathVersions(low, t, pol, facts)
	}
	slices.SortFunc(set, func(a, b *version.Version) int {
		if c := compareVersions(a, b); c != 0 {
			return c
		}
		return strings.Compare(a.Original(), b.Original())
	})
	set = slices.CompactFunc(set, func(a, b *version.Version) bool { return compareVersions(a, b) == 0 })
	// The lowest version's own path validates the inputs (versions beyond
	// the catalogue, the policy's releases) once.
	if _, err := pathVersions(set[0], t, pol, facts); err != nil {
		return nil, err
	}
	var hops []Hop
	for len(set) > 0 {
		if len(hops) == maxHops {
			return nil, fmt.Errorf("path %s -> %s: more than %d hops (limit %d); this is a planner bug, please report it with the cluster's versions", vs[0].Original(), t.Original(), maxHops, maxHops)
		}
		h, to, err := hopAfter(set[0], t, pol, facts)
		if err != nil {
			return nil, err
		}
		for _, v := range set[1:] {
			if !lessThan(v, to) {
				break
			}
			hv, tv, err := hopAfter(v, t, pol, facts)
			if err != nil {
				return nil, err
			}
			if lessThan(tv, to) {
				to = tv
				h = Hop{From: set[0].Original(), To: hv.To, Rule: hv.Rule,
					Reason: fmt.Sprintf("agents on %s must not go past %s: %s", v.Original(), hv.To, hv.Reason)}
			}
		}
		hops = append(hops, h)
		// The versions below to land on it.
		k := 0
		for k < len(set) && lessThan(set[k], to) {
			k++
		}
		rest := set[k:]
		if !lessThan(to, t) {
			break
		}
		if len(rest) == 0 || compareVersions(rest[0], to) != 0 {
			rest = append([]*version.Version{to}, rest...)
		}
		set = rest
	}
	return hops, nil
}

// between reports lo <= v < hi.
func between(v, lo, hi *version.Version) bool {
	return !lessThan(v, lo) && lessThan(v, hi)
}

// nextStone chooses the stone after cur on the way to t.
func nextStone(cur, t *version.Version, pol Policy, facts pathFacts) (*version.Version, RuleID, string, error) {
	next, rule, reason, err := ruleStone(cur, t, pol)
	if err != nil || next == nil || !facts.grpcTLS113 {
		return next, rule, reason, err
	}
	// gRPC TLS: agents below 1.12 do not land on 1.13.x; they stop on
	// 1.12.x, where the certificates can move out of tls.defaults.
	if c, n := coreOf(cur), coreOf(next); lessThan(c, v1120) && between(n, v1130, v1140) {
		if s := stoneOnLine(minorIndex(v1120), pol); s != "" {
			return mustVersion(s), RuleGRPCTLS113, fmt.Sprintf("tls.defaults (or the legacy top-level keys) hold certificates and no HTTPS port is set: agents landing on 1.13 would serve gRPC over TLS and cut Envoy's plaintext xDS; moving the certificates into tls.https / tls.internal_rpc needs the tls stanza of 1.12, so the agents stop on %s (and go past 1.13 from there when the target is beyond it)", s), nil
		}
	}
	return next, rule, reason, err
}

// ruleStone is nextStone without the stones of the cluster's features.
func ruleStone(cur, t *version.Version, pol Policy) (*version.Version, RuleID, string, error) {
	c, tc := coreOf(cur), coreOf(t)
	var next *version.Version
	var rule RuleID
	var reason string
	switch {
	case lessThan(c, v051) && !lessThan(tc, v060):
		next, rule = mustVersion("0.5.2"), RuleRaftBoltDB
		reason = "the LMDB -> BoltDB Raft store migrator ships only in 0.5.1+ of 0.5.x and was removed in 0.6.0: every server boots 0.5.2 once"
	case lessThan(c, v070) && !lessThan(tc, v080):
		next, rule = mustVersion("0.7.5"), RuleRaftProtocol07
		reason = "only adjacent Raft protocols interoperate (<= 0.6 speak 0, 0.7 speaks 1, 0.8 speaks 1-3): servers pass through 0.7.5"
	case lessThan(c, v085) && !lessThan(tc, v124):
		// 0.7.x joins the 1.2.4 path through 0.8.5 as well: it speaks Raft
		// protocol 1, which 0.8 still speaks.
		next, rule = mustVersion("0.8.5"), RuleDedicated124
		reason = "the dedicated path to 1.2.4 starts at 0.8.5: servers on 0.8.0-0.8.4 (and older) go to 0.8.5 first"
	case between(c, v085, v124) && !lessThan(tc, v124):
		next, rule = v124, RuleDedicated124
		reason = "dedicated path: 0.8.5-1.2.3 go straight to 1.2.4"
	case between(c, v169, v1819) && !lessThan(tc, v1819):
		next, rule = v1819, RuleDedicated1819
		reason = "dedicated path: 1.6.9-1.8.18 go straight to 1.8.19"
	case between(c, v124, v1610) && !lessThan(tc, v1610):
		next, rule = v1610, RuleDedicated1610
		reason = "dedicated path: 1.2.4-1.6.9 go straight to 1.6.10 (legacy ACL tokens are migrated on 1.6.x)"
	case pol.Enterprise && between(c, v190, v197) && !lessThan(tc, v1100):
		next, rule = mustVersion("1.9.17"), RuleEnterprise110
		reason = "Consul Enterprise reaches 1.10 only from 1.8.13+ or 1.9.7+ (licensing): servers go to 1.9.17 first"
	case between(c, v180, v1100) && !lessThan(tc, v1100):
		next, rule = v11012, RuleDedicated11012
		reason = "dedicated path: 1.8.0-1.9.17 go to 1.10.12"
		if lessThan(tc, v11012) {
			next = t
			reason = "dedicated path: 1.8.0-1.9.17 go to 1.10.x"
		}
	case pol.Enterprise && between(c, v1100, v1107) && !lessThan(tc, v1110):
		next, rule = v11012, RuleEnterprise1107
		reason = "Consul Enterprise 1.10.0-1.10.6 agents deregister their services once servers run 1.11+: everything goes to 1.10.12 first"
	}
	if next != nil {
		// Stones forced by a rule are still bounded by the majors rule,
		// except the dedicated paths, which are documented jumps.
		dedicated := rule == RuleDedicated124 || rule == RuleDedicated1610 || rule == RuleDedicated1819 || rule == RuleDedicated11012
		if dedicated || Majors(c, coreOf(next)) <= 2 {
			if !next.Equal(t) && !released(next, pol) {
				return nil, "", "", &ReleaseError{Need: next.Original(), Rule: rule, Reason: reason}
			}
			return next, rule, reason, nil
		}
		t = next
	}
	return majorsStone(cur, t, pol)
}

// lineName names minor line idx ("1.14").
func lineName(idx int) string {
	v := mustVersion(newestPatch[idx])
	if v == nil {
		return fmt.Sprintf("line %d", idx)
	}
	return fmt.Sprintf("%d.%d", v.Segments()[0], v.Segments()[1])
}

// released reports whether v is installable under pol.Releases (always,
// when the policy lists none).
func released(v *version.Version, pol Policy) bool {
	if len(pol.Releases) == 0 {
		return true
	}
	for _, r := range pol.Releases {
		if rv, err := ParseVersion(r); err == nil && rv.Equal(v) {
			return true
		}
	}
	return false
}

// stoneOnLine returns the stepping stone on minor line idx: the
// catalogue's newest patch, or with pol.Releases the newest listed release
// of that line that is a Consul release (an Enterprise-only patch counts on
// an Enterprise path; an in-house build listed there is never a stone) and
// that no known-bad rule names ("" when there is none).
func stoneOnLine(idx int, pol Policy) string {
	if len(pol.Releases) == 0 {
		return newestPatch[idx]
	}
	var best *version.Version
	for _, r := range pol.Releases {
		v, err := ParseVersion(r)
		if err != nil || minorIndex(coreOf(v)) != idx || knownBadRelease(v) || classifyRelease(v, pol.Enterprise, nil) == releaseUnknown {
			continue
		}
		if best == nil || lessThan(best, v) {
			best = v
		}
	}
	if best == nil {
		return ""
	}
	return best.Original()
}

// knownBadRelease reports whether a known-bad rule of the catalogue names
// v as a target, whatever the cluster's features: the planner never picks
// such a stone itself.
func knownBadRelease(v *version.Version) bool {
	for _, b := range builtins {
		if strings.HasPrefix(string(b.ID), "known-bad-") && len(b.to) > 0 && b.to.Check(v) {
			return true
		}
	}
	return false
}

// majorsStone applies the max-majors-per-hop rule on the way to t.
func majorsStone(cur, t *version.Version, pol Policy) (*version.Version, RuleID, string, error) {
	c, tc := coreOf(cur), coreOf(t)
	ci, ti := minorIndex(c), minorIndex(tc)
	if ti-ci <= 2 {
		return t, "", fmt.Sprintf("final hop: %d major(s), within %s (at most 2)", ti-ci, RuleMaxMajors), nil
	}
	if pol.Enterprise && ltsLine(ci) && ltsLine(ci+3) {
		if ti == ci+3 {
			return t, RuleMaxMajors, "Enterprise LTS to LTS: up to 3 majors in one hop", nil
		}
		if s := stoneOnLine(ci+3, pol); s != "" {
			return mustVersion(s), RuleMaxMajors, fmt.Sprintf("Enterprise LTS to LTS: %s is the next long-term support line (3 majors)", s), nil
		}
	}
	for step := 2; step >= 1; step-- {
		if s := stoneOnLine(ci+step, pol); s != "" {
			known := "known to the catalogue"
			if len(pol.Releases) > 0 {
				known = "among the policy's releases"
			}
			return mustVersion(s), RuleMaxMajors, fmt.Sprintf("%s -> %s jumps %d majors (at most 2 per hop): stop at %s, the newest %d.%d patch %s",
				c, tc, ti-ci, s, mustVersion(s).Segments()[0], mustVersion(s).Segments()[1], known), nil
		}
	}
	if len(pol.Releases) > 0 {
		return nil, "", "", &ReleaseError{Need: lineName(ci+2) + ".x or " + lineName(ci+1) + ".x", Rule: RuleMaxMajors,
			Reason: fmt.Sprintf("%s -> %s jumps %d majors (at most 2 per hop)", c, tc, ti-ci)}
	}
	return t, "", "final hop to the target (no known stone between)", nil
}
