package upgrade

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// AliveInterval is how often a server's gate asks the swapped server's own
// HTTP API whether it is up while the gate waits (Config.ServerAPI
// needed). Autopilot does not see an agent that a supervisor restarts
// within a second or two: serf never marks it failed and the leader keeps
// the raft stats it last fetched. The gate's own attempts are seconds
// apart and can miss every outage. Polled this often, an outage of the
// agent's process (a refused connection) is seen, and the stable
// condition counts again from it: a server that crash-loops faster than
// the stabilization time never passes its gate, and the run halts on it
// (and rolls it back when Config.Rollback is set). Outages count only after
// the server's API has answered once in the gate, so a ServerAPI that
// cannot reach the servers from here changes nothing.
const AliveInterval = 500 * time.Millisecond

// aliveWatch polls one server's own /v1/agent/self in the background and
// remembers the last time it did not answer.
type aliveWatch struct {
	mu     sync.Mutex
	outage time.Time // last poll that got no answer (this host's monotonic clock)
	why    error
}

// watchAlive starts polling node's own HTTP API every interval until ctx
// ends. A poll that times out proves nothing (a loaded host) and is not
// counted; a refused or reset connection is, once the API has answered in
// this gate: an API that never answers (not reachable from here at the
// address ServerAPI builds) leaves the gate as it was without the watch.
func watchAlive(ctx context.Context, c Consul, node string, serverAPI ServerAPIFunc, interval time.Duration) *aliveWatch {
	w := &aliveWatch{}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		var sc Consul
		answered := false // outages count only once the API has answered
		for {
			if sc == nil {
				if members, err := c.Members(ctx); err == nil {
					if m := findMember(members, node); m != nil {
						sc, _ = serverAPI(node, m.Addr)
					}
				}
			}
			if sc != nil {
				pctx, cancel := context.WithTimeout(ctx, 4*interval)
				_, err := sc.AgentSelf(pctx)
				timedOut := pctx.Err() != nil
				cancel()
				if err == nil {
					answered = true
				}
				if err != nil && answered && !timedOut && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
					w.mu.Lock()
					w.outage, w.why = time.Now(), err
					w.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// last returns the last outage seen (zero: none) and its error.
func (w *aliveWatch) last() (time.Time, error) {
	if w == nil {
		return time.Time{}, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.outage, w.why
}

// watchesAlive reports whether a gate of step polls its server's own API:
// a server swap whose gate has the stable condition.
func watchesAlive(step planner.Step, opt gateOptions) bool {
	if step.Kind != planner.StepSwapServer || opt.ServerAPI == nil {
		return false
	}
	for _, g := range step.Gate {
		if g == planner.GateStable {
			return true
		}
	}
	return false
}

// outageDetail says, for a waiting report, that stability counts again
// from an outage the gate saw.
func outageDetail(node string, now time.Time, o outage) string {
	return fmt.Sprintf("; %s's own HTTP API did not answer %s ago (%s): a restart, so stability counts again from then", node, now.Sub(o.At).Round(100*time.Millisecond), o.Why)
}
