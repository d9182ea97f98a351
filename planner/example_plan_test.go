package planner_test

import (
	"fmt"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// story is the seed's cluster, small: three servers (s1 leads) and three
// clients on 0.4.1.
func story() planner.Cluster {
	c := planner.Cluster{
		Servers: []planner.Server{
			{Name: "s1", Version: "0.4.1", Leader: true, Voter: true, Healthy: true},
			{Name: "s2", Version: "0.4.1", Voter: true, Healthy: true},
			{Name: "s3", Version: "0.4.1", Voter: true, Healthy: true},
		},
	}
	for _, n := range []string{"web-1", "web-2", "web-3"} {
		c.Clients = append(c.Clients, planner.Client{Name: n, Version: "0.4.1"})
	}
	return c
}

// Plan previews the whole upgrade: a snapshot, the followers, the leader
// last, then the clients in waves (a canary first).
func ExamplePlan() {
	p, err := planner.Plan(story(), "0.5.2", planner.Policy{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, s := range p.Steps {
		who := s.Node
		if len(s.Nodes) > 0 {
			who = strings.Join(s.Nodes, ",")
		}
		line := fmt.Sprintf("%d %-12s %-11s -> %s %s", i+1, s.Kind, who, s.To, s.StopMode)
		fmt.Println(strings.TrimSpace(line))
	}
	// Output:
	// 1 snapshot     s1          -> 0.5.2
	// 2 swap-server  s2          -> 0.5.2 kill
	// 3 swap-server  s3          -> 0.5.2 kill
	// 4 swap-server  s1          -> 0.5.2 kill
	// 5 swap-clients web-1       -> 0.5.2 kill
	// 6 swap-clients web-2       -> 0.5.2 kill
	// 7 swap-clients web-3       -> 0.5.2 kill
}

// Plan with clients left behind, as in the 2015 story: only the servers
// move, and the plan says which agents are points of no return.
func ExamplePlan_leaveBehind() {
	pol := planner.Policy{Clients: planner.ClientPolicy{Mode: planner.ClientLeaveBehind}}
	p, err := planner.Plan(story(), "0.5.2", pol)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range p.Steps {
		fmt.Println(strings.TrimSpace(fmt.Sprint(s.Kind, " ", s.Node, " ", s.NoReturn)))
	}
	// Output:
	// snapshot
	// swap-server s2 raft-boltdb-migration-0.5.1
	// swap-server s3 raft-boltdb-migration-0.5.1
	// swap-server s1 raft-boltdb-migration-0.5.1
}

// Next decides from what the cluster runs now. Here s2 was swapped before
// a crash and the snapshot was taken on 0.4.1: the resumed run goes on
// with s3, not s2 again, and leaves the leader s1 for last.
func ExampleNext() {
	c := story()
	c.Servers[1].Version = "0.5.2"
	c.SnapshotVersion = "0.4.1"
	step, err := planner.Next(c, "0.5.2", planner.Policy{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(step.Kind, step.Node, step.From, "->", step.To)
	fmt.Println(step.Reason)
	// Output:
	// swap-server s3 0.4.1 -> 0.5.2
	// follower; the leader s1 goes last (followers-first-leader-last)
}
