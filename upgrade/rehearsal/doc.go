// Package rehearsal rehearses a Consul upgrade on this machine before it
// is done for real, as the 2015 operator did twice by hand: it starts a
// replica of one datacenter on loopback addresses (the same servers on the
// same versions, a few of the clients), runs the same target and policy
// through upgrade.Run and transport/local while recorded KV traffic goes
// through every agent, checks the history for linearizability
// (Porcupine) and lost acknowledged writes, and writes a report people can
// look at:
//
//   - report.md: the run's status, the linearizability verdict, lost
//     writes, failed and indeterminate operations, elections, every step
//     with its act and gate wait, and the wall time against the sum of the
//     servers' stabilization waits;
//   - timeline.svg: answered operations per second, failures per second,
//     a band per step (darker while it waited for its gate), a dashed line
//     per election and a strip where no leader was known.
//
// Every agent process it starts is killed by its pid and waited for when
// Run returns, however it returns (a cancelled ctx included: wire Ctrl-C to
// ctx with signal.NotifyContext).
//
// The binaries come from the folder scripts/build-consul.sh fills
// (DefaultBinDir); a missing one is a *MissingBinaryError naming the
// command that builds it. Nothing is built by Run.
//
// Limits: one datacenter is replicated (the primary; the others are named
// in the report as not rehearsed); at most 9 servers (the loopback address
// plan) and MaxClients clients; the replica's leader is the one it elects,
// so the leader's name in the steps may differ from a reviewed plan's. A
// history that is not linearizable is checked again against the known
// defects of the versions rehearsed (consul#2644: stale consistent reads
// from a leader elected before it has replayed its log, before 0.9.0); the
// report names the defect when it explains every violation.
package rehearsal
