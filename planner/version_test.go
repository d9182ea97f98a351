package planner

import (
	"errors"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner/plannertest"
)

// TestParseVersionSharedTable: the planner accepts and refuses exactly what
// the upgrade runner and the transports do (the same table runs in their
// tests), and its refusal names the value and the fix.
func TestParseVersionSharedTable(t *testing.T) {
	for _, tc := range plannertest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			v, err := ParseVersion(tc.In)
			if tc.Accepted() {
				if err != nil {
					t.Fatalf("ParseVersion(%q) = %v, want %s", tc.In, err, tc.Canonical)
				}
				if v.Original() != tc.Canonical {
					t.Errorf("ParseVersion(%q).Original() = %q, want %q", tc.In, v.Original(), tc.Canonical)
				}
				if IsEnterprise(tc.In) != tc.Enterprise {
					t.Errorf("IsEnterprise(%q) = %v, want %v", tc.In, IsEnterprise(tc.In), tc.Enterprise)
				}
				return
			}
			var ve *VersionError
			if !errors.As(err, &ve) || ve.Value != tc.In {
				t.Fatalf("ParseVersion(%q) = %v, want a *VersionError naming the value", tc.In, err)
			}
			if !strings.Contains(err.Error(), tc.Fix) {
				t.Errorf("ParseVersion(%q) error %q does not name the fix %q", tc.In, err, tc.Fix)
			}
			if IsEnterprise(tc.In) {
				t.Errorf("IsEnterprise(%q) = true for a refused version", tc.In)
			}
		})
	}
}

// TestCheckRefusesWhatTheTableRefuses: a target the table refuses blocks the
// plan (bad-version) with the fix in the finding; one it accepts does not.
func TestCheckRefusesWhatTheTableRefuses(t *testing.T) {
	for _, tc := range plannertest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			fs := findRule(Check(baseCluster("0.5.2"), tc.In, Policy{}), PrecheckBadVersion)
			if tc.Accepted() {
				if len(fs) != 0 {
					t.Fatalf("target %q: bad-version finding %v, want none", tc.In, fs)
				}
				return
			}
			if len(fs) != 1 || fs[0].Severity != Blocking || fs[0].Node != "target" {
				t.Fatalf("target %q: bad-version findings %v, want one blocking finding on the target", tc.In, fs)
			}
			if !strings.Contains(fs[0].Message, tc.Fix) {
				t.Errorf("target %q: finding %q does not name the fix %q", tc.In, fs[0].Message, tc.Fix)
			}
		})
	}
}

// TestVersionComparisonsIgnoreBuildMetadata: the planner's comparisons (its
// ranks are built on go-version's Compare) and SameVersion agree with the
// shared pairs.
func TestVersionComparisonsIgnoreBuildMetadata(t *testing.T) {
	for _, p := range plannertest.Pairs {
		a, err1 := ParseVersion(p.A)
		b, err2 := ParseVersion(p.B)
		if err1 != nil || err2 != nil {
			t.Fatalf("pair %q, %q does not parse: %v, %v", p.A, p.B, err1, err2)
		}
		if got := a.Equal(b); got != p.Same {
			t.Errorf("ParseVersion(%q).Equal(%q) = %v, want %v", p.A, p.B, got, p.Same)
		}
		if got := SameVersion(p.A, p.B); got != p.Same {
			t.Errorf("SameVersion(%q, %q) = %v, want %v", p.A, p.B, got, p.Same)
		}
	}
}

// TestEnterpriseBuildsGetEnterpriseRules: a cluster whose agents run a +ent
// build is planned as Enterprise without Policy.Enterprise; the same cluster
// on Consul CE is not.
func TestEnterpriseBuildsGetEnterpriseRules(t *testing.T) {
	tests := []struct {
		name   string
		c      Cluster
		target string
		want   bool
	}{
		{"servers on 1.9.3+ent are Enterprise", baseCluster("1.9.3+ent"), "1.10.12", true},
		{"a client on 1.9.3+ent is enough", with(baseCluster("1.9.3"), func(c *Cluster) { c.Clients[1].Version = "1.9.3+ent" }), "1.10.12", true},
		{"an Enterprise target is enough", baseCluster("1.9.3"), "1.10.12+ent", true},
		{"a FIPS Enterprise build is Enterprise", baseCluster("1.9.3+ent.fips1402"), "1.10.12", true},
		{"Consul CE is not Enterprise", baseCluster("1.9.3"), "1.10.12", false},
		{"other build metadata is not Enterprise", baseCluster("1.9.3+custom"), "1.10.12", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := Check(tc.c, tc.target, Policy{})
			for _, id := range []RuleID{RuleEnterprise110, RuleDisableUpgradeMigration} {
				if got := len(findRule(fs, id)) > 0; got != tc.want {
					t.Errorf("finding %s present = %v, want %v", id, got, tc.want)
				}
			}
			p, err := Plan(tc.c, tc.target, Policy{})
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if p.Policy.Enterprise != tc.want {
				t.Errorf("Plan(...).Policy.Enterprise = %v, want %v", p.Policy.Enterprise, tc.want)
			}
			stone := len(p.Path) > 0 && strings.HasPrefix(p.Path[0].To, "1.9.17")
			if stone != tc.want {
				t.Errorf("path %s: through 1.9.17 = %v, want %v", hopsString(p.Path), stone, tc.want)
			}
			if tc.want && !strings.Contains(p.String(), "enterprise") {
				t.Errorf("the rendered plan does not say it is planned as Enterprise:\n%s", p)
			}
		})
	}
}

// TestNextCountsEnterpriseBuildsAsOnTheRelease: a server on 1.10.12+ent is
// already on a 1.10.12 hop, so Next never swaps it and is done once every
// agent runs 1.10.12 with or without metadata.
func TestNextCountsEnterpriseBuildsAsOnTheRelease(t *testing.T) {
	done, err := Next(baseCluster("1.10.12+ent"), "1.10.12", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if done.Kind != StepDone {
		t.Fatalf("Next on 1.10.12+ent to 1.10.12 = %s %s, want done", done.Kind, done.Node)
	}
	c := with(baseCluster("1.10.2+ent"), chain(setServers("1.10.12+ent", "s1"), snapshotOn("1.10.2+ent")))
	for i := range c.Clients {
		c.Clients[i].Version = "1.10.12+ent"
	}
	p, err := Plan(c, "1.10.12", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Steps {
		if s.Node == "s1" || slicesContain(s.Nodes, "c1") || slicesContain(s.Nodes, "c2") {
			t.Errorf("plan swaps %s (%v), which already runs 1.10.12+ent", s.Node, s.Nodes)
		}
	}
	if len(p.Steps) == 0 {
		t.Fatal("plan has no steps, want s2 and s3 swapped")
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
