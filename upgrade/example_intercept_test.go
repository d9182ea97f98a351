package upgrade_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// Wrap a Consul to count its calls and time them (as a metrics library
// would) without losing its abilities: the upgrade lock, the KV store of the
// backup and swap records, the readers of old eras and of features. A
// struct embedding upgrade.Consul keeps only Consul's own methods, and a run
// through it is refused.
func ExampleIntercept() {
	sim := consultest.NewCluster(3, 1, "1.12.9")
	client, err := sim.Client()
	if err != nil {
		fmt.Println(err)
		return
	}
	base := upgrade.NewConsul(client)

	var mu sync.Mutex
	calls := map[string]int{}
	var spent time.Duration
	c := upgrade.Intercept(base, func(ctx context.Context, call string, do func(context.Context) error) error {
		start := time.Now()
		err := do(ctx)
		mu.Lock()
		defer mu.Unlock()
		calls[call]++
		spent += time.Since(start) // e.g. a latency histogram labelled by call
		return err
	})

	_, locker := c.(upgrade.Locker)
	_, kv := c.(upgrade.KVStore)
	fmt.Println("keeps Locker:", locker, "KVStore:", kv)

	cluster, err := upgrade.Discover(context.Background(), c)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("servers:", len(cluster.Servers), "clients:", len(cluster.Clients))
	for _, call := range slices.Sorted(maps.Keys(calls)) {
		fmt.Println(call, calls[call])
	}

	type metrics struct{ upgrade.Consul } // the usual Go wrapper
	err = upgrade.Config{Consul: metrics{base}, Target: "1.13.9", DryRun: true}.Validate()
	fmt.Println(err)
	// Output:
	// keeps Locker: true KVStore: true
	// servers: 3 clients: 1
	// AgentSelf 1
	// AutopilotHealth 1
	// Datacenters 1
	// Leader 1
	// Members 1
	// RaftConfiguration 1
	// config Consul = upgrade_test.metrics: does not implement upgrade.Locker and upgrade.KVStore, so the run would hold no upgrade lock and keep no backup or swap record; wrap a Consul with upgrade.Intercept, which keeps every ability of the Consul it wraps, or set NoLock to run without the lock and the records
}
