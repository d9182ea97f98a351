package upgrade

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/consul/api"
)

// sessionServer answers session creation with status until fails runs
// out, then like Consul; it counts the creation attempts.
func sessionServer(t *testing.T, status int, body string, fails int32) (*apiConsul, *atomic.Int32) {
	t.Helper()
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/session/create":
			if attempts.Add(1) <= fails {
				http.Error(w, body, status)
				return
			}
			w.Write([]byte(`{"ID":"s-1"}`))
		case strings.HasPrefix(r.URL.Path, "/v1/kv/"):
			w.Write([]byte("true"))
		case strings.HasPrefix(r.URL.Path, "/v1/session/renew/"):
			w.Write([]byte(`[{"ID":"s-1"}]`))
		case strings.HasPrefix(r.URL.Path, "/v1/session/destroy/"):
			w.Write([]byte("true"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := api.NewClient(&api.Config{Address: srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	return &apiConsul{c: c}, &attempts
}

// Right after an agent starts, Consul answers session creation with a 500
// ("Missing node registration") until the agent's node is in the catalog:
// the lock waits for it instead of failing the run.
func TestTheLockRetriesASessionTheAgentCannotCreateYet(t *testing.T) {
	a, attempts := sessionServer(t, http.StatusInternalServerError, "Missing node registration", 2)
	l, err := a.Lock(t.Context(), DefaultLockKey, LockHolder{Holder: "test"})
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if n := attempts.Load(); n != 3 {
		t.Errorf("session creation attempts %d, want 3 (two 500s, then the session)", n)
	}
	if err := l.Release(context.Background()); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// A refusal (403: the token may not create sessions) is final.
func TestTheLockDoesNotRetryARefusedSession(t *testing.T) {
	a, attempts := sessionServer(t, http.StatusForbidden, "Permission denied", 100)
	if _, err := a.Lock(t.Context(), DefaultLockKey, LockHolder{Holder: "test"}); err == nil || !strings.Contains(err.Error(), "create session") {
		t.Fatalf("Lock = %v, want the create-session error", err)
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("session creation attempts %d, want 1", n)
	}
}
