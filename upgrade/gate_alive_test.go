package upgrade

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// crashLooping is a server's own HTTP API that refuses connections for
// down out of every cycle, counted from start (a supervisor restarting an
// agent that crashes every cycle-down).
type crashLooping struct {
	Consul
	start       time.Time
	cycle, down time.Duration
}

func (c crashLooping) AgentSelf(ctx context.Context) (map[string]map[string]any, error) {
	if time.Since(c.start)%c.cycle < c.down {
		return nil, syscall.ECONNREFUSED
	}
	return c.Consul.AgentSelf(ctx)
}

// A swapped server whose agent a supervisor restarts every 6 s (down for
// 1 s) looks healthy to autopilot, which never sees the outages; the gate
// polls the server's own HTTP API every AliveInterval, sees them, and never
// lets stability reach the 10 s stabilization time: it halts on stable,
// naming the outage. The same server without outages passes.
func TestGateSeesAServerThatCrashLoopsUnderAutopilotsNose(t *testing.T) {
	for _, loop := range []bool{true, false} {
		name := map[bool]string{true: "crash-looping", false: "steady"}[loop]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := consultest.NewCluster(3, 0, "1.12.9", consultest.WithStabilizationTime(10*time.Second),
					consultest.WithRestartDelay(3*time.Second))
				c := inProcessConsul(t, s)
				mustDo(t, s.Swap("s2", "1.13.9", true))
				start := time.Now()
				servers := simServers(t, s)
				if loop {
					inner := servers
					servers = func(node, addr string) (Consul, error) {
						sc, err := inner(node, addr)
						if err != nil || node != "s2" {
							return sc, err
						}
						return crashLooping{Consul: sc, start: start, cycle: 6 * time.Second, down: time.Second}, nil
					}
				}
				var last string
				opt := gateOptions{Timeout: 90 * time.Second, Since: start, MaxInterval: 2 * time.Second, ServerAPI: servers,
					OnWaiting: func(cond planner.GateCheck, node, detail string) { last = detail }}
				err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base3, opt)
				if !loop {
					if err != nil {
						t.Fatalf("a steady server's gate: %v", err)
					}
					return
				}
				var ge *GateError
				if !errors.As(err, &ge) || ge.Condition != planner.GateStable || ge.Node != "s2" {
					t.Fatalf("a crash-looping server's gate: %v, want a *GateError on stable for s2", err)
				}
				if !strings.Contains(ge.Detail, "s2's own HTTP API did not answer") {
					t.Errorf("the halt does not name the outage: detail %q (last report %q)", ge.Detail, last)
				}
			})
		})
	}
}

// unreachableAPI is a server's own HTTP API that never answers from here
// (bound to another interface, a firewall).
type unreachableAPI struct{ Consul }

func (unreachableAPI) AgentSelf(context.Context) (map[string]map[string]any, error) {
	return nil, syscall.ECONNREFUSED
}

// A ServerAPI that cannot reach the servers at all does not hold the gate:
// outages count only after the API has answered once. (The command's tests
// on the simulator, whose servers answer at no address, hung without this.)
func TestGateWithAServerAPIThatNeverAnswersStillPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.12.9", consultest.WithStabilizationTime(10*time.Second),
			consultest.WithRestartDelay(3*time.Second))
		c := inProcessConsul(t, s)
		mustDo(t, s.Swap("s2", "1.13.9", true))
		servers := func(node, addr string) (Consul, error) { return unreachableAPI{}, nil }
		opt := gateOptions{Timeout: 90 * time.Second, Since: time.Now(), MaxInterval: 2 * time.Second, ServerAPI: servers}
		if err := awaitGate(t.Context(), c, swapStep("s2", "1.12.9", "1.13.9"), base3, opt); err != nil {
			t.Fatalf("gate with an unreachable ServerAPI: %v", err)
		}
	})
}
