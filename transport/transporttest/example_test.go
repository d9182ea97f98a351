package transporttest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

// Inject faults into a three-server cluster and watch what each swap does.
func Example_faultInjection() {
	f := transporttest.NewFake(
		transporttest.Server("s1", "1.12.9"),
		transporttest.Server("s2", "1.12.9"),
		transporttest.Server("s3", "1.12.9"),
	)
	swap := func(ctx context.Context, node string) error {
		return f.Swap(ctx, transport.SwapRequest{
			Node: node, Role: transport.RoleServer, From: "1.12.9", To: "1.13.9", StopMode: transport.StopKill,
		})
	}
	show := func(node string, err error) {
		n, _ := f.Node(node)
		fmt.Printf("%s: err=%v | runs %s, running=%v, healthy=%v\n", node, err != nil, n.Version, n.Running, n.Healthy)
	}

	// s1: the binary was not replaced; the swap reports success anyway.
	f.ComeBackOld("s1")
	show("s1", swap(context.Background(), "s1"))

	// s2: the swap hangs until the caller's deadline.
	f.HangNext("s2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	err := swap(ctx, "s2")
	cancel()
	show("s2", err)
	fmt.Println("s2 timed out:", errors.Is(err, context.DeadlineExceeded))

	// s3: the target release never comes up; roll back.
	f.Broken("1.13.9")
	err = swap(context.Background(), "s3")
	show("s3", err)
	fmt.Println("s3 not running:", errors.Is(err, transport.ErrNotRunning))
	show("s3", f.Rollback(context.Background(), "s3"))

	// What touched state, in order.
	for _, c := range f.Calls() {
		switch c.Op {
		case transporttest.OpStop:
			fmt.Println(c.Seq, c.Op, c.Node, "with", c.StopMode)
		case transporttest.OpStart:
			fmt.Println(c.Seq, c.Op, c.Node, "on", c.To)
		}
	}
	// Output:
	// s1: err=false | runs 1.12.9, running=true, healthy=true
	// s2: err=true | runs 1.12.9, running=true, healthy=true
	// s2 timed out: true
	// s3: err=true | runs 1.13.9, running=false, healthy=false
	// s3 not running: true
	// s3: err=false | runs 1.12.9, running=true, healthy=true
	// 2 stop s1 with kill
	// 3 start s1 on 1.12.9
	// 6 stop s3 with kill
	// 7 start s3 on 1.13.9
	// 9 stop s3 with kill
	// 10 start s3 on 1.12.9
}
