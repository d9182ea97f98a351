// Package scale holds the benchmarks of upgrades at real size: real Consul
// agents on loopback, hundreds of them, upgraded by upgrade.Run through
// transport/local. They are benchmarks, not tests: `go test ./...` does
// not run them; scripts/bench-scale.sh does:
//
//	scripts/bench-scale.sh SERVERS CLIENTS FROM TO
//	scripts/bench-scale.sh 3 150 0.6.4 0.7.5
//	scripts/bench-scale.sh 3 700 0.6.4 0.7.5 // needs more than 2 cores (tests/README.md)
//
// BenchmarkScale (scale_test.go) starts the cluster with tests/rig/consul
// (every agent on its own loopback address with Consul's default ports:
// servers on 127.0.N.11.., clients on 127.0.N.21.. and, past 200 clients,
// 127.N.k.21..), its agents tuned through GOMAXPROCS (and, when asked, GOMEMLIMIT and GOGC),
// waits until it is healthy, then runs upgrade.Run with the default
// client waves while a child process of its own (so that its CPU is not
// the orchestrator's) writes a key every 20 ms through the first client,
// keeps blocking queries open through a few other clients, and samples
// the agents' memory. It prints its progress, and writes one JSON object
// (Result) to -scale.out: the script prints it as its last line.
//
// Every agent is a child of the benchmark, in a process group of its own,
// recorded by pid in /tmp/consulrig/block-N.pids: the benchmark stops them
// by pid when it ends (interrupted too: SIGINT or SIGTERM halts the run
// and ends the benchmark), the kernel kills them when it dies
// (parent-death signal), and the script kills any left by pid.
package scale
