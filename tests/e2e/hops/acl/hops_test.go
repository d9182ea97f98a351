// Package acl_test upgrades real clusters across the documented hops
// of the autopilot era with raft protocol 3 (1.2.4 and later): the new ACL
// system (1.4), the legacy-token migration line (1.6.10), the raft
// protocol 3 requirement before 1.10, and 1.11. Each run: 3 servers and 1
// client, a writer through the client every 20 ms, followers first and the
// leader last, every step gated (tests/scenario). Figures are logged on
// FIGURES lines.
package acl_test

import (
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
)

func TestHop_1_2_4_to_1_4_5(t *testing.T) {
	scenario.LeaderSwappedLast(t, scenario.Run(t, scenario.Scenario{From: "1.2.4", To: "1.4.5"}))
}

func TestHop_1_4_5_to_1_6_10(t *testing.T) {
	scenario.LeaderSwappedLast(t, scenario.Run(t, scenario.Scenario{From: "1.4.5", To: "1.6.10"}))
}

func TestHop_1_6_10_to_1_8_19(t *testing.T) {
	scenario.LeaderSwappedLast(t, scenario.Run(t, scenario.Scenario{From: "1.6.10", To: "1.8.19"}))
}
