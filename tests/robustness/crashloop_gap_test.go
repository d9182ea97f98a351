package robustness_test

import "testing"

// TestASwappedServerThatCrashLoopsHaltsAndRollsBack: the target's agent is
// killed 5 s after every start and started again a second later, forever
// (a supervisor restarting a crashing agent). The run must halt on the
// swapped server's gate, roll that server back and touch nothing else.
//
// Autopilot keeps reporting such a server healthy: a one-second outage
// never turns it failed in serf, and the leader keeps the raft stats it
// last fetched from it. The gate's own attempts, seconds apart, missed the
// outages too, and the run went on to swap the next follower onto the same
// binary (1.12.9: ended without a leader; 1.15.4: halted at the leadership
// transfer to the crash-looping server). The gate now polls the swapped
// server's own HTTP API every upgrade.AliveInterval and counts stability
// again from every refused connection, so it halts on stable.
func TestASwappedServerThatCrashLoopsHaltsAndRollsBack(t *testing.T) {
	t.Parallel() // real clusters mostly wait (stabilization, timeouts): see scripts/test.sh
	for _, h := range hops {
		t.Run(h.String(), func(t *testing.T) { badTargetRun(t, h, crashing(true)) })
	}
}
