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
// Probes (package upgrade/probe) read the replica as the cluster's users
// do, through its first agent, before the upgrade, after each step (the
// mixed-version window) and after it: a blocking KV query that must
// advance (on a key under the traffic's prefix that the rehearsal
// writes), a blocking catalog query, `?passing` for Options.ProbeServices
// ("consul" by default), catalog nodes and services, and with
// Options.Token the ACL token and policy lists. report.md gets a probes
// row, a table of probe × phase (each phase with its servers' versions)
// and a finding for each probe that failed, naming the versions it failed
// on and whether it had passed before (it broke). Streaming and, in a
// federation, the secondary's /v1/acl/replication are not probed (one
// datacenter is replicated).
//
// On the cluster's own data (Options.WithData, or Options.Snapshot for a
// backup file): a backup of the live cluster is taken through
// Options.Source, which is only read (a Consul snapshot from 0.7.1, the
// logical backup of the KV tree below it), kept in a folder only the
// operator can read and removed when Run returns; it is restored into the
// replica on the cluster's versions before the upgrade. After the upgrade
// every KV entry and every service instance on a node that is not an agent
// is read back and compared with what the replica held once restored, and
// the report's data row says what was restored, what was not read back
// equal (each entry by name; values by length and SHA-256, never in
// clear) and whether every server started on the target: a state the new
// version cannot load shows as a server that did not come back, with its
// log's errors. ACL tokens and policies, intentions, config entries,
// sessions and prepared queries are restored with a snapshot but not
// compared (the replica runs without ACLs); the services of the cluster's
// agents are replaced by the replica's own agents, so they are not
// compared either.
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
