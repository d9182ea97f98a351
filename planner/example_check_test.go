package planner_test

import (
	"fmt"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// The 2015 story's cluster (three servers and their clients on 0.4.1, going
// to 0.5.2), had it run ACLs with default deny (it ran without ACLs). Check
// lists every finding, blocking first; the ACL change blocks until the
// agents' tokens may write services.
func ExampleCheck() {
	c := planner.Cluster{
		Servers: []planner.Server{
			{Name: "consul-1", Version: "0.4.1", Voter: true, Healthy: true},
			{Name: "consul-2", Version: "0.4.1", Voter: true, Healthy: true, Leader: true},
			{Name: "consul-3", Version: "0.4.1", Voter: true, Healthy: true},
		},
		Clients: []planner.Client{
			{Name: "web-1", Version: "0.4.1"},
			{Name: "web-2", Version: "0.4.1"},
		},
		Features: planner.Features{ACLs: true, ACLDefaultPolicy: "deny"},
	}
	pol := planner.Policy{Clients: planner.ClientPolicy{Mode: planner.ClientLeaveBehind}}

	fs := planner.Check(c, "0.5.2", pol)
	for _, f := range fs {
		node := f.Node
		if node == "" {
			node = "-"
		}
		fmt.Printf("%-8s %-27s %s\n", f.Severity, f.Rule, node)
	}
	fmt.Println("refused:", fs.Err() != nil)

	// The operator grants service write on 0.4.1, then waives the finding.
	pol.Waive = []planner.RuleID{planner.RuleACLService05}
	fmt.Println("refused after waiving:", planner.Check(c, "0.5.2", pol).Err() != nil)
	// Output:
	// blocking acl-service-write-0.5       -
	// info     followers-first-leader-last -
	// info     one-server-at-a-time        -
	// info     raft-boltdb-migration-0.5.1 consul-1
	// info     raft-boltdb-migration-0.5.1 consul-2
	// info     raft-boltdb-migration-0.5.1 consul-3
	// info     servers-before-clients      -
	// info     tombstone-window-0.5        -
	// refused: true
	// refused after waiving: false
}

// A finding prints on one line: node, message, rule, value, limit and hint.
func ExampleFinding_String() {
	c := planner.Cluster{Servers: []planner.Server{
		{Name: "s1", Version: "1.12.9", Voter: true, Healthy: true, Leader: true},
		{Name: "s2", Version: "1.12.9", Voter: true, Healthy: false},
		{Name: "s3", Version: "1.12.9", Voter: true, Healthy: true},
	}}
	for _, f := range planner.Check(c, "1.13.9", planner.Policy{}).Blocking() {
		fmt.Println(f)
	}
	// Output:
	// s2: server s2 (1.12.9) is not healthy (server-unhealthy: value healthy=false); on a live cluster, fix the server until /v1/operator/autopilot/health reports it healthy (swapping another server now could lose quorum); in a hand-built cluster description, the server was given no health: set Server.Healthy (JSON "healthy": true, the default when absent) or build it with planner.NewServer
}
