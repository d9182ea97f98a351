package planner

import (
	"strings"
	"testing"
)

// Rules that follow the observed cluster (who leads, what each agent runs),
// not only the policy.

// The 0.5.0 changelog and the 2015 upgrade page: once a 0.5 server leads,
// old servers panic when it reaps tombstones (15-minute TTL); followers
// first avoids that only while the leader is still old.
func TestNextTombstoneDeadlineFollowsTheObservedLeader(t *testing.T) {
	c := baseCluster("0.4.1")
	c.SnapshotVersion = "0.4.1"
	c.Servers[2].Version = "0.5.2" // s3 leads on 0.5.2; s1, s2 are old

	s, err := Next(c, "0.5.2", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != StepSwapServer || s.Node != "s1" {
		t.Fatalf("step = %s %s, want swap-server s1", s.Kind, s.Node)
	}
	if s.Deadline == nil || s.Deadline.Rule != RuleTombstoneWindow || s.Deadline.Seconds != TombstoneWindowSeconds {
		t.Fatalf("deadline = %+v, want the tombstone window with followers first and a 0.5 leader", s.Deadline)
	}
	if !strings.Contains(s.Deadline.Reason, "s3") || !strings.Contains(s.Deadline.Reason, "0.5.2") {
		t.Errorf("deadline reason does not name the 0.5 leader: %s", s.Deadline.Reason)
	}

	// A 0.5 follower under the old leader s3: no window yet.
	c.Servers[2].Version, c.Servers[0].Version = "0.4.1", "0.5.2"
	s, err = Next(c, "0.5.2", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != StepSwapServer || s.Deadline != nil {
		t.Fatalf("step %s %s has deadline %+v, want a swap without one while the old leader leads", s.Kind, s.Node, s.Deadline)
	}

	// Plan carries the deadline over every remaining swap of the hop.
	c = baseCluster("0.4.1")
	c.Clients = nil
	c.Servers[2].Version = "0.5.2"
	p, err := Plan(c, "0.5.2", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	swaps := 0
	for _, st := range p.Steps {
		if st.Kind == StepSwapServer {
			swaps++
			if st.Deadline == nil || st.Deadline.First < 0 || st.Deadline.Last < st.Deadline.First {
				t.Errorf("swap %s: deadline %+v, want one spanning the remaining swaps", st.Node, st.Deadline)
			}
		}
	}
	if swaps != 2 {
		t.Errorf("plan swaps %d servers, want the 2 old followers", swaps)
	}
}

// The backup before a hop from below 0.7.1 is a logical one (no snapshot
// API); skipping it says so.
func TestSnapshotRuleNamesTheBackupOfItsEra(t *testing.T) {
	msg := func(from, to string) string {
		for _, f := range Check(baseCluster(from), to, Policy{NoSnapshot: true}) {
			if f.Rule == RuleSnapshot {
				return f.Message
			}
		}
		t.Fatalf("%s -> %s: no %s finding", from, to, RuleSnapshot)
		return ""
	}
	if m := msg("0.6.4", "0.7.5"); !strings.Contains(m, "no snapshot API") {
		t.Errorf("0.6.4: %q does not say the era has no snapshot API", m)
	}
	if m := msg("1.12.9", "1.13.9"); strings.Contains(m, "no snapshot API") {
		t.Errorf("1.12.9: %q speaks of a missing snapshot API", m)
	}
}

// GH-9699: with upgrade migration on, one-at-a-time replacement stalls; the
// finding names the replace strategy.
func TestUpgradeMigrationFindingNamesTheStrategy(t *testing.T) {
	for _, tc := range []struct {
		strategy Strategy
		want     string
	}{{Replace, "replace strategy"}, {InPlace, "elect an upgraded leader early"}} {
		var got string
		for _, f := range Check(baseCluster("1.12.9"), "1.13.9", Policy{Enterprise: true, Strategy: tc.strategy}) {
			if f.Rule == RuleDisableUpgradeMigration {
				got = f.Message
			}
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("strategy %s: message %q, want it to mention %q", tc.strategy, got, tc.want)
		}
	}
}

// Check's transfer-leader finding and Next agree when the leader is newer
// than the lowest server: an observed 1.15 leader over 1.14 followers is
// transferred from, and the finding says so.
func TestTransferFindingFollowsTheObservedLeader(t *testing.T) {
	c := baseCluster("1.14.8")
	c.Servers[2].Version = "1.15.2"
	p, err := Plan(c, "1.16.6", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	transfers := 0
	for _, s := range p.Steps {
		if s.Kind == StepTransferLeader {
			transfers++
		}
	}
	fired := false
	for _, f := range p.Findings {
		fired = fired || f.Rule == RuleTransferLeader
	}
	if transfers == 0 || !fired {
		t.Fatalf("plan has %d transfer step(s) and the %s finding fired = %v; want both", transfers, RuleTransferLeader, fired)
	}
}
