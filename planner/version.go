package planner

import (
	"errors"
	"fmt"

	version "github.com/hashicorp/go-version"
)

// ParseVersion parses a Consul version in its one canonical spelling, the
// one release pages, serf build tags and download URLs use: X.Y.Z without
// leading zeros, optionally followed by a pre-release and build metadata
// ("1.12.9", "1.13.0-rc1", "1.10.12+ent"). Anything else ("", "latest",
// "1.12", "v1.12.9", "1.13.09", " 1.12.9") yields a *VersionError (with Node
// "") whose text names the fix, e.g. "write it as 1.13.9". The upgrade
// runner and the transports judge versions with the same parser, so a
// version the planner accepts is never refused halfway through a run.
//
// Comparisons of the returned version ignore build metadata: 1.10.12+ent
// equals 1.10.12.
func ParseVersion(s string) (*version.Version, error) {
	v, err := parseVersion(s)
	if err != nil {
		return nil, &VersionError{Value: s, Err: err}
	}
	return v, nil
}

// parseVersion does the work of ParseVersion with a plain error. A known
// release (canonical by construction) is not parsed again.
func parseVersion(s string) (*version.Version, error) {
	if v, ok := knownVersions[s]; ok {
		return v, nil
	}
	cv, err := parseSpelling(s)
	if err != nil {
		return nil, err
	}
	return version.NewVersion(cv.String())
}

// SameVersion reports whether a and b both parse and name the same release,
// ignoring build metadata: a server on 1.10.12+ent is on a 1.10.12 step, and
// an agent reporting 1.10.12+ent runs 1.10.12; 1.14.0-rc1 and 1.14.0 are not
// the same release. It is the one comparison of version strings in the
// module: the runner and every transport use it, not ==, when checking what
// an agent or a binary reports against a step's version.
func SameVersion(a, b string) bool {
	va, err := parseSpelling(a)
	if err != nil {
		return false
	}
	vb, err := parseSpelling(b)
	return err == nil && va.SameRelease(vb)
}

// IsEnterprise reports whether s parses and is a Consul Enterprise build:
// its build metadata starts with "ent" (1.10.12+ent, 1.15.2+ent.fips1402).
func IsEnterprise(s string) bool {
	v, err := parseSpelling(s)
	return err == nil && v.Enterprise()
}

// minorIndex numbers Consul's "major" versions (the second digit) on one
// scale: 0.x is x, 1.x is 10+x, so 0.9 -> 1.0 is one step. 2.x and later
// (IBM numbering) are placed after every 1.x.
func minorIndex(v *version.Version) int {
	s := v.Segments()
	switch s[0] {
	case 0:
		return s[1]
	case 1:
		return 10 + s[1]
	default:
		return 1000*s[0] + s[1]
	}
}

// Majors returns the number of Consul "major" steps from one version to
// another. Consul's major is the second digit (1.14 -> 1.15 is one major),
// and 0.9 -> 1.0 counts as one. It is negative when to is older than from.
func Majors(from, to *version.Version) int {
	if from == nil || to == nil {
		return 0
	}
	return minorIndex(to) - minorIndex(from)
}

// stopModeCutover is the first version whose servers default to staying in
// the cluster on SIGTERM (leave_on_terminate became role dependent in 0.7.0).
var stopModeCutover = version.Must(version.NewVersion("0.7.0"))

// DefaultStopMode returns how an agent of the given role ("server" or
// "client") is stopped for an in-place swap from one version to another.
// Servers below 0.7.0 are killed (SIGKILL), as in the 2015 story: whether
// SIGTERM made them leave depended on their leave_on_terminate setting, and
// SIGKILL never leaves. From 0.7.0 servers default to staying members on
// SIGTERM, so they are terminated and shut down cleanly (set the policy's
// StopMode to kill where leave_on_terminate was turned on). Clients default
// to leaving on SIGTERM from 0.7.0, and an in-place swap must not
// deregister their services, so they are killed. An unparseable from
// version yields StopKill, the mode that never leaves.
func DefaultStopMode(role string, from, to string) StopMode {
	if role != "server" {
		return StopKill
	}
	v, err := parseVersion(from)
	if err != nil {
		return StopKill
	}
	if coreOf(v).LessThan(stopModeCutover) {
		return StopKill
	}
	return StopTerminate
}

// VersionCache parses version strings once each. Agents of a cluster mostly
// share a handful of version strings, so a cache keeps parsing cheap over
// 100,000 clients. The zero value is ready to use; a VersionCache is meant to
// live for one call and is not safe for concurrent use.
type VersionCache struct {
	m map[string]cachedVersion
}

type cachedVersion struct {
	v    *version.Version // the parsed version, nil on error
	core *version.Version // v without prerelease and metadata
	err  error
}

