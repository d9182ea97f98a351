package consultest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// discard is a snapshot sink that keeps nothing.
type discard struct{}

func (discard) Write(p []byte) (int, error)  { return len(p), nil }
func (discard) Commit(context.Context) error { return nil }
func (discard) Abort(context.Context) error  { return nil }

// Run a whole upgrade against the simulator: upgrade.Run observes the
// cluster through its API, swaps agents through the fake transport, and the
// fake's hook restarts them in the cluster. Outside a testing/synctest
// bubble the cluster runs on the real clock, so the restart delay and the
// stabilization time are kept short.
func Example() {
	sim := consultest.NewCluster(3, 1, "1.12.9",
		consultest.WithRestartDelay(10*time.Millisecond),
		consultest.WithStabilizationTime(10*time.Millisecond),
	)
	fake := sim.NewFake()
	client, err := sim.Client()
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = upgrade.Run(context.Background(), upgrade.Config{
		Consul:          upgrade.NewConsul(client),
		Transport:       fake,
		Target:          "1.13.9",
		Snapshot:        func(context.Context, string, string) (upgrade.SnapshotSink, error) { return discard{}, nil },
		GateTimeout:     10 * time.Second,
		GateMaxInterval: 20 * time.Millisecond,
	})
	if err != nil {
		fmt.Println("run:", err)
		return
	}
	for _, c := range fake.Calls() {
		if c.Op == transporttest.OpSwap {
			fmt.Println("swapped", c.Node, "to", c.To)
		}
	}
	fmt.Println("leader:", sim.Leader(), "on", sim.Version(sim.Leader()))
	fmt.Println("locks left:", len(sim.HeldLocks()))
	// Output:
	// swapped s2 to 1.13.9
	// swapped s3 to 1.13.9
	// swapped s1 to 1.13.9
	// swapped c1 to 1.13.9
	// leader: s2 on 1.13.9
	// locks left: 0
}
