// Package lock_test tests the run's upgrade lock on real agents of every
// era: it moves with a failover (move_test.go), a session bound to its
// agent's serfHealth before 1.0 dies with it (keepoff_test.go), and one run
// keeps it across 0.6.4 -> 0.9.3 (chain_test.go).
package lock_test

import (
	"context"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// lockSession returns the session holding key, read through c; nil when no
// session holds it.
func lockSession(ctx context.Context, t *testing.T, c *api.Client, key string) *api.SessionEntry {
	t.Helper()
	p, _, err := c.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	if p == nil || p.Session == "" {
		return nil
	}
	s, _, err := c.Session().Info(p.Session, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		t.Fatalf("read session %s: %v", p.Session, err)
	}
	return s
}

// lockNode returns the node of the session holding key, "" when none does.
func lockNode(ctx context.Context, t *testing.T, c *api.Client, key string) string {
	t.Helper()
	if s := lockSession(ctx, t, c, key); s != nil {
		return s.Node
	}
	return ""
}

// The lock of a run that fails over moves to a session made through the
// agent it now talks to, on real agents of each era: the session it was
// taken with belongs to the first agent's node, which a leader elected
// later may deregister (reaped) while that agent is dead, destroying the
// session. Before 0.7.0 there is no /v1/txn: the lock stays where it is.
//
// In the first cases the first agent stays alive and only the run loses it
// (its address is a proxy the test closes). In the last it is killed: from
// 1.0 the lock's session has no health checks and survives the agent's
// death. Before 1.0 Consul ignores the lock's "Checks": [] and binds the
// session to the agent's serfHealth, so there the lock survives a dead
// agent only if it moves before serf finds the agent failed; the test
// checks the checks each era gives the session.
func TestRealTheLockFollowsAFailover(t *testing.T) {
	cases := []struct {
		version string
		kill    bool
		// wantNode is the node of the lock's session afterwards, "" when
		// it is lost.
		wantNode string
	}{
		{"0.6.4", false, "c1"},
		{"0.7.5", false, "c2"},
		{"1.16.1", false, "c2"},
		{"0.9.3", false, "c2"},
		{"1.0.8", true, "c2"},
	}
	for _, tc := range cases {
		name := tc.version + "/proxy-closed"
		if tc.kill {
			name = tc.version + "/agent-killed"
		}
		t.Run(name, func(t *testing.T) {
			cl := consulrig.Start(t, consulrig.Options{Servers: 1, Clients: 2, Version: tc.version})
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			c1, c2 := cl.Clients()[0], cl.Clients()[1]
			first := cl.HTTPAddr(c1)
			var proxy *httptest.Server
			if !tc.kill {
				target, err := url.Parse("http://" + first)
				if err != nil {
					t.Fatal(err)
				}
				proxy = httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
				defer proxy.Close()
				first = strings.TrimPrefix(proxy.URL, "http://")
			}
			fc, err := upgrade.ConnectAddrs(nil, first, cl.HTTPAddr(c2))
			if err != nil {
				t.Fatal(err)
			}
			lk, err := fc.Lock(ctx, upgrade.DefaultLockKey, upgrade.LockHolder{Holder: "test", Target: "9.9.9"})
			if err != nil {
				t.Fatalf("lock through %s: %v", c1, err)
			}
			server := scenario.APIClient(t, cl, cl.Servers()[0])
			s := lockSession(ctx, t, server, upgrade.DefaultLockKey)
			if s == nil || s.Node != c1 {
				t.Fatalf("the lock's session is %+v, want one on node %s, the agent it was taken through", s, c1)
			}
			// Measured: 0.6.4 to 0.9.3 report Checks [serfHealth], 1.0.8
			// and later none.
			wantChecks := []string{}
			if v := tc.version; strings.HasPrefix(v, "0.") {
				wantChecks = []string{"serfHealth"}
			}
			if got := append(append([]string{}, s.Checks...), s.NodeChecks...); !slices.Equal(got, wantChecks) {
				t.Errorf("consul %s gave the lock's session the checks %v (node checks %v), want %v", tc.version, s.Checks, s.NodeChecks, wantChecks)
			}
			if tc.kill {
				if err := cl.Transport().Stop(ctx, c1, transport.StopKill); err != nil {
					t.Fatal(err)
				}
			} else {
				proxy.CloseClientConnections()
				proxy.Close()
			}
			if _, err := fc.Leader(ctx); err != nil {
				t.Fatalf("no failover to %s: %v", c2, err)
			}
			if got := fc.Current(); got != cl.HTTPAddr(c2) {
				t.Fatalf("calls go through %s, want %s", got, cl.HTTPAddr(c2))
			}
			// Renewals run every 5 s: wait for four of them, or for the
			// lock's session to be on the wanted node.
			deadline := time.Now().Add(21 * time.Second)
			n := lockNode(ctx, t, server, upgrade.DefaultLockKey)
			for time.Now().Before(deadline) && (n != tc.wantNode || tc.wantNode == c1) {
				time.Sleep(500 * time.Millisecond)
				n = lockNode(ctx, t, server, upgrade.DefaultLockKey)
			}
			if n != tc.wantNode {
				t.Errorf("21 s after the failover the lock's session is on node %q, want %q", n, tc.wantNode)
			}
			select {
			case <-lk.Lost:
				if tc.wantNode != "" {
					t.Fatal("the lock was lost")
				}
				return // nothing to release
			default:
				if tc.wantNode == "" {
					t.Fatal("the lock's key is gone but Lost is not closed")
				}
			}
			if err := lk.Release(ctx); err != nil {
				t.Fatalf("release: %v", err)
			}
			p, _, err := server.KV().Get(upgrade.DefaultLockKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			if p != nil {
				t.Errorf("after release the key is still there, held by session %q", p.Session)
			}
			sessions, _, err := server.Session().List(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sessions {
				t.Errorf("session %s on node %s left after release", s.ID, s.Node)
			}
		})
	}
}
