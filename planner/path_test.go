package planner

import (
	"errors"
	"strings"
	"testing"
)

// hopsString renders a path as "a->b, b->c" for comparisons.
func hopsString(hops []Hop) string {
	parts := make([]string, len(hops))
	for i, h := range hops {
		parts[i] = h.From + "->" + h.To
	}
	return strings.Join(parts, ", ")
}

func TestPath(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
		pol      Policy
		want     string
	}{
		{"1.3.1 to 1.12 follows the documented chain of dedicated paths (dedicated-path-1.6.10, -1.8.19, -1.10.12)",
			"1.3.1", "1.12.9", Policy{}, "1.3.1->1.6.10, 1.6.10->1.8.19, 1.8.19->1.10.12, 1.10.12->1.12.9"},
		{"0.4.1 to 0.5.2 is one hop: the target itself runs the BoltDB migrator (raft-boltdb-migration-0.5.1)",
			"0.4.1", "0.5.2", Policy{}, "0.4.1->0.5.2"},
		{"0.4.1 to 0.7.5 boots 0.5.2 once before 0.6+ (raft-boltdb-migration-0.5.1)",
			"0.4.1", "0.7.5", Policy{}, "0.4.1->0.5.2, 0.5.2->0.7.5"},
		{"1.12.9 to 1.13.9 is a single one-major hop",
			"1.12.9", "1.13.9", Policy{}, "1.12.9->1.13.9"},
		{"1.10.12 to 1.15.0 stops every two majors at the newest known patch (max-majors-per-hop)",
			"1.10.12", "1.15.0", Policy{}, "1.10.12->1.12.9, 1.12.9->1.14.11, 1.14.11->1.15.0"},
		{"1.12 to 1.15 goes through 1.14 as the docs' worked example says (max-majors-per-hop)",
			"1.12.3", "1.15.2", Policy{}, "1.12.3->1.14.11, 1.14.11->1.15.2"},
		{"0.6 servers pass through 0.7.5 before 0.8 because Raft protocols must be adjacent (raft-protocol-adjacency-0.7)",
			"0.6.4", "0.8.5", Policy{}, "0.6.4->0.7.5, 0.7.5->0.8.5"},
		{"0.8.0-0.8.4 go to 0.8.5 before the dedicated 1.2.4 path (dedicated-path-1.2.4)",
			"0.8.2", "1.2.4", Policy{}, "0.8.2->0.8.5, 0.8.5->1.2.4"},
		{"1.6.9 goes straight to 1.8.19, skipping 1.6.10 (dedicated-path-1.8.19)",
			"1.6.9", "1.8.19", Policy{}, "1.6.9->1.8.19"},
		{"1.9.x to a 1.10 patch below 1.10.12 goes straight there (dedicated-path-1.10.12)",
			"1.9.3", "1.10.5", Policy{}, "1.9.3->1.10.5"},
		{"a target inside a dedicated destination line is reached directly when the majors rule allows",
			"1.5.1", "1.6.5", Policy{}, "1.5.1->1.6.5"},
		{"1.3.1 to 1.6.5 stops at 1.5.3 because 3 majors exceed the limit and 1.6.5 is below the dedicated 1.6.10",
			"1.3.1", "1.6.5", Policy{}, "1.3.1->1.5.3, 1.5.3->1.6.5"},
		{"Enterprise LTS 1.15 may jump three majors to LTS 1.18 (max-majors-per-hop)",
			"1.15.4", "1.18.1", Policy{Enterprise: true}, "1.15.4->1.18.1"},
		{"Consul CE may not jump three majors between LTS lines (max-majors-per-hop)",
			"1.15.4", "1.18.1", Policy{}, "1.15.4->1.17.4, 1.17.4->1.18.1"},
		{"Enterprise 1.9.0-1.9.6 go to 1.9.17 before 1.10 for licensing (enterprise-license-stone-1.10)",
			"1.9.3", "1.10.12", Policy{Enterprise: true}, "1.9.3->1.9.17, 1.9.17->1.10.12"},
		{"Enterprise 1.10.0-1.10.6 go to 1.10.12 before 1.11 (enterprise-1.10.7-before-1.11)",
			"1.10.2", "1.11.4", Policy{Enterprise: true}, "1.10.2->1.10.12, 1.10.12->1.11.4"},
		{"Consul CE 1.10.2 goes straight to 1.11 (enterprise-1.10.7-before-1.11 does not apply)",
			"1.10.2", "1.11.4", Policy{}, "1.10.2->1.11.4"},
		{"Enterprise metadata is accepted on the target",
			"1.12.9", "1.13.9+ent", Policy{}, "1.12.9->1.13.9+ent"},
		{"an Enterprise build makes the path Enterprise, and its stones carry the target's metadata (enterprise-license-stone-1.10)",
			"1.9.3+ent", "1.10.12+ent", Policy{}, "1.9.3+ent->1.9.17+ent, 1.9.17+ent->1.10.12+ent"},
		{"a stone equal to the target is the target, metadata and all (dedicated-path-1.10.12)",
			"1.9.17+ent", "1.10.12+ent", Policy{}, "1.9.17+ent->1.10.12+ent"},
		{"stones carry the target's metadata over several hops (max-majors-per-hop)",
			"1.10.12+ent", "1.14.8+ent", Policy{}, "1.10.12+ent->1.12.9+ent, 1.12.9+ent->1.14.8+ent"},
		{"a server already on the target's release needs no hop, whatever its build metadata",
			"1.10.12+ent", "1.10.12", Policy{}, ""},
		{"the same version needs no hop",
			"1.12.9", "1.12.9", Policy{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hops, err := Path(tc.from, tc.to, tc.pol)
			if err != nil {
				t.Fatalf("Path(%s, %s): %v", tc.from, tc.to, err)
			}
			if got := hopsString(hops); got != tc.want {
				t.Fatalf("Path(%s, %s) = %s, want %s", tc.from, tc.to, got, tc.want)
			}
			for _, h := range hops {
				if h.Reason == "" {
					t.Errorf("hop %s -> %s has no reason", h.From, h.To)
				}
			}
		})
	}
}

