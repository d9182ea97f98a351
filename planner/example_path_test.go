package planner_test

import (
	"fmt"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// The documented worked example: from 1.3.1 to the latest 1.12 through the
// dedicated paths.
func ExamplePath() {
	hops, err := planner.Path("1.3.1", "1.12.9", planner.Policy{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range hops {
		rule := h.Rule
		if rule == "" {
			rule = "(target)"
		}
		fmt.Printf("%-7s -> %-7s %s\n", h.From, h.To, rule)
	}
	// Output:
	// 1.3.1   -> 1.6.10  dedicated-path-1.6.10
	// 1.6.10  -> 1.8.19  dedicated-path-1.8.19
	// 1.8.19  -> 1.10.12 dedicated-path-1.10.12
	// 1.10.12 -> 1.12.9  (target)
}

// A server below 0.5.1 must boot 0.5.2 once before 0.6 or later.
func ExamplePath_steppingStone() {
	hops, _ := planner.Path("0.4.1", "0.7.5", planner.Policy{})
	for _, h := range hops {
		fmt.Printf("%s -> %s: %s\n", h.From, h.To, h.Reason)
	}
	// Output:
	// 0.4.1 -> 0.5.2: the LMDB -> BoltDB Raft store migrator ships only in 0.5.1+ of 0.5.x and was removed in 0.6.0: every server boots 0.5.2 once
	// 0.5.2 -> 0.7.5: final hop: 2 major(s), within max-majors-per-hop (at most 2)
}

// Downgrades are refused with a typed error.
func ExamplePath_downgrade() {
	_, err := planner.Path("1.13.9", "1.12.9", planner.Policy{})
	fmt.Println(err)
	// Output:
	// path: 1.13.9 -> 1.12.9 is a downgrade (target must be >= the running version); restore a snapshot taken on 1.12.9 instead, or choose a target >= 1.13.9
}
