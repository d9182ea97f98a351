// Package raft3_test upgrades real clusters across the documented hops
// from 1.8.19 on: the dedicated path to 1.10.12 (1.10 refuses raft
// protocol 2; these clusters started on 1.8 and run protocol 3), 1.11 and
// 1.13.9 -> 1.14.8 (1.14.8 -> 1.15.4 -> 1.16.1 are in tests/e2e/transfer).
// Each run: 3 servers and 1 client, a writer through the client every
// 20 ms, followers first and the leader last, every step gated
// (tests/scenario). Figures are logged on FIGURES lines.
package raft3_test

import (
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
)

func TestHop_1_8_19_to_1_10_12(t *testing.T) {
	scenario.LeaderSwappedLast(t, scenario.Run(t, scenario.Scenario{From: "1.8.19", To: "1.10.12"}))
}

func TestHop_1_10_12_to_1_11_11(t *testing.T) {
	scenario.LeaderSwappedLast(t, scenario.Run(t, scenario.Scenario{From: "1.10.12", To: "1.11.11"}))
}

func TestHop_1_13_9_to_1_14_8(t *testing.T) {
	scenario.LeaderSwappedLast(t, scenario.Run(t, scenario.Scenario{From: "1.13.9", To: "1.14.8"}))
}