func TestPathNamesTheRuleOfEachStone(t *testing.T) {
	hops, err := Path("0.4.1", "1.2.4", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	want := []RuleID{RuleRaftBoltDB, RuleRaftProtocol07, RuleDedicated124, RuleDedicated124}
	if len(hops) != len(want) {
		t.Fatalf("path %s, want %d hops", hopsString(hops), len(want))
	}
	for i, h := range hops {
		if h.Rule != want[i] {
			t.Errorf("hop %s -> %s: rule %q, want %q", h.From, h.To, h.Rule, want[i])
		}
	}
	last, err := Path("1.12.9", "1.13.9", Policy{})
	if err != nil || len(last) != 1 || last[0].Rule != "" {
		t.Fatalf("unforced final hop should carry no rule: %+v, %v", last, err)
	}
}

func TestPathErrors(t *testing.T) {
	_, err := Path("1.13.9", "1.12.9", Policy{})
	var de *DowngradeError
	if !errors.As(err, &de) || de.From != "1.13.9" || de.To != "1.12.9" {
		t.Fatalf("downgrade: got %v, want *DowngradeError 1.13.9 -> 1.12.9", err)
	}
	for _, bad := range []string{"", "latest", "1.x", "1.12", "1.12.9.1", "one.two.three"} {
		_, err := Path(bad, "1.12.9", Policy{})
		var ve *VersionError
		if !errors.As(err, &ve) || ve.Value != bad || ve.Node != "" {
			t.Errorf("from %q: got %v, want *VersionError for it", bad, err)
		}
		_, err = Path("1.12.9", bad, Policy{})
		if !errors.As(err, &ve) || ve.Value != bad {
			t.Errorf("to %q: got %v, want *VersionError for it", bad, err)
		}
	}
	_, err = Path("1.21.5", "2.0.1", Policy{})
	var ue *UnsupportedVersionError
	if !errors.As(err, &ue) || ue.Value != "2.0.1" {
		t.Fatalf("2.x target: got %v, want *UnsupportedVersionError", err)
	}
	if msg := err.Error(); strings.ToLower(msg[:1]) != msg[:1] || strings.HasSuffix(msg, ".") {
		t.Errorf("error text should be lower case without a trailing period: %q", msg)
	}
}

// dedicatedHop reports whether a hop is one of the documented dedicated
// paths (which may jump more than two majors).
func dedicatedHop(h Hop) bool {
	switch h.Rule {
	case RuleDedicated124, RuleDedicated1610, RuleDedicated1819, RuleDedicated11012:
		return true
	}
	return false
}

// allReleases lists every release from 0.1.0 to 1.21.x that the invariant
// tests walk: the release catalogue.
func allReleases() []string { return Releases() }

func TestPathInvariants(t *testing.T) {
	rel := allReleases()
	for _, pol := range []Policy{{}, {Enterprise: true}} {
		for i := 0; i < len(rel); i += 3 {
			for j := i; j < len(rel); j += 5 {
				from, to := rel[i], rel[j]
				hops, err := Path(from, to, pol)
				if err != nil {
					t.Fatalf("Path(%s, %s): %v", from, to, err)
				}
				cur := from
				for n, h := range hops {
					if h.From != cur {
						t.Fatalf("Path(%s, %s): hop %d starts at %s, want %s", from, to, n, h.From, cur)
					}
					f, tt := mustVersion(h.From), mustVersion(h.To)
					if !tt.GreaterThan(f) {
						t.Fatalf("Path(%s, %s): hop %s -> %s does not move forward", from, to, h.From, h.To)
					}
					m := Majors(f, tt)
					lts := pol.Enterprise && ltsLine(minorIndex(f)) && ltsLine(minorIndex(tt)) && m == 3
					if m > 2 && !dedicatedHop(h) && !lts {
						t.Fatalf("Path(%s, %s): hop %s -> %s jumps %d majors (rule %q)", from, to, h.From, h.To, m, h.Rule)
					}
					cur = h.To
				}
				if from != to && cur != to {
					t.Fatalf("Path(%s, %s) ends at %s", from, to, cur)
				}
			}
		}
	}
}

func TestPathStonesAreNotKnownBad(t *testing.T) {
	// Every stone is a value of newestPatch; none may match a known-bad
	// target rule of the catalogue (whatever the features).
	for idx, s := range newestPatch {
		v := mustVersion(s)
		if v == nil || minorIndex(v) != idx {
			t.Fatalf("newestPatch[%d] = %s is not on line %d", idx, s, idx)
		}
		for _, b := range builtins {
			if !strings.HasPrefix(string(b.ID), "known-bad-") && !b.targetValue {
				continue
			}
			if len(b.to) > 0 && b.to.Check(v) {
				t.Errorf("stone %s matches known-bad rule %s (%s)", s, b.ID, b.To)
			}
		}
	}
	for _, s := range []string{"0.7.5", "0.8.5", "1.2.4", "1.6.10", "1.8.19", "1.9.17", "1.10.12"} {
		found := false
		for _, b := range builtins {
			if strings.HasPrefix(string(b.ID), "known-bad-") && b.to.Check(mustVersion(s)) {
				found = true
			}
		}
		if found {
			t.Errorf("fixed stone %s is known bad", s)
		}
	}
}

func TestMajors(t *testing.T) {
	tests := []struct {
		from, to string
		want     int
	}{
		{"0.9.4", "1.0.0", 1},
		{"1.14.3", "1.15.0", 1},
		{"1.10.12", "1.13.9", 3},
		{"0.4.1", "0.5.2", 1},
		{"1.12.9", "1.12.1", 0},
		{"1.13.0", "1.12.9", -1},
	}
	for _, tc := range tests {
		if got := Majors(mustVersion(tc.from), mustVersion(tc.to)); got != tc.want {
			t.Errorf("Majors(%s, %s) = %d, want %d", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestDefaultStopMode(t *testing.T) {
	tests := []struct {
		name, role, from string
		want             StopMode
	}{
		{"servers below 0.7 leave on SIGTERM, so they are killed", "server", "0.6.4", StopKill},
		{"servers from 0.7 stay members on SIGTERM, so they are terminated", "server", "0.7.0", StopTerminate},
		{"servers on 1.x are terminated", "server", "1.12.9", StopTerminate},
		{"clients leave on SIGTERM, so they are killed", "client", "1.12.9", StopKill},
		{"an unparseable version gets the mode that never leaves", "server", "latest", StopKill},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DefaultStopMode(tc.role, tc.from, "1.13.9"); got != tc.want {
				t.Fatalf("DefaultStopMode(%s, %s) = %q, want %q", tc.role, tc.from, got, tc.want)
			}
		})
	}
}

func TestMinServerVersion(t *testing.T) {
	c := Cluster{Servers: []Server{{Name: "s1", Version: "1.13.9"}, {Name: "s2", Version: "1.12.9"}, {Name: "s3", Version: "1.13.1"}}}
	v, err := MinServerVersion(&c)
	if err != nil || v.String() != "1.12.9" {
		t.Fatalf("MinServerVersion = %v, %v; want 1.12.9", v, err)
	}
	c.Servers[2].Version = "banana"
	_, err = MinServerVersion(&c)
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Node != "s3" || ve.Value != "banana" {
		t.Fatalf("bad server version: got %v, want *VersionError naming s3", err)
	}
	if _, err := MinServerVersion(&Cluster{}); err == nil {
		t.Fatal("no servers: want an error")
	}
}

func TestVersionCacheParsesEachStringOnce(t *testing.T) {
	var vc VersionCache
	a, err := vc.Parse("1.12.9")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := vc.Parse("1.12.9")
	if a != b {
		t.Fatal("second parse of the same string returned a different value")
	}
	if _, err := vc.Parse("nope"); err == nil {
		t.Fatal("bad version parsed")
	}
	if len(vc.m) != 2 {
		t.Fatalf("cache holds %d entries, want 2", len(vc.m))
	}
}

// buildable are the MPL releases the project's integration tests can run.
var buildable = []string{"0.6.4", "0.7.5", "0.8.5", "0.9.3", "1.0.8", "1.2.4", "1.4.5", "1.6.10", "1.8.19", "1.10.12", "1.11.11", "1.12.9", "1.13.9", "1.14.8", "1.15.4", "1.16.1"}

func hopTos(hops []Hop) string {
	var out []string
	for _, h := range hops {
		out = append(out, h.To)
	}
	return strings.Join(out, " ")
}

func TestPathPicksStonesAmongTheReleases(t *testing.T) {
	cases := []struct {
		name     string
		from, to string
		releases []string
		want     string
	}{
		{"the catalogue's newest patches without a list", "0.8.5", "1.16.1", nil,
			"1.2.4 1.6.10 1.8.19 1.10.12 1.12.9 1.14.11 1.16.1"},
		{"the newest listed patch of each line with a list", "0.8.5", "1.16.1", buildable,
			"1.2.4 1.6.10 1.8.19 1.10.12 1.12.9 1.14.8 1.16.1"},
		{"a known-bad listed release is never a stone (1.14.0), an older line is", "1.12.9", "1.16.1", []string{"1.13.9", "1.14.0", "1.15.4"},
			"1.13.9 1.15.4 1.16.1"},
		{"the target need not be listed", "1.12.9", "1.13.9", []string{"1.12.9"}, "1.13.9"},
		{"0.6 passes through the listed 0.7.5", "0.6.4", "0.8.5", buildable, "0.7.5 0.8.5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hops, err := Path(tc.from, tc.to, Policy{Releases: tc.releases})
			if err != nil {
				t.Fatalf("Path: %v", err)
			}
			if got := hopTos(hops); got != tc.want {
				t.Errorf("stones %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPathRefusesWhenTheReleasesLackANeededStone(t *testing.T) {
	cases := []struct {
		name     string
		from, to string
		releases []string
		need     string
	}{
		{"a dedicated path's fixed stone", "0.8.5", "1.4.5", []string{"1.4.5"}, "1.2.4"},
		{"no release two or one majors ahead", "1.10.12", "1.16.1", []string{"1.10.12", "1.16.1"}, "1.12.x or 1.11.x"},
		{"the 0.7.5 stone", "0.6.4", "0.8.5", []string{"0.7.4"}, "0.7.5"},
	}
	if _, err := Path("1.12.9", "1.13.9", Policy{Releases: []string{"1.12.x"}}); err == nil || !strings.Contains(err.Error(), `policy releases: version "1.12.x"`) {
		t.Errorf("a malformed release gave %v, want a *VersionError naming it", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Path(tc.from, tc.to, Policy{Releases: tc.releases})
			var re *ReleaseError
			if !errors.As(err, &re) {
				t.Fatalf("Path = %v, want *ReleaseError", err)
			}
			if re.Need != tc.need || !strings.Contains(err.Error(), "add one to releases") {
				t.Errorf("need %q (%v), want %q and the fix", re.Need, err, tc.need)
			}
		})
	}
}
