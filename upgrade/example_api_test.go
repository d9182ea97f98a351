package upgrade_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// quick is a simulated cluster whose agents restart and stabilise within
// milliseconds, for examples that run on the real clock.
func quick(servers, clients int) *consultest.Cluster {
	return consultest.NewCluster(servers, clients, "1.12.9",
		consultest.WithRestartDelay(5*time.Millisecond),
		consultest.WithStabilizationTime(5*time.Millisecond),
		consultest.WithStableSince(time.Now().Add(-time.Hour)))
}

// Run upgrades a whole cluster: here a simulated one (upgrade/consultest)
// whose agents are swapped through the fake transport (transporttest), in
// the order the planner decides: a snapshot, the followers, the leader last,
// then the clients in waves (a canary of one, then batches of two).
func ExampleRun() {
	sim := quick(3, 5)
	client, err := sim.Client()
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := upgrade.Run(context.Background(), upgrade.Config{
		Consul:    upgrade.NewConsul(client),
		Transport: sim.NewFake(),
		Target:    "1.13.9",
		Policy:    planner.Policy{Clients: planner.ClientPolicy{Canary: 1, BatchSize: 2}},
		Snapshot: func(_ context.Context, dc, version string) (upgrade.SnapshotSink, error) {
			fmt.Println("snapshot of", dc, "on", version)
			return discard{}, nil
		},
		GateTimeout:     10 * time.Second,
		GateMaxInterval: 10 * time.Millisecond,
	})
	if err != nil {
		fmt.Println("run:", err)
		return
	}
	for i, rec := range res.Steps {
		s := rec.Step
		switch s.Kind {
		case planner.StepSwapClients:
			fmt.Println(i+1, s.Kind, "wave", s.Wave, s.Nodes)
		case planner.StepSnapshot:
			fmt.Println(i+1, s.Kind, "from", s.Nodes)
		default:
			fmt.Println(i+1, s.Kind, s.Node)
		}
	}
	fmt.Println("leader", sim.Leader(), "runs", sim.Version(sim.Leader()))
	// Output:
	// snapshot of dc1 on 1.12.9
	// 1 snapshot from [s1]
	// 2 swap-server s2
	// 3 swap-server s3
	// 4 swap-server s1
	// 5 swap-clients wave 0 [c1]
	// 6 swap-clients wave 1 [c2 c3]
	// 7 swap-clients wave 2 [c4 c5]
	// leader s2 runs 1.13.9
}

// Discover reads a live cluster (here a simulated one) into the planner's
// model: the servers with their Raft role and health, and the clients.
func ExampleDiscover() {
	sim := quick(3, 2)
	client, err := sim.Client()
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := upgrade.Discover(context.Background(), upgrade.NewConsul(client))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range c.Servers {
		fmt.Printf("server %s %s leader=%v voter=%v healthy=%v\n", s.Name, s.Version, s.Leader, s.Voter, s.Healthy)
	}
	for _, cl := range c.Clients {
		fmt.Printf("client %s %s\n", cl.Name, cl.Version)
	}
	// Output:
	// server s1 1.12.9 leader=true voter=true healthy=true
	// server s2 1.12.9 leader=false voter=true healthy=true
	// server s3 1.12.9 leader=false voter=true healthy=true
	// client c1 1.12.9
	// client c2 1.12.9
}

// ConnectAddr reaches an agent by address, with the rest of the client
// configuration (token, TLS) from the CONSUL_HTTP_* environment variables.
// Here the agent is a simulated cluster served over HTTP by httptest.
func ExampleConnectAddr() {
	srv := httptest.NewServer(quick(3, 1))
	defer srv.Close()
	consul, err := upgrade.ConnectAddr(srv.URL) // e.g. "127.0.0.1:8500" or "https://consul.internal:8501"
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := upgrade.Discover(context.Background(), consul)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(c.Servers), "servers,", len(c.Clients), "client")
	// Output:
	// 3 servers, 1 client
}
