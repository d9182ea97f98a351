// Package local is a transport for Consul agents that run as child processes
// on this host: each agent has its own loopback address (127.0.0.0/8 all
// routes to lo), its own data directory and log file, and the default Consul
// ports on that address (8300 RPC, 8301 serf LAN, 8302 serf WAN, 8500 HTTP,
// 8600 DNS).
//
// It exists for tests, demos and development clusters. It is not a way to run
// Consul on production hosts: the agents are children of the calling process
// and die with it (they are started with a parent-death signal), and nothing
// here supervises them. For real hosts use transport/ssh or transport/exec.
//
// A swap keeps the agent's data directory and configuration and changes only
// the binary it runs:
//
//  1. validate the request and resolve the target binary (touching nothing
//     when either fails);
//  2. if the agent already runs the target version and is alive, return at
//     once (swaps are idempotent);
//  3. stop the old process as the request's stop mode says (kill: SIGKILL,
//     the agent does not leave; terminate: SIGTERM, then SIGKILL after a
//     timeout; leave: `consul leave` with the running binary, then wait;
//     transport.ValidateRequest refuses leave for servers);
//  4. start the new binary with the same arguments and wait until its local
//     HTTP API answers /v1/agent/self with the target version.
//
// A start that fails (the process exits, or does not answer before ctx or the
// start timeout ends) returns a *transport.SwapError in phase start that wraps
// transport.ErrNotRunning and a *StartError carrying the last lines of the
// agent's log. Rollback puts the agent back on the binary it ran before.
package local
