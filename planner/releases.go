package planner

import (
	"fmt"
	"strings"

	version "github.com/hashicorp/go-version"
)

// PrecheckUnknownRelease is the rule of a target that is not a Consul
// release: a version nobody can install (1.13.99), a pre-release, or a
// release newer than the catalogue. Blocking; waivable by this ID.
const PrecheckUnknownRelease = "unknown-release"

// urlReleases is where Consul's releases (CE and Enterprise) are published.
const urlReleases = "https://releases.hashicorp.com/consul/"

// releaseLine is one minor line of Consul releases: patches 0 to Last,
// except those in Missing.
type releaseLine struct {
	Major, Minor int
	Last         int
	Missing      []int
}

// releaseLines is the release catalogue: every Consul release, that is
// every vX.Y.Z tag of github.com/hashicorp/consul (pre-releases excluded),
// from 0.1.0 to the end of the 1.21 line, the newest line the rules
// catalogue (catalogue.go, from the rules reference) covers.
//
// Where it comes from, and until when it is current:
//   - 0.1.0 to 1.12.9: the release headings of CHANGELOG.md in the v1.12.9
//     source (from the Go module proxy); the only gap is 1.0.4, which was
//     never released (1.0.3 was followed by 1.0.5).
//   - 1.9.17, 1.10.10-1.10.12, 1.11.6-1.11.11 and the 1.13 and 1.14 lines:
//     the CHANGELOG.md of hashicorp/consul main as of December 2023 (its
//     headings end at 1.17.1, 1.16.4, 1.15.8 and 1.14.11, the last 1.14).
//   - 1.15 to 1.20.5: the module versions of github.com/hashicorp/consul
//     (its tags), as deps.dev lists them from the Go module proxy; `go list
//     -m -versions github.com/hashicorp/consul` lists none, because the
//     proxy's list endpoint for this module is empty, though it serves each
//     tag. 1.19.1 is not among them but was released (its tag and release
//     notes exist).
//   - 1.20.6 and 1.21.0-1.21.5: releases.hashicorp.com/consul and the
//     distributions that package Consul CE per line (the 1.21 packages end at
//     1.21.5 when 1.22.0 came out in October 2025).
//
// So the catalogue is current to October 2025. Releases after that (1.22.x,
// and 2.0.0 on, which the planner refuses anyway) are beyond it: a target
// there is refused by PrecheckUnknownRelease until it is added here, listed
// in Policy.Releases or waived. Consul Enterprise shares CE's numbers and,
// from the 1.15 line on, has patches of its own after CE's last (e.g.
// 1.19.3+ent to 1.19.10+ent, 1.20.7+ent, 1.21.7+ent), which are not public
// tags: see entOnlyFrom. newestPatch (path.go) must name each line's Last
// (TestNewestPatchIsEachLinesNewestRelease).
var releaseLines = []releaseLine{
	{0, 1, 0, nil},
	{0, 2, 1, nil},
	{0, 3, 1, nil},
	{0, 4, 1, nil},
	{0, 5, 2, nil},
	{0, 6, 4, nil},
	{0, 7, 5, nil},
	{0, 8, 5, nil},
	{0, 9, 4, nil},
	{1, 0, 8, []int{4}},
	{1, 1, 1, nil},
	{1, 2, 4, nil},
	{1, 3, 1, nil},
	{1, 4, 5, nil},
	{1, 5, 3, nil},
	{1, 6, 10, nil},
	{1, 7, 14, nil},
	{1, 8, 19, nil},
	{1, 9, 17, nil},
	{1, 10, 12, nil},
	{1, 11, 11, nil},
	{1, 12, 9, nil},
	{1, 13, 9, nil},
	{1, 14, 11, nil},
	{1, 15, 11, nil},
	{1, 16, 7, nil},
	{1, 17, 4, nil},
	{1, 18, 2, nil},
	{1, 19, 2, nil},
	{1, 20, 6, nil},
	{1, 21, 5, nil},
}

// entOnlyFrom is the first line (1.15, the first Enterprise long-term
// support line) on which Consul Enterprise has patch releases of its own
// after CE's last: an Enterprise target (+ent, or Policy.Enterprise) with a
// higher patch on such a line is accepted with an Info finding, since no
// public tag can confirm or refuse it.
var entOnlyFrom = releaseLine{Major: 1, Minor: 15}

