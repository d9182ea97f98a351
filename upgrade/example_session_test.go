package upgrade_test

import (
	"context"
	"fmt"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// An embedder's own loop: Open takes the lock (and finishes a swap an
// earlier run left), Next observes and decides, Execute acts and gates,
// Close gives the lock back. The Session carries the backup it took, so
// the snapshot is taken once for the hop; here on a simulated cluster
// (upgrade/consultest) swapped through the fake transport.
func ExampleOpen() {
	ctx := context.Background()
	sim := quick(3, 2)
	client, err := sim.Client()
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := upgrade.Open(ctx, upgrade.Config{
		Consul:    upgrade.NewConsul(client),
		Transport: sim.NewFake(),
		Target:    "1.13.9",
		Snapshot: func(_ context.Context, dc, version string) (upgrade.SnapshotSink, error) {
			return discard{}, nil
		},
		GateTimeout:     10 * time.Second,
		GateMaxInterval: 10 * time.Millisecond,
	})
	if err != nil {
		fmt.Println("open:", err) // refused: nothing was touched
		return
	}
	defer s.Close(ctx)
	for {
		step, err := s.Next(ctx)
		if err != nil {
			fmt.Println("next:", err)
			return
		}
		if step.Kind == planner.StepDone {
			break
		}
		rec, err := s.Execute(ctx, step)
		if err != nil {
			fmt.Println("execute:", err) // the error says what was touched
			return
		}
		fmt.Println(rec.Step)
	}
	res := s.Result()
	fmt.Println(len(res.Steps), "steps; touched", res.Touched.Nodes())
	// Output:
	// snapshot -> 1.13.9
	// swap-server s2 -> 1.13.9
	// swap-server s3 -> 1.13.9
	// swap-server s1 -> 1.13.9
	// swap-clients dc1 wave 0 (1 clients) [c1] -> 1.13.9
	// swap-clients dc1 wave 1 (1 clients) [c2] -> 1.13.9
	// 6 steps; touched [s2 s3 s1 c1 c2]
}
