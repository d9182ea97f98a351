package planner

import (
	"errors"
	"strings"
	"testing"
)

// twoVotersAfterADeath is baseCluster with s3 (the leader) dead and removed
// by autopilot: s1 and s2 vote, s3 is left in serf; s2 leads now.
func twoVotersAfterADeath() Cluster {
	c := baseCluster("1.12.9")
	c.Servers = c.Servers[:2]
	c.Servers[1].Leader = true
	c.Missing = []MissingServer{{Name: "s3", Version: "1.12.9", Status: "left"}}
	return c
}

func TestTwoVotersAreRefusedByNoSpareVoterNamingTheMissingServerAndHowToRestoreIt(t *testing.T) {
	c := twoVotersAfterADeath()
	fs := Check(c, "1.13.9", Policy{})
	hits := findRule(fs, PrecheckNoSpareVoter)
	if len(hits) != 1 {
		t.Fatalf("want one %s finding, got %d:\n%s", PrecheckNoSpareVoter, len(hits), findingsText(fs))
	}
	f := hits[0]
	if f.Severity != Blocking || f.Waived {
		t.Errorf("finding %+v: want blocking, not waived", f)
	}
	for _, want := range []string{"dc1 has 2 voters (s1, s2)", "failure tolerance is 0", "missing: s3 (1.12.9, left in serf, not in the Raft configuration)"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message %q lacks %q", f.Message, want)
		}
	}
	if !strings.Contains(f.Hint, "restore a server first") || !strings.Contains(f.Hint, "wait until it is a healthy voter") {
		t.Errorf("hint %q should say how to restore a server first", f.Hint)
	}
	missing := findRule(fs, PrecheckServerMissing)
	if len(missing) != 1 || missing[0].Node != "s3" || missing[0].Value != "left" || !strings.Contains(missing[0].Message, "counts 2 voter(s) without it") {
		t.Errorf("server-missing findings %v: want one naming s3, left, and the 2 voters left", missing)
	}
}

func TestTwoVotersAreRefusedByNextAndPlanWithTheNewRuleAndAcceptedWhenItIsWaived(t *testing.T) {
	c := twoVotersAfterADeath()
	for name, run := range map[string]func(Policy) error{
		"Next": func(pol Policy) error { _, err := Next(c, "1.13.9", pol); return err },
		"Plan": func(pol Policy) error { _, err := Plan(c, "1.13.9", pol); return err },
	} {
		err := run(Policy{})
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Fatalf("%s: err = %v, want a *RefusedError", name, err)
		}
		if len(re.Findings) != 1 || re.Findings[0].Rule != PrecheckNoSpareVoter {
			t.Errorf("%s: refused by %v, want only %s", name, re.Findings, PrecheckNoSpareVoter)
		}
		if err := run(Policy{Waive: []RuleID{PrecheckNoSpareVoter}}); err != nil {
			t.Errorf("%s with %s waived: %v, want accepted", name, PrecheckNoSpareVoter, err)
		}
		// Waiving another rule does not waive this one.
		if err := run(Policy{Waive: []RuleID{PrecheckFailureTolerance}}); !errors.As(err, &re) {
			t.Errorf("%s with only %s waived: err = %v, want still refused", name, PrecheckFailureTolerance, err)
		}
	}
}

func TestASingleServerIsPlannedWithItsOutageSaidPlainly(t *testing.T) {
	c := baseCluster("1.12.9")
	c.Servers = c.Servers[2:] // s3 alone, the leader
	p, err := Plan(c, "1.13.9", Policy{})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	hits := findRule(p.Findings, PrecheckFailureTolerance)
	if len(hits) != 1 || hits[0].Severity != Warning {
		t.Fatalf("failure-tolerance-zero findings %v: want one warning", hits)
	}
	if want := "datacenter dc1 has a single server (s3): its swap is a planned outage: while s3 restarts the datacenter has no leader and writes fail, until it is back"; hits[0].Message != want {
		t.Errorf("message %q, want %q", hits[0].Message, want)
	}
	if len(findRule(p.Findings, PrecheckNoSpareVoter)) != 0 {
		t.Error("a single server is not refused as a lost quorum")
	}
	swaps := 0
	for _, s := range p.Steps {
		if s.Kind == StepSwapServer && s.Node == "s3" {
			swaps++
		}
	}
	if swaps != 1 {
		t.Errorf("plan %v: want s3 swapped once", p.Steps)
	}
}
