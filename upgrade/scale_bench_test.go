package upgrade_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// heapPeak samples the live heap (runtime/metrics, no stop-the-world) until
// stopped and returns the highest value seen, in bytes.
func heapPeak() (stop func() uint64) {
	const name = "/memory/classes/heap/objects:bytes"
	sample := []metrics.Sample{{Name: name}}
	var peak uint64
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > peak {
			peak = v
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		read()
		return peak
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discard is a snapshot sink that keeps nothing.
type discard struct{}

func (discard) Write(p []byte) (int, error)  { return len(p), nil }
func (discard) Commit(context.Context) error { return nil }
func (discard) Abort(context.Context) error  { return nil }

// BenchmarkRunClients runs a whole simulated upgrade (3 servers, then the
// clients in waves of 10%, 64 swaps in flight) of consultest clusters with
// 1,000 and 10,000 clients through the transporttest fake, and reports the
// runner's time per client (ns/client: the run's wall time over the
// clients; agents restart at once and gates need no stabilization, so this
// is the runner's own overhead plus the simulated API, whose member
// listings dominate), the CPU time per client (cpu-ns/client: the whole
// process, the in-process cluster and the garbage collector included) and
// the live heap's high-water mark (peak-heap-MB, sampled every
// millisecond, the cluster and the fake included).
//
//	go test -run '^$' -bench RunClients -benchmem -benchtime 1x ./upgrade/
func BenchmarkRunClients(b *testing.B) {
	for _, clients := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			b.ReportAllocs()
			var peak uint64
			var cpu time.Duration
			for range b.N {
				b.StopTimer()
				sim := consultest.NewCluster(3, clients, "1.12.9",
					consultest.WithRestartDelay(0),
					consultest.WithStabilizationTime(0),
					consultest.WithStableSince(time.Now().Add(-time.Hour)))
				fake := sim.NewFake()
				client, err := sim.Client()
				if err != nil {
					b.Fatal(err)
				}
				cfg := upgrade.Config{
					Consul:            upgrade.NewConsul(client),
					Transport:         fake,
					Target:            "1.13.9",
					Snapshot:          func(context.Context, string, string) (upgrade.SnapshotSink, error) { return discard{}, nil },
					StabilizationTime: time.Nanosecond,
					GateMaxInterval:   time.Millisecond,
					ClientConcurrency: 64,
					Policy:            planner.Policy{},
				}
				runtime.GC()
				stop := heapPeak()
				cpu0 := cpuTime()
				b.StartTimer()
				res, err := upgrade.Run(context.Background(), cfg)
				b.StopTimer()
				cpu += cpuTime() - cpu0
				peak = max(peak, stop())
				if err != nil {
					b.Fatalf("Run: %v", err)
				}
				for _, n := range sim.Nodes() {
					if n.Version != "1.13.9" || !n.Up {
						b.Fatalf("after the run %s runs %s (up %v), want 1.13.9", n.Name, n.Version, n.Up)
					}
				}
				if b.N == 1 {
					b.Logf("%d steps, %d member listings", len(res.Steps), sim.Calls("/v1/agent/members"))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*clients), "ns/client")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*clients), "cpu-ns/client")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
}

// TestRunOfAThousandClientsListsMembersPerStepNotPerClient runs the
// benchmark's upgrade at a smaller scale in virtual time, so the plain test
// run guards what the benchmark measures: every agent reaches the target,
// each client is swapped once, and the member list is read a bounded
// number of times per step, never once per client.
func TestRunOfAThousandClientsListsMembersPerStepNotPerClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const clients = 1_000
		sim := consultest.NewCluster(3, clients, "1.12.9")
		fake := sim.NewFake()
		client, err := sim.Client()
		if err != nil {
			t.Fatal(err)
		}
		res, err := upgrade.Run(t.Context(), upgrade.Config{
			Consul:            upgrade.NewConsul(client),
			Transport:         fake,
			Target:            "1.13.9",
			Snapshot:          func(context.Context, string, string) (upgrade.SnapshotSink, error) { return discard{}, nil },
			ClientConcurrency: 64,
		})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		swaps := map[string]int{}
		for _, c := range fake.Calls() {
			if c.Op == transporttest.OpSwap {
				swaps[c.Node]++
			}
		}
		for _, n := range sim.Nodes() {
			if n.Version != "1.13.9" || !n.Up {
				t.Fatalf("%s runs %s (up %v) after the run, want 1.13.9", n.Name, n.Version, n.Up)
			}
			if swaps[n.Name] != 1 {
				t.Fatalf("%s was swapped %d times, want once", n.Name, swaps[n.Name])
			}
		}
		// Each step observes once and its gate reads the list a few times
		// while agents restart; per client it would be thousands.
		got, limit := sim.Calls("/v1/agent/members"), 10*len(res.Steps)
		if got > limit {
			t.Errorf("%d member listings for %d steps, want at most %d", got, len(res.Steps), limit)
		}
		t.Logf("%d clients: %d steps, %d member listings", clients, len(res.Steps), got)
	})
}
