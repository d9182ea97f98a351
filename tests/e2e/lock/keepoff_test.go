package lock_test

import (
	"context"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// On real agents before 1.0 a lock's session is bound to the serfHealth of
// the agent it was taken through, whatever the lock asks: two locks are
// taken with the public upgrade.Locker, one through the client c1 and one
// through the server s1 (where a run moves its lock before it stops c1),
// and c1 is killed until serf has found it failed (renewals go on through
// s1). The lock on c1 is lost and its key deleted; the one on s1 is held,
// on a session of s1. Moving a lock off c1 (keepOff, unexported) is tested
// on the simulator, which binds sessions as these agents do, by upgrade's
// TestAMovedLockSurvivesTheDeathOfItsFirstNode; on real agents, a run moves
// it in TestRealOneRunThroughAClientFrom064To093KeepsItsLock (chain_test.go).
func TestRealALockTakenThroughANodeDiesWithIt(t *testing.T) {
	for _, version := range []string{"0.7.5", "0.9.3"} {
		t.Run(version, func(t *testing.T) {
			cl := consulrig.Start(t, consulrig.Options{Servers: 1, Clients: 1, Version: version})
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			c1, s1 := cl.Clients()[0], cl.Servers()[0]
			// The agent of the lock taken through c1 is a proxy to c1 that
			// the test turns to s1 when it kills c1, so that renewals go on
			// (without a failover, which would move the lock left on c1).
			var target atomic.Value
			target.Store(cl.HTTPAddr(c1))
			proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(&url.URL{Scheme: "http", Host: target.Load().(string)})
			}})
			defer proxy.Close()
			client, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(proxy.URL, "http://")})
			if err != nil {
				t.Fatal(err)
			}
			server, err := api.NewClient(&api.Config{Address: cl.HTTPAddr(s1)})
			if err != nil {
				t.Fatal(err)
			}
			// moved is where a run moves its lock before it stops c1: on a
			// session of s1.
			moved, err := upgrade.NewConsul(server).(upgrade.Locker).Lock(ctx, "test/moved", upgrade.LockHolder{Holder: "moved"})
			if err != nil {
				t.Fatal(err)
			}
			defer moved.Release(context.WithoutCancel(ctx))
			left, err := upgrade.NewConsul(client).(upgrade.Locker).Lock(ctx, "test/left", upgrade.LockHolder{Holder: "left"})
			if err != nil {
				t.Fatal(err)
			}
			defer left.Release(context.WithoutCancel(ctx))
			for key, want := range map[string]string{"test/moved": s1, "test/left": c1} {
				if node, err := lockNodeOnAny(ctx, cl, key, s1); err != nil || node != want {
					t.Fatalf("the session of %s is on %q (%v), want %s", key, node, err, want)
				}
			}
			if err := cl.Transport().Stop(ctx, c1, transport.StopKill); err != nil {
				t.Fatal(err)
			}
			target.Store(cl.HTTPAddr(s1))
			// Wait for the server to see c1 failed, then for the lock left
			// on c1 to be reported lost (renewals every 5 s).
			deadline := time.Now().Add(45 * time.Second)
			for ; time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
				if lostNow(left) {
					break
				}
			}
			if !lostNow(left) {
				t.Fatalf("consul %s: the lock left on the dead %s was not lost within 45 s: its session is not bound to serfHealth in this era", version, c1)
			}
			if lostNow(moved) {
				t.Fatal("the lock on s1 was lost too")
			}
			if err := cl.Transport().Start(ctx, c1); err != nil {
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
	}
}

func lostNow(l *upgrade.Lock) bool {
	select {
	case <-l.Lost:
		return true
	default:
		return false
	}
}