// Parse parses s like ParseVersion, once per distinct string.
func (vc *VersionCache) Parse(s string) (*version.Version, error) {
	e := vc.entry(s)
	return e.v, e.err
}

// entry returns the cached parse of s, parsing it on first use.
func (vc *VersionCache) entry(s string) cachedVersion {
	if e, ok := vc.m[s]; ok {
		return e
	}
	if vc.m == nil {
		vc.m = make(map[string]cachedVersion, 8)
	}
	var e cachedVersion
	e.v, e.err = ParseVersion(s)
	if e.err == nil {
		e.core = coreOf(e.v)
	}
	vc.m[s] = e
	return e
}

// MinServerVersion returns the lowest version that a server of c runs. It
// fails when c has no servers, or with a *VersionError naming the first
// server whose version does not parse.
func MinServerVersion(c *Cluster) (*version.Version, error) {
	if c == nil || len(c.Servers) == 0 {
		return nil, errors.New("cluster has no servers: at least one server is needed to read the running version; add the servers to the snapshot")
	}
	var vc VersionCache
	var lowest *version.Version
	for _, s := range c.Servers {
		v, err := vc.Parse(s.Version)
		if err != nil {
			var ve *VersionError
			if errors.As(err, &ve) {
				return nil, &VersionError{Node: s.Name, Value: s.Version, Err: ve.Err}
			}
			return nil, err
		}
		if lowest == nil || v.LessThan(lowest) {
			lowest = v
		}
	}
	return lowest, nil
}

// UnsupportedVersionError reports a version the planner has no rules for:
// from 2.0.0 on Consul uses IBM Version-Modification-Fix numbering, where
// "major = second digit" and the two-majors rule are not known to hold.
type UnsupportedVersionError struct {
	Value string
	Limit string
}

func (e *UnsupportedVersionError) Error() string {
	return fmt.Sprintf("version %s is not supported (limit: %s; from 2.0.0 Consul uses IBM version-modification-fix numbering and the catalogue has no rules for it); plan to the newest 1.x first", e.Value, e.Limit)
}

// maxSupported is the first version the planner refuses.
var maxSupported = version.Must(version.NewVersion("2.0.0"))

// mustVersion parses a version known at compile time. It is only used on
// literals of this package, which the tests parse, and on versions built
// from parsed ones.
func mustVersion(s string) *version.Version {
	if v, ok := knownVersions[s]; ok {
		return v
	}
	v, err := version.NewVersion(s)
	if err != nil {
		return nil
	}
	return v
}

// knownVersions are the releases of the catalogue, parsed once when the
// package is initialised and never written after: go-version parses with a
// regular expression, and a plan asks for the same few versions (the
// agents', the stones', the rules' own) again and again. The versions are
// shared and never modified.
var knownVersions = func() map[string]*version.Version {
	m := make(map[string]*version.Version, len(releaseList))
	for _, r := range releaseList {
		if v, err := version.NewVersion(r); err == nil {
			m[r] = v
		}
	}
	return m
}()

// coreOf is v.Core() (v without pre-release and metadata): v itself when
// it has neither, a known release when its core is one, else parsed.
func coreOf(v *version.Version) *version.Version {
	seg := v.Segments64()
	if len(seg) == 3 && v.Prerelease() == "" && v.Metadata() == "" {
		return v
	}
	if len(seg) >= 3 {
		if k, ok := knownVersions[fmt.Sprintf("%d.%d.%d", seg[0], seg[1], seg[2])]; ok {
			return k
		}
	}
	return v.Core()
}

// compareVersions is a.Compare(b) without the allocations of go-version's
// Compare, which formats both versions first: release versions compare by
// their segments (metadata ignored, as go-version does), others by
// go-version.
func compareVersions(a, b *version.Version) int {
	sa, ra := releaseSegments(a)
	sb, rb := releaseSegments(b)
	if !ra || !rb {
		return a.Compare(b)
	}
	for i := range sa {
		switch {
		case sa[i] < sb[i]:
			return -1
		case sa[i] > sb[i]:
			return 1
		}
	}
	return 0
}

// lessThan is a.LessThan(b) by compareVersions.
func lessThan(a, b *version.Version) bool { return compareVersions(a, b) < 0 }

// releaseSegments returns v's segments when v is a release version (three
// segments, no pre-release; metadata allowed).
func releaseSegments(v *version.Version) ([3]int64, bool) {
	if v == nil || v.Prerelease() != "" {
		return [3]int64{}, false
	}
	seg := v.Segments64()
	if len(seg) != 3 {
		return [3]int64{}, false
	}
	return [3]int64{seg[0], seg[1], seg[2]}, true
}