func (l releaseLine) name() string { return fmt.Sprintf("%d.%d", l.Major, l.Minor) }

func (l releaseLine) version(patch int) string {
	return fmt.Sprintf("%d.%d.%d", l.Major, l.Minor, patch)
}

func (l releaseLine) has(patch int) bool {
	if patch < 0 || patch > l.Last {
		return false
	}
	for _, m := range l.Missing {
		if m == patch {
			return false
		}
	}
	return true
}

// newest is the line's newest release.
func (l releaseLine) newest() string { return l.version(l.Last) }

// before reports whether line l comes before major.minor.
func (l releaseLine) before(major, minor int) bool {
	return l.Major < major || (l.Major == major && l.Minor < minor)
}

// releaseList is every release of the catalogue, ascending, built once.
var releaseList = func() []string {
	var out []string
	for _, l := range releaseLines {
		for p := 0; p <= l.Last; p++ {
			if l.has(p) {
				out = append(out, l.version(p))
			}
		}
	}
	return out
}()

// Releases returns every Consul release the catalogue knows, ascending (a
// fresh copy each call): the vX.Y.Z tags of github.com/hashicorp/consul from
// 0.1.0 to the end of the 1.21 line, without pre-releases.
func Releases() []string { return append([]string(nil), releaseList...) }

// NewestRelease is the newest release the catalogue knows.
func NewestRelease() string { return releaseList[len(releaseList)-1] }

// findLine returns the catalogue's line major.minor.
func findLine(major, minor int) (releaseLine, bool) {
	for _, l := range releaseLines {
		if l.Major == major && l.Minor == minor {
			return l, true
		}
	}
	return releaseLine{}, false
}

// IsRelease reports whether s parses and its core (build metadata ignored,
// so 1.13.9+ent counts) is a release the catalogue knows. A pre-release is
// not a release.
func IsRelease(s string) bool {
	v, err := parseVersion(s)
	return err == nil && isRelease(v)
}

func isRelease(v *version.Version) bool {
	if v.Prerelease() != "" {
		return false
	}
	s := v.Segments()
	l, ok := findLine(s[0], s[1])
	return ok && l.has(s[2])
}

// releaseKind is what the catalogue says of a target.
type releaseKind int

const (
	releaseKnown   releaseKind = iota // a catalogued release
	releaseEntOnly                    // an Enterprise-only patch after CE's last (entOnlyFrom)
	releaseListed                     // not a release, but Policy.Releases lists it (an in-house build)
	releaseUnknown                    // none of these
)

// classifyRelease says what v is for an Enterprise run (ent) under the
// policy's releases.
func classifyRelease(v *version.Version, ent bool, pol *Policy) releaseKind {
	if isRelease(v) {
		return releaseKnown
	}
	s := v.Segments()
	if ent && v.Prerelease() == "" {
		if l, ok := findLine(s[0], s[1]); ok && !l.before(entOnlyFrom.Major, entOnlyFrom.Minor) && s[2] > l.Last {
			return releaseEntOnly
		}
	}
	if pol != nil {
		for _, r := range pol.Releases {
			if rv, err := parseVersion(r); err == nil && rv.Equal(v) && rv.Prerelease() == v.Prerelease() {
				return releaseListed
			}
		}
	}
	return releaseUnknown
}

// UnknownReleaseError reports a target that is not a Consul release: it
// names the value, why it is not one, and the nearest releases. Path and
// CheckRelease return it; errors.As reaches it through the *RefusedError of
// Next and Plan.
type UnknownReleaseError struct {
	// Value is the version as given.
	Value string
	// Reason says why it is not a release, e.g. "the 1.13 line ends at
	// 1.13.9".
	Reason string
	// Nearest are the releases nearest to Value: the one below and the one
	// above, when there are.
	Nearest []string
}

func (e *UnknownReleaseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is not a Consul release: %s", e.Value, e.Reason)
	if len(e.Nearest) > 0 {
		fmt.Fprintf(&b, "; nearest: %s", strings.Join(e.Nearest, ", "))
	}
	fmt.Fprintf(&b, " (%s: the catalogue knows the releases 0.1.0 to %s); target a release, list an in-house build in Policy.Releases, or waive %s", PrecheckUnknownRelease, NewestRelease(), PrecheckUnknownRelease)
	return b.String()
}

