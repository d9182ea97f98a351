// Package transporttest helps test code that uses a transport.Transport and
// transports themselves, as testing/fstest does for file systems.
//
// Fake is an in-memory cluster of nodes that implements transport.Transport,
// transport.Rollbacker, transport.VersionReporter, transport.Provisioner and
// transport.ArtifactChecker. It records every call
// in order (Calls), exposes each node's state (Node), and injects faults on
// purpose:
//
//   - FailNext(node, err): the next swap of node fails with err and touches
//     nothing;
//   - HangNext(node): the next swap of node blocks until its ctx ends;
//   - ComeBackOld(node): the next swap "succeeds" but the agent still runs
//     its old version;
//   - ComeBackUnhealthy(node): the next swap runs the new version on an
//     agent that is not healthy;
//   - Broken(version): every swap to version leaves the node down with
//     transport.ErrNotRunning;
//   - MissingBinary(node, version): node has no binary of version (every
//     version with ""): CheckArtifact says so with a
//     *transport.ArtifactError, and a swap to it fails without touching
//     the node.
//
// Fake.OnSwap lets a cluster simulator mirror each swap into its own model
// (a planner.Cluster, for instance), reading the outcome with Node.
//
// Run is the conformance suite: it checks that a transport keeps the
// contract written in the transport package documentation.
//
// # Testing your own transport
//
// Write a test that calls Run with a function that builds a fresh Harness
// per subtest: your transport, one node running Harness.From, a version
// Harness.To it can install, and a State function that looks at the node
// from its host (which version runs, whether the agent is up, and an
// incarnation that changes on every agent start, such as the PID and start
// time of the process):
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T) transporttest.Harness {
//			tr, node := startOneAgent(t, "1.12.9") // your set-up; t.Cleanup tears it down
//			return transporttest.Harness{
//				Transport: tr, Node: node, Role: transport.RoleClient,
//				From: "1.12.9", To: "1.13.9",
//				State: tr.inspect, // your host-side view of the node
//			}
//		})
//	}
//
// A harness that cannot be built (binaries missing, no sshd) must fail the
// test with t.Fatal, not skip it. Each subtest runs under a ctx bounded by
// Harness.Timeout (two minutes by default), so the suite works both for
// the fake, where it takes milliseconds, and for real agents, where a swap
// takes seconds. The suite relies on no more than the contract: when Swap
// returns, the new agent process has been started; cluster health is not
// awaited.
//
// Subtests for optional interfaces (transport.Rollbacker,
// transport.VersionReporter, transport.ArtifactChecker) are left out, with
// a message, when the transport does not implement them. Set
// Harness.Missing to a version the transport cannot get, so that the
// artifact check is shown to refuse one.
//
// Every transport should call transport.ValidateRequest before it touches
// anything: the suite sends node names with shell metacharacters, malformed
// versions, unknown roles and stop modes, and a server swap with stop mode
// leave, and expects each refused with transport.ErrInvalidRequest and the
// node left exactly as it was.
package transporttest
