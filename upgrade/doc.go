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
// consul/api is used only in this package, behind the small Consul interface
// that NewConsul implements over an *api.Client.
package upgrade
