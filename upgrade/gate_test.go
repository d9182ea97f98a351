package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

var serverGate = []planner.GateCheck{
	planner.GateLeaderKnown, planner.GateVersion, planner.GateVoter, planner.GateAutopilotHealthy,
	planner.GateStable, planner.GateTrailingLogs, planner.GateFailureTolerance,
}

func swapStep(node, from, to string) planner.Step {
	return planner.Step{Kind: planner.StepSwapServer, Node: node, From: from, To: to, Gate: serverGate}
}

var base3 = Baseline{FailureTolerance: 1, MaxTrailingLogs: 250, ServerStabilizationTime: 10 * time.Second}

type waitLog struct {
	conds   []planner.GateCheck
	details []string
}

func (w *waitLog) opt(timeout time.Duration) gateOptions {
	return gateOptions{Timeout: timeout, OnWaiting: func(c planner.GateCheck, node, detail string) {
		w.conds = append(w.conds, c)
		w.details = append(w.details, detail)
	}}
}

func TestGatePassesOnlyOnceAutopilotIsHealthyAndTheServerStableForTheStabilizationTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9",
			consultest.WithStabilizationTime(10*time.Second), consultest.WithRestartDelay(20*time.Second))
		start := time.Now()
		mustDo(t, s.Swap("s2", "1.13.9", true)) // s2 restarts: failed and unhealthy (429) for 20s
		c := inProcessConsul(t, s)
		var w waitLog
		err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base3, w.opt(5*time.Minute))
		if err != nil {
			t.Fatalf("Gate: %v", err)
		}
		elapsed := time.Since(start)
		// Two attempts may lag: the first that sees s2 healthy, the first
		// after the stabilization time; the backoff's jitter (±50%) makes
		// each interval up to 1.5 × DefaultGateMaxInterval.
		if elapsed < 30*time.Second || elapsed > 30*time.Second+3*DefaultGateMaxInterval {
			t.Errorf("gate passed after %s, want just after 30s (20s restart + 10s stabilization)", elapsed)
		}
		if s.Calls("/v1/operator/autopilot/health") < 5 {
			t.Errorf("autopilot health was read %d times, want it polled while it answered 429", s.Calls("/v1/operator/autopilot/health"))
		}
		want := []planner.GateCheck{planner.GateAutopilotHealthy, planner.GateStable}
		if !equalChecks(w.conds, want) {
			t.Errorf("waiting reasons = %v (%q), want %v, each reported once", w.conds, w.details, want)
		}
	})
}

func TestGateFollowsALeaderChangeAndComparesLogsWithTheCurrentLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9",
			consultest.WithStabilizationTime(time.Second), consultest.WithStableSince(time.Now().Add(-time.Minute)))
		mustDo(t, s.SetLastIndex("s1", 5000)) // the old leader's stale index: s2 would trail it by far
		mustDo(t, s.SetLastIndex("s2", 1990))
		mustDo(t, s.SetLastIndex("s3", 2000))
		mustDo(t, s.SetLeader("")) // an election is under way
		time.AfterFunc(5*time.Second, func() {
			if err := s.SetLeader("s3"); err != nil {
				t.Error(err)
			}
		})
		c := inProcessConsul(t, s)
		var w waitLog
		start := time.Now()
		if err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base3, w.opt(time.Minute)); err != nil {
			t.Fatalf("Gate: %v", err)
		}
		if el := time.Since(start); el < 5*time.Second {
			t.Errorf("gate passed after %s, before a leader was known (5s)", el)
		}
		if len(w.conds) == 0 || w.conds[0] != planner.GateLeaderKnown {
			t.Errorf("first waiting reason = %v, want leader-known", w.conds)
		}
		for _, c := range w.conds {
			if c == planner.GateTrailingLogs {
				t.Errorf("trailing-logs was waited on: the gate compared s2 with the old leader s1, not the current leader s3")
			}
		}
	})
}

func TestGateTrailingLogsFailsWhenTheServerTrailsTheCurrentLeaderTooFar(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9", consultest.WithStableSince(time.Now().Add(-time.Minute)))
		mustDo(t, s.SetLastIndex("s1", 1000))
		mustDo(t, s.SetLastIndex("s2", 100))
		err := awaitGate(t.Context(), inProcessConsul(t, s), swapStep("s2", "1.12.9", "1.13.9"), base3, gateOptions{Timeout: 30 * time.Second})
		var ge *GateError
		if !errors.As(err, &ge) || ge.Condition != planner.GateTrailingLogs {
			t.Fatalf("err = %v, want a *GateError on trailing-logs", err)
		}
		if !strings.Contains(ge.Detail, "by 900 log entries") || !strings.Contains(ge.Detail, "at most 250") {
			t.Errorf("detail %q should give the gap (900) and the limit (250)", ge.Detail)
		}
	})
}

