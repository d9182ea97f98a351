package planner

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// allRuleCases is every case TestEveryRule runs: ruleCases and the cases of
// the release catalogue's rule.
func allRuleCases() []ruleCase {
	return append(ruleCases(), releaseRuleCases()...)
}

func releaseRuleCases() []ruleCase {
	listed := func(v string) func(*Cluster, *Policy) {
		return func(_ *Cluster, p *Policy) { p.Releases = []string{v} }
	}
	return []ruleCase{
		{"a version never released blocks (unknown-release)", PrecheckUnknownRelease, "1.12.9", "1.13.99", true, Blocking, nil},
		{"a pre-release blocks (unknown-release)", PrecheckUnknownRelease, "1.20.6", "1.21.0-rc1", true, Blocking, nil},
		{"a release newer than the catalogue blocks (unknown-release)", PrecheckUnknownRelease, "1.21.5", "1.22.0", true, Blocking, nil},
		{"an in-house build listed in the policy's releases is reported as info (unknown-release)", PrecheckUnknownRelease, "1.12.9", "1.13.99", true, Info, listed("1.13.99")},
		{"an Enterprise-only patch is reported as info (unknown-release)", PrecheckUnknownRelease, "1.19.2+ent", "1.19.10+ent", true, Info, nil},
		{"a released target passes (unknown-release)", PrecheckUnknownRelease, "1.12.9", "1.13.9", false, "", nil},
		{"an Enterprise build of a release passes (unknown-release)", PrecheckUnknownRelease, "1.12.9+ent", "1.13.9+ent", false, "", nil},
	}
}

