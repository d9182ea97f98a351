package transporttest_test

import (
	"context"
	"fmt"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

// The fake is an in-memory transport: swaps change its nodes, every
// operation is recorded, and OnSwap lets a simulated cluster follow along
// (upgrade/consultest's NewFake wires that for you).
func ExampleNewFake() {
	f := transporttest.NewFake(
		transporttest.Server("s1", "1.12.9"),
		transporttest.Client("c1", "1.12.9"),
	)
	f.OnSwap = func(req transport.SwapRequest) {
		n, _ := f.Node(req.Node)
		fmt.Printf("hook: %s now runs %s (incarnation %d)\n", n.Name, n.Version, n.Incarnation)
	}
	ctx := context.Background()
	req := transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: "1.12.9", To: "1.13.9", StopMode: transport.StopLeave}
	fmt.Println("swap:", f.Swap(ctx, req))
	fmt.Println("again:", f.Swap(ctx, req)) // idempotent: already on 1.13.9, nothing restarted
	v, _ := f.RunningVersion(ctx, "c1")
	fmt.Println("c1 runs", v)
	for _, c := range f.Calls() {
		if c.To != "" {
			fmt.Println(c.Seq, c.Op, c.Node, "to", c.To)
		} else {
			fmt.Println(c.Seq, c.Op, c.Node)
		}
	}
	// Output:
	// hook: c1 now runs 1.13.9 (incarnation 1)
	// swap: <nil>
	// hook: c1 now runs 1.13.9 (incarnation 1)
	// again: <nil>
	// c1 runs 1.13.9
	// 1 swap c1 to 1.13.9
	// 2 stop c1
	// 3 start c1 to 1.13.9
	// 4 swap c1 to 1.13.9
	// 5 running-version c1
}