func TestGateTimesOutNamingNodeAndConditionWhenTheAPIIsDown(t *testing.T) {
	cases := []struct {
		name  string
		fault func(*consultest.Cluster)
	}{
		{"the API answers 500", func(s *consultest.Cluster) { s.SetDown(true) }},
		{"the API refuses connections", func(s *consultest.Cluster) { s.SetUnreachable(true) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := consultest.NewCluster(3, 0, "1.13.9")
				tc.fault(s)
				start := time.Now()
				err := awaitGate(t.Context(), inProcessConsul(t, s), swapStep("s2", "1.12.9", "1.13.9"), base3, gateOptions{Timeout: time.Minute})
				var ge *GateError
				if !errors.As(err, &ge) {
					t.Fatalf("err = %v, want *GateError", err)
				}
				if el := time.Since(start); el != time.Minute {
					t.Errorf("gave up after %s, want exactly the 1m0s timeout", el)
				}
				if ge.Node != "s2" || ge.Condition != planner.GateLeaderKnown {
					t.Errorf("GateError names %q / %q, want s2 / leader-known", ge.Node, ge.Condition)
				}
				if !errors.Is(err, ErrGateTimeout) {
					t.Errorf("err %v does not wrap ErrGateTimeout", err)
				}
				if !strings.Contains(err.Error(), "gate after swap-server s2 -> 1.13.9: leader-known did not hold within 1m0s") {
					t.Errorf("message %q does not explain the step, condition and limit", err)
				}
			})
		})
	}
}

func TestGateReportsANonVoterThatNeverBecomesAVoter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9", consultest.WithStableSince(time.Now().Add(-time.Minute)))
		mustDo(t, s.SetVoter("s2", false))
		err := awaitGate(t.Context(), inProcessConsul(t, s), swapStep("s2", "1.12.9", "1.13.9"), base3, gateOptions{})
		var ge *GateError
		if !errors.As(err, &ge) {
			t.Fatalf("err = %v, want *GateError", err)
		}
		if ge.Condition != planner.GateVoter || ge.Node != "s2" {
			t.Errorf("GateError on %q / %q, want voter / s2", ge.Condition, ge.Node)
		}
		want := "gate after swap-server s2 -> 1.13.9: voter did not hold within 5m0s: s2 is a non-voter in the raft configuration [autopilot checks: raft configuration and /v1/operator/autopilot/health]"
		if err.Error() != want {
			t.Errorf("message\n%q\nwant\n%q", err, want)
		}
	})
}

func TestGateAsksEachQuestionOncePerAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9", consultest.WithStableSince(time.Now().Add(-time.Minute)))
		// Stability counts from the gate's own first sight of the server
		// healthy, so only a zero stabilization time lets the first
		// attempt pass.
		base := base3
		base.Taken, base.ServerStabilizationTime = time.Now(), 0
		if err := awaitGate(t.Context(), inProcessConsul(t, s), swapStep("s2", "1.12.9", "1.13.9"), base, gateOptions{}); err != nil {
			t.Fatalf("Gate on a healthy cluster: %v", err)
		}
		for _, p := range []string{"/v1/status/leader", "/v1/agent/members", "/v1/operator/raft/configuration", "/v1/operator/autopilot/health"} {
			if n := s.Calls(p); n != 1 {
				t.Errorf("%s called %d times in one passing attempt, want 1", p, n)
			}
		}
	})
}

func TestGateFailureToleranceWaitsUntilItIsBackToTheBaseline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9", consultest.WithStableSince(time.Now().Add(-time.Minute)))
		mustDo(t, s.SetNeverHealthy("s3", true)) // tolerance stays 0 of the baseline 1
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", To: "1.13.9", Gate: []planner.GateCheck{planner.GateFailureTolerance}}
		err := awaitGate(t.Context(), inProcessConsul(t, s), step, base3, gateOptions{Timeout: 10 * time.Second})
		var ge *GateError
		if !errors.As(err, &ge) || ge.Condition != planner.GateFailureTolerance || ge.Detail != "failure tolerance is 0, was 1 before the upgrade" {
			t.Fatalf("err = %v, want failure-tolerance 0 vs 1", err)
		}
	})
}