func TestReleasesAreTheCatalogueAscending(t *testing.T) {
	rel := Releases()
	if rel[0] != "0.1.0" || rel[len(rel)-1] != NewestRelease() || NewestRelease() != "1.21.5" {
		t.Fatalf("Releases runs %s .. %s (NewestRelease %s), want 0.1.0 .. 1.21.5", rel[0], rel[len(rel)-1], NewestRelease())
	}
	for i, r := range rel {
		v, err := ParseVersion(r)
		if err != nil || v.Prerelease() != "" || v.Metadata() != "" {
			t.Fatalf("release %q is not a plain X.Y.Z: %v", r, err)
		}
		if !IsRelease(r) {
			t.Errorf("IsRelease(%s) = false for a catalogued release", r)
		}
		if i > 0 && !mustVersion(rel[i-1]).LessThan(v) {
			t.Errorf("releases not strictly ascending: %s then %s", rel[i-1], r)
		}
	}
	rel[0] = "changed"
	if Releases()[0] != "0.1.0" {
		t.Error("Releases returned shared storage")
	}
	// Known facts of the history: no 1.0.4; 0.9.4 exists; 1.13 ends at 1.13.9.
	for s, want := range map[string]bool{"1.0.4": false, "0.9.4": true, "1.13.9": true, "1.13.10": false, "1.0.3": true, "1.0.5": true, "1.13.9+ent": true, "1.14.0-rc1": false} {
		if got := IsRelease(s); got != want {
			t.Errorf("IsRelease(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestNewestPatchIsEachLinesNewestRelease(t *testing.T) {
	lines := map[int]bool{}
	for _, l := range releaseLines {
		idx := minorIndex(mustVersion(l.version(0)))
		lines[idx] = true
		if got := newestPatch[idx]; got != l.newest() {
			t.Errorf("newestPatch[%d] = %q, want %s, the newest %s release of the release catalogue", idx, got, l.newest(), l.name())
		}
	}
	for idx, s := range newestPatch {
		if !lines[idx] || !IsRelease(s) {
			t.Errorf("newestPatch[%d] = %s is not a release of the catalogue", idx, s)
		}
	}
}

func TestPathStonesAreReleases(t *testing.T) {
	rel := Releases()
	for _, pol := range []Policy{{}, {Enterprise: true}} {
		for i := 0; i < len(rel); i += 2 {
			for j := i + 1; j < len(rel); j += 7 {
				hops, err := Path(rel[i], rel[j], pol)
				if err != nil {
					t.Fatalf("Path(%s, %s, enterprise=%v): %v", rel[i], rel[j], pol.Enterprise, err)
				}
				for _, h := range hops {
					if !IsRelease(h.To) {
						t.Fatalf("Path(%s, %s, enterprise=%v) stops at %s (rule %s), which is not a Consul release", rel[i], rel[j], pol.Enterprise, h.To, h.Rule)
					}
				}
			}
		}
	}
}

func TestAnInHouseBuildListedInReleasesIsNeverAStone(t *testing.T) {
	// 1.14.99 is newer than 1.14.11 on the stone's line: listed, it would
	// be the newest 1.14 release, but it is not a Consul release.
	pol := Policy{Releases: []string{"1.14.99", "1.14.8", "1.16.7"}}
	hops, err := Path("1.12.9", "1.16.7", pol)
	if err != nil {
		t.Fatal(err)
	}
	if got := hopsText(hops); got != "1.12.9->1.14.8, 1.14.8->1.16.7" {
		t.Fatalf("Path(1.12.9, 1.16.7) with releases %v = %s, want the stone 1.14.8", pol.Releases, got)
	}
}

func hopsText(hops []Hop) string {
	var parts []string
	for _, h := range hops {
		parts = append(parts, h.From+"->"+h.To)
	}
	return strings.Join(parts, ", ")
}

func TestCheckReleaseNamesTheNearestReleases(t *testing.T) {
	tests := []struct {
		name, target string
		pol          Policy
		reason       string   // "" when the target is accepted
		nearest      []string //
	}{
		{"a patch past the end of its line", "1.13.99", Policy{}, "the 1.13 line ends at 1.13.9", []string{"1.13.9", "1.14.0"}},
		{"a patch never released inside its line", "1.0.4", Policy{}, "1.0.4 was never released (the 1.0 line has 1.0.0 to 1.0.8 without it)", []string{"1.0.3", "1.0.5"}},
		{"a line that never existed", "0.10.0", Policy{}, "there is no 0.10 line", []string{"0.9.4", "1.0.0"}},
		{"a release newer than the catalogue", "1.22.0", Policy{}, "it is newer than the release catalogue, whose newest release is 1.21.5 (current to October 2025); if 1.22.0 was released since, list it in Policy.Releases", []string{"1.21.5"}},
		{"a pre-release of a release", "1.21.0-rc1", Policy{}, "it is a pre-release (-rc1); the catalogue lists final releases only, and 1.21.0 is one", []string{"1.20.6", "1.21.0"}},
		{"an Enterprise-only patch without Enterprise", "1.19.10", Policy{}, "the 1.19 line ends at 1.19.2", []string{"1.19.2", "1.20.0"}},
		{"an Enterprise patch on a line before 1.15", "1.13.10+ent", Policy{}, "the 1.13 line ends at 1.13.9", []string{"1.13.9", "1.14.0"}},
		{"a release", "1.13.9", Policy{}, "", nil},
		{"an Enterprise build of a release", "1.13.9+ent", Policy{}, "", nil},
		{"an Enterprise-only patch of an Enterprise target", "1.19.10+ent", Policy{}, "", nil},
		{"an Enterprise-only patch under an Enterprise policy", "1.19.10", Policy{Enterprise: true}, "", nil},
		{"an in-house build the policy lists", "1.13.99", Policy{Releases: []string{"1.13.99"}}, "", nil},
		{"a waived unknown release", "1.13.99", Policy{Waive: []RuleID{PrecheckUnknownRelease}}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRelease(tc.target, tc.pol)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("CheckRelease(%s) = %v, want nil", tc.target, err)
				}
				return
			}
			var ue *UnknownReleaseError
			if !errors.As(err, &ue) {
				t.Fatalf("CheckRelease(%s) = %v (%T), want an *UnknownReleaseError", tc.target, err, err)
			}
			if ue.Value != tc.target || ue.Reason != tc.reason || !reflect.DeepEqual(ue.Nearest, tc.nearest) {
				t.Errorf("CheckRelease(%s) = %+v, want reason %q, nearest %v", tc.target, *ue, tc.reason, tc.nearest)
			}
		})
	}
}

