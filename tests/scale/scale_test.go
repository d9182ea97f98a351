package scale

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

var (
	flagServers     = flag.Int("scale.servers", 3, "servers of the cluster (1-9)")
	flagClients     = flag.Int("scale.clients", 20, "clients of the cluster (1-2000)")
	flagFrom        = flag.String("scale.from", "1.12.9", "the version the cluster starts on")
	flagTo          = flag.String("scale.to", "1.13.9", "the version upgrade.Run takes it to")
	flagOut         = flag.String("scale.out", "", "`FILE` to write the result's JSON line to (scripts/bench-scale.sh prints it last)")
	flagPIDFile     = flag.String("scale.pidfile", "", "`FILE` to write the path of the rig's pid file to, as soon as the cluster's block is known (the script kills what it lists when the benchmark is gone)")
	flagGOMEMLIMIT  = flag.String("scale.agent-gomemlimit", "", "GOMEMLIMIT of every agent (\"\": the Go default, no limit)")
	flagGOGC        = flag.String("scale.agent-gogc", "", "GOGC of every agent (\"\": the Go default, 100)")
	flagGOMAXPROCS  = flag.String("scale.agent-gomaxprocs", "", "GOMAXPROCS of every agent (\"\": the Go default, one per core)")
	flagStartConc   = flag.Int("scale.start-concurrency", 8, "agents started at once")
	flagWriteEvery  = flag.Duration("scale.write-every", 20*time.Millisecond, "the writer's interval")
	flagWatchers    = flag.Int("scale.watchers", 3, "blocking-query watchers, each through its own client")
	flagSampleEvery = flag.Duration("scale.sample-every", 0, "interval of the agents' memory samples (0: 2s, plus 10ms per agent)")
	flagTimeout     = flag.Duration("scale.timeout", 0, "bound on upgrade.Run (0: 10 minutes plus 3s per client)")
)

func TestMain(m *testing.M) {
	if os.Getenv(loadEnv) != "" {
		os.Exit(loadMain())
	}
	os.Exit(m.Run())
}

// say prints a progress line, with the time since the benchmark began.
var began = time.Now()