func TestGateOnAClientWaveWaitsForEveryNodeToBeAliveOnTheNewVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(1, 3, "1.12.9")
		mustDo(t, s.Swap("c1", "1.13.9", true))
		mustDo(t, s.Swap("c2", "1.13.9", false)) // c2 did not come up
		step := planner.Step{Kind: planner.StepSwapClients, Nodes: []string{"c1", "c2"}, To: "1.13.9", Gate: []planner.GateCheck{planner.GateVersion, planner.GateSerfAlive}}
		err := awaitGate(t.Context(), inProcessConsul(t, s), step, base3, gateOptions{Timeout: 20 * time.Second})
		var ge *GateError
		if !errors.As(err, &ge) || ge.Node != "c2" {
			t.Fatalf("err = %v, want a *GateError naming c2", err)
		}
		if ge.Condition != planner.GateVersion || ge.Detail != "c2 (failed in serf) reports 1.12.9 in its serf build tag, want 1.13.9" {
			t.Errorf("GateError %q / %q", ge.Condition, ge.Detail)
		}
	})
}

func TestGateStopsAtOnceOnAConditionItDoesNotKnow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(1, 0, "1.13.9")
		start := time.Now()
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s1", To: "1.13.9", Gate: []planner.GateCheck{"quorum-vibes"}}
		err := awaitGate(t.Context(), inProcessConsul(t, s), step, base3, gateOptions{})
		var ge *GateError
		if !errors.As(err, &ge) || errors.Is(err, ErrGateTimeout) || !strings.Contains(err.Error(), "cannot be checked") {
			t.Fatalf("err = %v, want a permanent *GateError", err)
		}
		if time.Since(start) != 0 {
			t.Errorf("an unknown condition was retried for %s", time.Since(start))
		}
	})
}

func TestGateEndsWithTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9")
		mustDo(t, s.SetVoter("s2", false))
		ctx, cancel := context.WithTimeout(t.Context(), 7*time.Second)
		defer cancel()
		err := awaitGate(ctx, inProcessConsul(t, s), swapStep("s2", "1.12.9", "1.13.9"), base3, gateOptions{})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrGateTimeout) {
			t.Fatalf("err = %v, want the context's deadline, not the gate timeout", err)
		}
	})
}

func equalChecks(a, b []planner.GateCheck) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGateStabilityCountsFromTheSwapWhenAutopilotMissedAQuickRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9", consultest.WithStabilizationTime(10*time.Second))
		// Autopilot has seen s2 healthy for a minute: it never noticed the
		// restart, so StableSince predates the new process.
		time.Sleep(time.Minute)
		swapped := time.Now()
		c := inProcessConsul(t, s)
		opt := gateOptions{Timeout: 5 * time.Minute, Since: swapped}
		if err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base3, opt); err != nil {
			t.Fatalf("Gate: %v", err)
		}
		if waited := time.Since(swapped); waited < 10*time.Second {
			t.Errorf("gate passed %s after the swap, want at least the 10s ServerStabilizationTime counted from the swap", waited)
		}
	})
}

func TestGateKeepsAMeasuredStabilizationTimeOfZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9",
			consultest.WithStabilizationTime(0), consultest.WithRestartDelay(2*time.Second))
		c := inProcessConsul(t, s)
		base, err := MeasureBaseline(t.Context(), c)
		if err != nil {
			t.Fatalf("MeasureBaseline: %v", err)
		}
		if base.ServerStabilizationTime != 0 {
			t.Fatalf("measured ServerStabilizationTime = %s, want the configured 0s", base.ServerStabilizationTime)
		}
		mustDo(t, s.Swap("s2", "1.13.9", true))
		swapped := time.Now()
		opt := gateOptions{Timeout: time.Minute, Since: swapped}
		if err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base, opt); err != nil {
			t.Fatalf("Gate: %v", err)
		}
		if waited := time.Since(swapped); waited >= DefaultStabilizationTime {
			t.Errorf("gate waited %s: the measured 0s stabilization time was replaced by the %s default", waited, DefaultStabilizationTime)
		}
	})
}

