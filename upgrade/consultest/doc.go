// Package consultest is an in-process simulated Consul datacenter for testing
// code that upgrades Consul, as net/http/httptest is for HTTP clients and
// testing/fstest for file systems.
//
// A Cluster is an http.Handler that answers, from a small model, the HTTP
// API calls an upgrade makes: serf members with their build and ACL tags, the
// Raft leader and configuration, autopilot health (429 while a server is
// unhealthy) and configuration, agent self, datacenters, snapshots, leader
// transfer, and the sessions and KV keys of a lock. NewCluster builds a
// healthy cluster of servers s1..sN (s1 leads) and clients c1..cM:
//
//	sim := consultest.NewCluster(3, 2, "1.12.9",
//		consultest.WithRestartDelay(2*time.Second),      // how long a swapped agent is down
//		consultest.WithStabilizationTime(10*time.Second), // autopilot ServerStabilizationTime
//		consultest.WithStableSince(time.Now().Add(-time.Hour)),
//	)
//	client, err := sim.Client() // a *api.Client served in-process, no socket
//
// Swap moves a node to another version: the agent is down for the restart
// delay (failed in serf, unhealthy in autopilot), then back and healthy; a
// swapped leader hands over to another healthy voter at once. Faults are
// set on purpose: SetNeverHealthy (a server autopilot never calls healthy),
// SetVoter, SetLastIndex (a server trailing the leader), SetLeader("") (an
// election under way), Kill (an agent stopped for good, failed in serf),
// RemoveDeadServer (autopilot's cleanup of a dead server: out of the raft
// configuration, left in serf), SetDown (every call answers 500), SetUnreachable
// (connections refused), InvalidateSession (a lost lock), WithSnapshot (a
// corrupt or missing snapshot). Calls, Transfers, Node, Leader, Sessions,
// LockHolder and HeldLocks let a test check what happened.
//
// WithEra makes the agents answer as those of an older API era would:
// Era04 (0.4/0.5) and Era06 (0.6) have no raft configuration, autopilot or
// snapshot API (404), no raft stats in /v1/agent/self, and the serf tags of
// their time (no id, raft_vsn or acls); Era07 adds the raft configuration
// (IDs are addresses), raft stats and snapshots; Era08Raft2 adds autopilot,
// whose health endpoint refuses to answer on raft protocol 2. Every era
// answers /v1/status/peers and stale reads with X-Consul-Index,
// X-Consul-LastContact and X-Consul-KnownLeader. ClientAt returns a client
// addressed to one agent (its /v1/agent/self and stale reads answer as that
// agent; refused while it is down), which is how a gate reaches each
// server's own state.
//
// Snapshot builds a valid snapshot archive (gzip-compressed tar with
// meta.json, state.bin and SHA256SUMS); SnapshotFiles, SnapshotSums and
// Archive build broken ones.
//
// The cluster reads the clock with time.Now and serves requests in the
// caller's goroutine (HandlerTransport), so inside a testing/synctest bubble
// a test of a whole upgrade with restarts and stabilization times runs in
// virtual time, in milliseconds.
//
// # Testing your orchestration
//
// Pair the cluster with a transporttest.Fake: NewFake returns one holding the
// cluster's nodes whose OnSwap hook mirrors every swap into the cluster, so
// the agents your code restarts through the fake go down and come back in
// the cluster your code observes through the API. The fake's faults carry
// over: a ComeBackOld swap leaves the node on its old version, a Broken
// version leaves it down, ComeBackUnhealthy keeps it unhealthy. With your
// own fake, set fake.OnSwap = sim.OnSwap(fake), or call Swap from your hook.
//
//	func TestMyUpgrade(t *testing.T) {
//		synctest.Test(t, func(t *testing.T) {
//			sim := consultest.NewCluster(3, 2, "1.12.9")
//			fake := sim.NewFake()
//			client, err := sim.Client()
//			if err != nil {
//				t.Fatal(err)
//			}
//			fake.ComeBackUnhealthy("s2") // the fault under test
//			err = myUpgrade(t.Context(), client, fake, "1.13.9")
//			// assert: the run halted on s2, nothing else was swapped,
//			// sim.Version("s3") is still "1.12.9", sim.HeldLocks() is empty...
//		})
//	}
//
// Outside a synctest bubble the cluster runs on the real clock: keep the
// restart delay and stabilization time short (milliseconds), as the package
// example does.
//
// A Cluster is one datacenter. A WAN federation is several clusters, one
// per datacenter, each with its own client: WithDatacenter names a
// cluster's datacenter and its primary, WithPeerDatacenters adds the other
// datacenters its catalog lists, and WithNodePrefix keeps node names apart
// (dc2-s1, dc2-c1, ...), as Consul requires across datacenters.
//
// The model is small on purpose: no WAN gossip between clusters, Raft
// indexes that only change through SetLastIndex, an election that is decided
// at once, sessions that only know the serfHealth check (invalidated when
// their node's agent is swapped) and a TTL (invalidated when not renewed for
// twice the TTL), no ACL enforcement, no blocking queries. Sessions and
// transactions follow the agents' versions, whatever the era: a session
// made through an agent before 1.0 is bound to serfHealth even when it asks
// for no checks, /v1/txn needs 0.7.0 on the agent addressed and the leader,
// and a transaction crashes a server before 0.7.0 (TxnCrashed). SetEra
// moves the whole cluster to another era, for a run across eras. A path it does not
// simulate answers 404, so a test learns at once that it relies on more than
// the model has.
//
// This package does not import the upgrade package, whose own tests use it.
package consultest