// unknownRelease explains why v (spelt raw) is not a release.
func unknownRelease(raw string, v *version.Version) *UnknownReleaseError {
	e := &UnknownReleaseError{Value: raw}
	core := coreOf(v)
	s := core.Segments()
	l, lineKnown := findLine(s[0], s[1])
	newest := releaseLines[len(releaseLines)-1]
	switch {
	case v.Prerelease() != "":
		e.Reason = fmt.Sprintf("it is a pre-release (-%s); the catalogue lists final releases only", v.Prerelease())
		if isRelease(core) {
			e.Reason += fmt.Sprintf(", and %s is one", core)
		}
	case lineKnown && s[2] > l.Last:
		e.Reason = fmt.Sprintf("the %s line ends at %s", l.name(), l.newest())
	case lineKnown:
		e.Reason = fmt.Sprintf("%s was never released (the %s line has %s to %s without it)", core, l.name(), l.version(0), l.newest())
	case newest.before(s[0], s[1]):
		e.Reason = fmt.Sprintf("it is newer than the release catalogue, whose newest release is %s (current to October 2025); if %s was released since, list it in Policy.Releases", newest.newest(), core)
	default:
		e.Reason = fmt.Sprintf("there is no %d.%d line", s[0], s[1])
	}
	e.Nearest = nearestReleases(core)
	return e
}

// nearestReleases returns the newest release below core and the oldest at
// or above it (core itself when it is a release: a pre-release's release).
func nearestReleases(core *version.Version) []string {
	var below, above string
	for _, r := range releaseList {
		rv := mustVersion(r)
		if rv.LessThan(core) {
			below = r
			continue
		}
		above = r
		break
	}
	var out []string
	for _, r := range []string{below, above} {
		if r != "" {
			out = append(out, r)
		}
	}
	return out
}

// CheckRelease returns nil when target may be installed: a release the
// catalogue knows (build metadata ignored), an Enterprise-only patch of a
// line from 1.15 on when the target or the policy is Enterprise, a version
// pol.Releases lists (an in-house build or a release newer than the
// catalogue), or anything once pol.Waive lists PrecheckUnknownRelease.
// Otherwise it returns an *UnknownReleaseError naming the nearest releases
// (or a *VersionError when target does not parse).
func CheckRelease(target string, pol Policy) error {
	v, err := ParseVersion(target)
	if err != nil {
		return err
	}
	for _, id := range pol.Waive {
		if id == PrecheckUnknownRelease {
			return nil
		}
	}
	if !coreOf(v).LessThan(maxSupported) {
		return &UnsupportedVersionError{Value: target, Limit: "< " + maxSupported.String()}
	}
	if classifyRelease(v, pol.Enterprise || enterpriseBuild(target), &pol) != releaseUnknown {
		return nil
	}
	return unknownRelease(target, v)
}

// checkRelease is the PrecheckUnknownRelease evaluator: the target must be
// a release (see CheckRelease). Enterprise-only patches and versions the
// policy lists are reported as Info.
func (k *checker) checkRelease(r *compiled) {
	if k.target == nil || !k.targetCore.LessThan(maxSupported) {
		return // bad-version and the unsupported check report these
	}
	limit := "a release 0.1.0-" + NewestRelease()
	switch classifyRelease(k.target, k.pol.Enterprise, k.pol) {
	case releaseKnown:
	case releaseEntOnly:
		s := k.targetCore.Segments()
		l, _ := findLine(s[0], s[1])
		k.add(-1, r, Info, "target", k.targetRaw, limit, fmt.Sprintf("target %s is an Enterprise-only patch (Consul CE's %s line ends at %s, and Enterprise patches after it are not public tags): make sure %s has it",
			k.targetRaw, l.name(), l.newest(), urlReleases))
	case releaseListed:
		k.add(-1, r, Info, "target", k.targetRaw, limit, fmt.Sprintf("target %s is not a Consul release the catalogue knows, and Policy.Releases lists it (an in-house build, or a release newer than the catalogue): it is installed as listed",
			k.targetRaw))
	default:
		e := unknownRelease(k.targetRaw, k.target)
		msg := fmt.Sprintf("target %s is not a Consul release: %s", k.targetRaw, e.Reason)
		if len(e.Nearest) > 0 {
			msg += "; nearest: " + strings.Join(e.Nearest, ", ")
		}
		k.add(-1, r, Blocking, "target", k.targetRaw, limit, msg)
	}
}