func say(format string, a ...any) {
	fmt.Printf("[%7.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, a...))
}

// BenchmarkScale upgrades a real cluster of -scale.servers servers and
// -scale.clients clients from -scale.from to -scale.to (see the package
// doc) and writes its Result to -scale.out. It runs once whatever b.N is;
// scripts/bench-scale.sh runs it with -test.benchtime=1x.
func BenchmarkScale(b *testing.B) {
	res := Result{Servers: *flagServers, Clients: *flagClients, From: *flagFrom, To: *flagTo}
	phase := "checking the flags"
	var interrupted atomic.Bool
	defer func() {
		switch {
		case res.Err == "" && interrupted.Load() && b.Failed():
			res.Err = "interrupted while " + phase
		case res.Err == "" && b.Failed():
			res.Err = "failed while " + phase + " (see the log above)"
		}
		say("detail: %s", res.DetailLine())
		if *flagOut != "" {
			if err := os.WriteFile(*flagOut, []byte(res.Line()+"\n"), 0o644); err != nil {
				b.Errorf("writing the result: %v", err)
			}
		} else {
			fmt.Println(res.Line())
		}
	}()
	if res.Servers < 1 || res.Servers > consulrig.MaxServers || res.Clients < 1 || res.Clients > consulrig.MaxClients {
		res.Err = fmt.Sprintf("%d servers and %d clients: the rig takes 1-%d servers and 1-%d clients (the writer needs one)", res.Servers, res.Clients, consulrig.MaxServers, consulrig.MaxClients)
		b.Fatal(res.Err)
	}
	if _, err := planner.ParseVersion(res.From); err != nil {
		res.Err = err.Error()
		b.Fatal(err)
	}
	if _, err := planner.ParseVersion(res.To); err != nil {
		res.Err = err.Error()
		b.Fatal(err)
	}

	// SIGINT or SIGTERM: the run is cancelled (it halts), the benchmark
	// ends and the rig kills every agent by pid. Signals within 2s of the
	// first are its echo (the terminal's and the script's); a later one
	// exits at once (the kernel then kills the agents: parent-death
	// signal; the script kills any left).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		var first time.Time
		for s := range sigs {
			switch {
			case first.IsZero():
				first = time.Now()
				interrupted.Store(true)
				say("%s: the run is cancelled; the agents are stopped when it has halted (again to exit at once)", s)
				cancel()
			case time.Since(first) > 2*time.Second:
				say("%s again: exiting now", s)
				os.Exit(130)
			}
		}
	}()

	// The agents' runtime tuning: their environment is this process's
	// (transport/local does not set one), and this process's own Go
	// runtime read GOGC, GOMEMLIMIT and GOMAXPROCS when it started.
	var env []string
	if *flagGOMAXPROCS != "" {
		os.Setenv("GOMAXPROCS", *flagGOMAXPROCS)
		env = append(env, "GOMAXPROCS="+*flagGOMAXPROCS)
	}
	if *flagGOMEMLIMIT != "" {
		os.Setenv("GOMEMLIMIT", *flagGOMEMLIMIT)
		env = append(env, "GOMEMLIMIT="+*flagGOMEMLIMIT)
	}
	if *flagGOGC != "" {
		os.Setenv("GOGC", *flagGOGC)
		env = append(env, "GOGC="+*flagGOGC)
	}
	res.Detail.AgentEnv = strings.Join(env, " ")
	agents := res.Servers + res.Clients

	phase = "starting the cluster"
	say("starting %d servers and %d clients on consul %s (%d at a time; agents' env: %q)", res.Servers, res.Clients, res.From, *flagStartConc, res.Detail.AgentEnv)
	start := time.Now()
	quiet := []string{"-log-level=info"}
	cl := consulrig.Start(b, consulrig.Options{
		Servers: res.Servers, Clients: res.Clients, Version: res.From,
		StartConcurrency: *flagStartConc,
		Context:          ctx, // a signal while hundreds start stops the starting
		ReadyTimeout:     time.Minute + time.Duration(agents)*time.Second,
		ExtraServerArgs:  quiet, ExtraClientArgs: quiet,
	})
	pidFile := filepath.Join(consulrig.LockDir, fmt.Sprintf("block-%d.pids", cl.Block()))
	if *flagPIDFile != "" {
		if err := os.WriteFile(*flagPIDFile, []byte(pidFile+"\n"), 0o644); err != nil {
			b.Fatalf("writing -scale.pidfile: %v", err)
		}
	}
	res.Detail.StartS = time.Since(start).Seconds()
	say("cluster healthy in %.1fs (block %d; pids in %s)", res.Detail.StartS, cl.Block(), pidFile)

	clients := cl.Clients()
	// The orchestrator talks to a few clients (the last, the middle and the
	// first one) and moves on to the next when the one it talks to is
	// swapped (the waves take the clients in the order of their names, so
	// which is swapped first depends on the count).
	var addrs []string
	for _, c := range []string{clients[len(clients)-1], clients[len(clients)/2], clients[0]} {
		if a := cl.HTTPAddr(c); !contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	consul, err := upgrade.ConnectAddrs(func(from, to string, cause error) { say("orchestrator: agent %s -> %s (%v)", from, to, cause) }, addrs...)
	if err != nil {
		b.Fatal(err)
	}
	phase = "waiting for a cluster ready for an upgrade"
	if err := waitReady(ctx, consul, res.Servers, 2*time.Minute); err != nil {
		res.Err = err.Error()
		b.Fatal(err)
	}

	var (
		mu       sync.Mutex
		swapped  int
		inFlight = map[string]time.Time{}
		flight   flightLog
		waveFrom time.Time
		waveTime time.Duration
		waveCPU0 time.Duration
		waveCPU  time.Duration
	)
	cfg := upgrade.Config{
		Consul:      consul,
		Transport:   cl.Transport(),
		Target:      res.To,
		Snapshot:    upgrade.SnapshotDir(b.TempDir()),
		GateTimeout: 10 * time.Minute,
		ServerAPI:   upgrade.ServerHTTP(8500),
		OnEvent: func(ev upgrade.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch ev.Kind {
			case upgrade.EventStepStarted:
				res.Detail.Steps++
				if ev.Step.Kind == planner.StepSwapClients {
					waveFrom, waveCPU0 = ev.Time, cpuTime()
					bound := max(1, (len(ev.Step.Nodes)*upgrade.DefaultClientConcurrencyPercent+99)/100)
					res.Detail.Bound = max(res.Detail.Bound, bound)
					say("step %d of %d: %s wave %d, %d client(s), %d at a time", ev.Index+1, ev.Total, ev.Step.Datacenter, ev.Step.Wave, len(ev.Step.Nodes), bound)
				} else {
					say("step %d of %d: %s", ev.Index+1, ev.Total, ev.Step)
				}
			case upgrade.EventNodeStopped:
				if ev.Step.Kind == planner.StepSwapClients {
					inFlight[ev.Node] = ev.Time
					flight.change(ev.Time, len(inFlight))
				}
			case upgrade.EventNodeSwapped:
				if _, ok := inFlight[ev.Node]; ok {
					delete(inFlight, ev.Node)
					flight.change(ev.Time, len(inFlight))
				}
				if ev.Err == nil {
					swapped++
					if swapped%max(1, res.Clients/20) == 0 || swapped == res.Clients {
						say("  %d of %d clients swapped", swapped, res.Clients)
					}
				} else {
					say("  client %s: %v", ev.Node, ev.Err)
				}
			case upgrade.EventStepDone:
				if ev.Step.Kind == planner.StepSwapClients {
					res.Waves++
					waveTime += ev.Time.Sub(waveFrom)
					waveCPU += cpuTime() - waveCPU0
				}
				say("  done: %s", ev.Detail)
			case upgrade.EventGateWaiting:
				say("  waiting %.0fs: %s: %s", ev.Waited.Seconds(), ev.Condition, ev.Detail)
			case upgrade.EventHalted:
				say("halted: %v", ev.Err)
			case upgrade.EventDone:
				say("done: %s", ev.Detail)
			}
		},
	}
	timeout := *flagTimeout
	if timeout == 0 {
		timeout = 10*time.Minute + time.Duration(res.Clients)*3*time.Second
	}
	rctx, rcancel := context.WithTimeout(ctx, timeout)
	defer rcancel()

	phase = "starting the load"
	watchers := []string{}
	for i := 1; i < len(clients) && len(watchers) < *flagWatchers; i++ {
		watchers = append(watchers, cl.HTTPAddr(clients[i]))
	}
	if len(watchers) == 0 && *flagWatchers > 0 {
		watchers = append(watchers, cl.HTTPAddr(clients[0])) // a cluster of one client
	}
	res.Detail.Watchers = len(watchers)
	sampleEvery := *flagSampleEvery
	if sampleEvery == 0 {
		sampleEvery = 2*time.Second + time.Duration(agents)*10*time.Millisecond
	}
	stopLoad, err := startLoad(loadConfig{Writer: cl.HTTPAddr(clients[0]), Watchers: watchers, WriteEvery: *flagWriteEvery, PIDFile: pidFile, SampleEvery: sampleEvery})
	if err != nil {
		res.Err = err.Error()
		b.Fatal(err)
	}
	loadStopped := false
	defer func() {
		if !loadStopped {
			stopLoad()
		}
	}()
	time.Sleep(time.Second) // a first memory sample of the idle cluster, the writer under way

	phase = "running the upgrade"
	say("upgrade.Run %s -> %s, writer through %s, %d watcher(s)", res.From, res.To, clients[0], len(watchers))
	cpu0 := cpuTime()
	t0 := time.Now()
	b.ResetTimer()
	_, runErr := upgrade.Run(rctx, cfg)
	b.StopTimer()
	res.WallS = time.Since(t0).Seconds()
	res.OrchestratorCPUS = (cpuTime() - cpu0).Seconds()
	mu.Lock()
	res.ClientsSwapped = swapped
	res.Detail.ClientWavesS, res.Detail.ClientWavesCPUS = waveTime.Seconds(), waveCPU.Seconds()
	res.Detail.InFlightMax, res.Detail.InFlightMean = flight.max, flight.mean()
	mu.Unlock()
	if res.ClientsSwapped > 0 {
		res.Detail.CPUMsPerClientSwap = waveCPU.Seconds() * 1000 / float64(res.ClientsSwapped)
		res.Detail.CPUMsPerClientSwapAll = res.OrchestratorCPUS * 1000 / float64(res.ClientsSwapped)
	}
	if waveTime > 0 {
		res.Detail.SwapsPerS = float64(res.ClientsSwapped) / waveTime.Seconds()
	}
	say("run ended after %.1fs: %d clients swapped in %d waves, orchestrator CPU %.2fs", res.WallS, res.ClientsSwapped, res.Waves, res.OrchestratorCPUS)

	if runErr == nil {
		phase = "waiting for gossip to converge"
		conv := time.Now()
		if err := converged(ctx, cl, res.To, 10*time.Minute); err != nil {
			res.Err = err.Error()
		}
		res.GossipConvergedS = time.Since(conv).Seconds()
		say("gossip converged %.2fs after the run", res.GossipConvergedS)
	}

	phase = "stopping the load"
	loadStopped = true
	ls, lerr := stopLoad()
	res.FailedWrites, res.LongestFailureS, res.Lost = ls.Failed, ls.LongestBurst.Seconds(), ls.Lost
	res.Detail.Acked, res.Detail.Bursts = ls.Acked, ls.Bursts
	res.Detail.WatchAnswers, res.Detail.WatchErrors, res.Detail.WatchRegressions = ls.WatchAnswers, ls.WatchErrors, ls.WatchRegressions
	res.Detail.WatchLongestGapS = ls.WatchLongestGap.Seconds()
	res.AgentsPeakRSSMB = float64(ls.Mem.PeakRSS) / 1e6
	res.Detail.AgentsPeakPSSMB = float64(ls.Mem.PeakPSS) / 1e6
	res.Detail.MachineUsedPeakMB = float64(ls.Mem.MachinePeak) / 1e6
	res.Detail.ServerRSSMBFrom, res.Detail.ClientRSSMBFrom = float64(ls.Mem.First["server"].RSS)/1e6, float64(ls.Mem.First["client"].RSS)/1e6
	res.Detail.ServerRSSMBTo, res.Detail.ClientRSSMBTo = float64(ls.Mem.Last["server"].RSS)/1e6, float64(ls.Mem.Last["client"].RSS)/1e6
	res.Detail.ClientPSSMBFrom, res.Detail.ClientPSSMBTo = float64(ls.Mem.First["client"].PSS)/1e6, float64(ls.Mem.Last["client"].PSS)/1e6
	res.OrchestratorPeakRSSMB = float64(peakRSS()) / 1e6

	var errs []string
	switch {
	case interrupted.Load():
		errs = append(errs, "interrupted")
	case runErr != nil:
		errs = append(errs, "run: "+runErr.Error())
	}
	if res.Err != "" {
		errs = append(errs, res.Err)
	}
	if lerr != nil {
		errs = append(errs, "load: "+lerr.Error())
	}
	if ls.Err != "" {
		errs = append(errs, "load: "+ls.Err)
	}
	if runErr == nil && res.ClientsSwapped != res.Clients {
		errs = append(errs, fmt.Sprintf("%d of %d clients swapped", res.ClientsSwapped, res.Clients))
	}
	if res.Lost > 0 {
		errs = append(errs, fmt.Sprintf("%d acknowledged writes lost", res.Lost))
	}
	res.Err = strings.Join(errs, "; ")
	switch {
	case res.Err == "":
	case interrupted.Load():
		say("%s", res.Err)
	default: // the agents' log tails follow
		b.Error(res.Err)
	}
	phase = "stopping the cluster"
	say("stopping %d agents", agents)
}

// waitReady waits until the cluster has a leader and n servers that are
// healthy voters, as upgrade.Discover sees it.
func waitReady(ctx context.Context, consul upgrade.Consul, n int, bound time.Duration) error {
	last := "no answer yet"
	for deadline := time.Now().Add(bound); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(500 * time.Millisecond) {
		c, err := upgrade.Discover(ctx, consul)
		if err != nil {
			last = err.Error()
			continue
		}
		healthy, leaders := 0, 0
		for _, s := range c.Servers {
			if s.Healthy && s.Voter {
				healthy++
			}
			if s.Leader {
				leaders++
			}
		}
		if healthy == n && len(c.Servers) == n && leaders == 1 {
			return nil
		}
		last = fmt.Sprintf("%d of %d servers healthy voters, %d leader(s)", healthy, len(c.Servers), leaders)
	}
	return fmt.Errorf("the cluster never became ready for an upgrade within %s: %s", bound, last)
}

// converged waits until every server lists every node of the cluster
// alive on version to.
func converged(ctx context.Context, cl *consulrig.Cluster, to string, bound time.Duration) error {
	nodes := cl.Nodes()
	last := errors.New("not checked yet")
	for deadline := time.Now().Add(bound); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
		last = nil
		for _, s := range cl.Servers() {
			ms, err := cl.Members(ctx, s)
			if err != nil {
				last = err
				break
			}
			seen := map[string]consulrig.Member{}
			for _, m := range ms {
				seen[m.Name] = m
			}
			for _, n := range nodes {
				if m, ok := seen[n]; !ok || m.Status != 1 || m.Build() != to {
					last = fmt.Errorf("%s sees %s as %+v", s, n, m)
					break
				}
			}
			if last != nil {
				break
			}
		}
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("gossip did not converge within %s: %w", bound, last)
}

// flightLog integrates the number of client swaps in flight over time.
type flightLog struct {
	max      int
	n        int
	since    time.Time
	first    time.Time
	integral time.Duration // sum of n × time
	busy     time.Duration // time with n > 0
}

func (f *flightLog) change(at time.Time, n int) {
	if !f.since.IsZero() && f.n > 0 {
		d := at.Sub(f.since)
		f.integral += time.Duration(f.n) * d
		f.busy += d
	}
	if f.first.IsZero() {
		f.first = at
	}
	f.n, f.since = n, at
	f.max = max(f.max, n)
}

// mean is the mean number in flight while any was.
func (f *flightLog) mean() float64 {
	if f.busy == 0 {
		return 0
	}
	return float64(f.integral) / float64(f.busy)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is this process's peak RSS in bytes.
func peakRSS() uint64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return uint64(ru.Maxrss) * 1024 // kB on Linux
}