func TestGateCountsStabilityFromTheLastTimeItSawTheServerUnhealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Autopilot (a new leader's, say) reports s2 healthy again with a
		// StableSince from an hour ago, although the gate saw it unhealthy
		// five seconds into the wait.
		s := consultest.NewCluster(3, 0, "1.13.9",
			consultest.WithStabilizationTime(10*time.Second), consultest.WithStableSince(time.Now().Add(-time.Hour)))
		mustDo(t, s.SetNeverHealthy("s2", true))
		c := inProcessConsul(t, s)
		start := time.Now()
		go func() {
			time.Sleep(5 * time.Second)
			mustDo(t, s.SetNeverHealthy("s2", false))
		}()
		opt := gateOptions{Timeout: time.Minute, Since: start, MaxInterval: 500 * time.Millisecond}
		if err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base3, opt); err != nil {
			t.Fatalf("Gate: %v", err)
		}
		if elapsed := time.Since(start); elapsed < 15*time.Second-time.Second {
			t.Errorf("gate passed %s after the swap; the server was unhealthy until 5s, so want about 15s (10s ServerStabilizationTime after the last unhealthy sighting)", elapsed)
		}
	})
}

// slowRaft is a Consul whose raft configuration reads hang from a moment
// on until the caller gives up, as a client agent's read does while its
// RPC waits on a killed server.
type slowRaft struct {
	*apiConsul
	from time.Time
}

func (s slowRaft) RaftConfiguration(ctx context.Context) (*api.RaftConfiguration, error) {
	if time.Now().Before(s.from) {
		return s.apiConsul.RaftConfiguration(ctx)
	}
	<-ctx.Done()
	return nil, fmt.Errorf("read raft configuration: %w", ctx.Err())
}

// A read cut short by the gate's own deadline says nothing of the cluster:
// the gate fails on the condition the last finished attempt saw failing
// (seen in CI: a gate waiting on failure-tolerance, while another server
// was down, was reported as failing on voter with "context deadline
// exceeded").
func TestGateTimingOutMidReadNamesTheConditionThatWasFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9", consultest.WithStableSince(time.Now().Add(-time.Minute)))
		mustDo(t, s.SetNeverHealthy("s3", true)) // tolerance stays 0 of the baseline 1
		c := slowRaft{apiConsul: inProcessConsul(t, s).(*apiConsul), from: time.Now().Add(50 * time.Second)}
		err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base3, gateOptions{Timeout: time.Minute})
		var ge *GateError
		if !errors.As(err, &ge) || !errors.Is(err, ErrGateTimeout) {
			t.Fatalf("err = %v, want a *GateError wrapping ErrGateTimeout", err)
		}
		if ge.Condition != planner.GateFailureTolerance || ge.Detail != "failure tolerance is 0, was 1 before the upgrade" {
			t.Errorf("the gate failed on %s (%s; %v), want failure-tolerance 0 vs 1, the last condition it saw failing", ge.Condition, ge.Detail, ge.Err)
		}
		if strings.Contains(err.Error(), "deadline exceeded") {
			t.Errorf("message %q blames the read the gate's own deadline cut short", err)
		}
	})
}

// An attempt that cannot read the server's health (the API unreachable)
// does not see it healthy: the stability count starts again after it. (The
// gate counted such an attempt as "healthy, not yet for long enough" and
// passed 10s after its first sighting, though the server could not be read
// for 3s of them.)
func TestGateStabilityCountsAgainAfterAnAttemptThatCouldNotReadTheServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.13.9", consultest.WithStableSince(time.Now().Add(-time.Hour)))
		c := inProcessConsul(t, s)
		start := time.Now()
		var back time.Time
		go func() {
			time.Sleep(5 * time.Second)
			s.SetUnreachable(true)
			time.Sleep(3 * time.Second)
			s.SetUnreachable(false)
			back = time.Now()
		}()
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", To: "1.13.9", Gate: []planner.GateCheck{planner.GateStable}}
		opt := gateOptions{Timeout: time.Minute, Since: start, MaxInterval: 500 * time.Millisecond}
		if err := awaitGate(t.Context(), c, step, base3, opt); err != nil {
			t.Fatalf("Gate: %v", err)
		}
		if back.IsZero() {
			t.Fatalf("the gate passed %s after it started, before the API was back", time.Since(start))
		}
		if waited := time.Since(back); waited < 10*time.Second {
			t.Errorf("the gate passed %s after the API answered again, want the 10s stabilization time counted from then", waited)
		}
	})
}
