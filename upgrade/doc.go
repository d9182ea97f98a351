// Package upgrade runs a planned Consul upgrade against a live cluster. It is
// the IO shell around the pure planner: it observes the cluster (Discover),
// asks the planner for the next step (planner.Next), acts (a snapshot, a
// transport swap or a Consul leadership transfer) and then gates: it waits
// until the cluster is provably healthy again before anything else is
// touched.
//
// The caller's loop, which Run implements:
//
//  1. Discover the cluster, every time: the leader is re-read before every
//     step, so a leader change mid-run is simply observed.
//  2. Ask planner.Next for the next step; a refused plan touches nothing.
//  3. Act on the step: save and verify a snapshot, swap a server or a wave of
//     clients through the transport, or transfer leadership.
//  4. Gate on the step's conditions (leader known, version, voter,
//     autopilot-healthy, stable, trailing logs, failure tolerance, serf
//     alive) with exponential backoff, bound by a timeout and the context.
//  5. On any failure, halt: never cascade. Optionally roll the failed node
//     back and wait until the cluster is healthy again.
//
// # One run at a time
//
// Before its first action a run takes the cluster-wide upgrade lock (the KV
// key DefaultLockKey, held by a TTL session without health checks, so
// swapping the agent the run talks to does not drop it). A second run is
// refused with a *LockedError naming the holder, and touches nothing. A run
// whose lock is lost halts before its next step (ErrLockLost). The lock is
// given back when the run ends, however it ends; Config.NoLock opts out.
//
// # Datacenters
//
// Discover reads the LAN of the agent it talks to: the servers and clients of
// one datacenter (the other datacenters are listed, and Check warns with
// datacenter-not-observed that the plan leaves them alone). A federated
// cluster is upgraded with one Run per datacenter, each through an agent of
// that datacenter, in the order the path asks for: primary first, or last
// on the 1.2.4 and 1.6.10 paths with ACL replication (planner.Plan over a
// snapshot that holds every datacenter shows that order).
//
// consul/api is used only in this package, behind the small Consul interface
// that NewConsul implements over an *api.Client.
package upgrade
