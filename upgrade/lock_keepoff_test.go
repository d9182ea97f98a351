package upgrade

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// redirect sends every request to the agent whose address target holds,
// through the simulator: a proxy the test turns from one agent to another.
type redirect struct {
	target *atomic.Value // string: an agent's address
	next   http.RoundTripper
}

func (r redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	host := net.JoinHostPort(r.target.Load().(string), "8500")
	req = req.Clone(req.Context())
	req.URL.Host, req.Host = host, host
	return r.next.RoundTrip(req)
}

// On simulated agents of the eras before 1.0, where a session is bound to
// the serfHealth of the agent it was taken through whatever it asks: two
// locks are taken through the client c1, one is moved off c1 by keepOff
// (as a run does before it stops c1), and c1 is killed (renewals go on
// through s1). The lock left on c1 is lost; the moved one is held, on a
// session of s1. tests/e2e/lock's TestRealALockTakenThroughANodeDiesWithIt
// shows that real 0.7.5 and 0.9.3 agents bind and end such sessions as the
// simulator does here.
func TestAMovedLockSurvivesTheDeathOfItsFirstNode(t *testing.T) {
	for _, tc := range []struct {
		version string
		era     consultest.Era
	}{{"0.7.5", consultest.Era07}, {"0.9.3", consultest.Era08Raft2}} {
		t.Run(tc.version, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := consultest.NewCluster(1, 1, tc.version, consultest.WithEra(tc.era))
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
				defer cancel()
				c1, s1 := "c1", "s1"
				// The locks' agent is c1 until the test kills c1, then s1,
				// so that renewals go on (without a failover, which would
				// move the lock left on c1 too).
				var target atomic.Value
				target.Store(nodeAddr(t, sim, c1))
				client, err := api.NewClient(&api.Config{Address: consultest.Address, Scheme: "http",
					HttpClient: &http.Client{Transport: redirect{target: &target, next: sim.RoundTripper()}}})
				if err != nil {
					t.Fatal(err)
				}
				server, err := sim.ClientAt(nodeAddr(t, sim, s1))
				if err != nil {
					t.Fatal(err)
				}
				c := NewConsul(client).(Locker)
				moved, err := c.Lock(ctx, "test/moved", LockHolder{Holder: "moved"})
				if err != nil {
					t.Fatal(err)
				}
				defer moved.Release(context.WithoutCancel(ctx))
				left, err := c.Lock(ctx, "test/left", LockHolder{Holder: "left"})
				if err != nil {
					t.Fatal(err)
				}
				defer left.Release(context.WithoutCancel(ctx))
				if got := lockSessionNode(t, server, "test/left"); got != c1 {
					t.Fatalf("the lock taken through %s has its session on %q", c1, got)
				}

				from, err := moved.keepOff(ctx, keepRequest{nodes: []string{c1}, to: s1})
				if err != nil || from.from != c1 {
					t.Fatalf("keepOff = %+v, %v; want moved off %s", from, err, c1)
				}
				if err := sim.Kill(c1); err != nil {
					t.Fatal(err)
				}
				target.Store(nodeAddr(t, sim, s1))
				// Wait for the lock left on c1 to be reported lost
				// (renewals every 5 s).
				deadline := time.Now().Add(45 * time.Second)
				for ; time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
					if lostNow(left) {
						break
					}
				}
				if !lostNow(left) {
					t.Fatalf("consul %s: the lock left on the dead %s was not lost within 45 s", tc.version, c1)
				}
				if lostNow(moved) {
					t.Fatal("the lock moved off c1 was lost too")
				}
				if err := sim.Swap(c1, tc.version, true); err != nil {
					t.Fatal(err)
				}
				p, _, err := server.KV().Get("test/moved", (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
				if err != nil || p == nil || p.Session == "" {
					t.Fatalf("the moved lock's key: %+v, %v; want it held", p, err)
				}
				info, _, err := server.Session().Info(p.Session, nil)
				if err != nil || info == nil || info.Node != s1 {
					t.Fatalf("the moved lock's session: %+v, %v; want one on %s", info, err, s1)
				}
				if p, _, err := server.KV().Get("test/left", nil); err != nil || p != nil {
					t.Errorf("the lost lock's key: %+v, %v; want it deleted with its session", p, err)
				}
			})
		})
	}
}

// lockSessionNode is the node of the session holding key, "" when none.
func lockSessionNode(t *testing.T, c *api.Client, key string) string {
	t.Helper()
	p, _, err := c.KV().Get(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil || p.Session == "" {
		return ""
	}
	s, _, err := c.Session().Info(p.Session, nil)
	if err != nil || s == nil {
		t.Fatalf("session %s of %s: %+v, %v", p.Session, key, s, err)
	}
	return s.Node
}

func lostNow(l *Lock) bool {
	select {
	case <-l.Lost:
		return true
	default:
		return false
	}
}