func TestCheckReleaseRefusesWhatIsNotAVersionOrBeyondTheCatalogue(t *testing.T) {
	var ve *VersionError
	if err := CheckRelease("v1.13.9", Policy{}); !errors.As(err, &ve) {
		t.Errorf("CheckRelease(v1.13.9) = %v, want a *VersionError", err)
	}
	var ue *UnsupportedVersionError
	if err := CheckRelease("2.0.0", Policy{}); !errors.As(err, &ue) {
		t.Errorf("CheckRelease(2.0.0) = %v, want an *UnsupportedVersionError", err)
	}
}

func TestUnknownReleaseErrorNamesValueReasonNearestAndFix(t *testing.T) {
	err := CheckRelease("1.13.99", Policy{})
	want := "1.13.99 is not a Consul release: the 1.13 line ends at 1.13.9; nearest: 1.13.9, 1.14.0 (unknown-release: the catalogue knows the releases 0.1.0 to 1.21.5); target a release, list an in-house build in Policy.Releases, or waive unknown-release"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
}

func TestPlanNextAndPathRefuseATargetThatIsNotARelease(t *testing.T) {
	c := baseCluster("1.12.9")
	_, perr := Plan(c, "1.13.99", Policy{})
	_, nerr := Next(c, "1.13.99", Policy{})
	_, herr := Path("1.12.9", "1.13.99", Policy{})
	for name, err := range map[string]error{"Plan": perr, "Next": nerr, "Path": herr} {
		var ue *UnknownReleaseError
		if !errors.As(err, &ue) {
			t.Errorf("%s(..., 1.13.99) = %v, want an error reaching an *UnknownReleaseError", name, err)
			continue
		}
		if !reflect.DeepEqual(ue.Nearest, []string{"1.13.9", "1.14.0"}) {
			t.Errorf("%s: nearest = %v, want [1.13.9 1.14.0]", name, ue.Nearest)
		}
	}
	var re *RefusedError
	if !errors.As(perr, &re) || len(re.Findings) != 1 || re.Findings[0].Rule != PrecheckUnknownRelease || re.Findings[0].Node != "target" {
		t.Fatalf("Plan refusal = %v, want one unknown-release finding on the target", perr)
	}
	if msg := re.Findings[0].String(); !strings.Contains(msg, "target 1.13.99 is not a Consul release: the 1.13 line ends at 1.13.9; nearest: 1.13.9, 1.14.0") {
		t.Errorf("finding = %s, want the line's end and the nearest releases", msg)
	}
}

func TestAWaivedOrListedUnknownTargetIsPlanned(t *testing.T) {
	c := baseCluster("1.12.9")
	p, err := Plan(c, "1.13.99", Policy{Waive: []RuleID{PrecheckUnknownRelease}})
	if err != nil {
		t.Fatalf("Plan with unknown-release waived = %v", err)
	}
	if fs := findRule(p.Findings, PrecheckUnknownRelease); len(fs) != 1 || !fs[0].Waived || fs[0].Severity != Blocking {
		t.Errorf("waived plan's unknown-release findings = %+v, want one, blocking and waived", fs)
	}
	p, err = Plan(c, "1.13.99", Policy{Releases: []string{"1.13.99"}})
	if err != nil {
		t.Fatalf("Plan with 1.13.99 in Policy.Releases = %v", err)
	}
	if fs := findRule(p.Findings, PrecheckUnknownRelease); len(fs) != 1 || fs[0].Severity != Info {
		t.Errorf("listed plan's unknown-release findings = %+v, want one, info", fs)
	}
	if len(p.Path) != 1 || p.Path[0].To != "1.13.99" {
		t.Errorf("listed plan's path = %v, want one hop to 1.13.99", p.Path)
	}
}
