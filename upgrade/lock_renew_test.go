package upgrade

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// notReadyLeader answers every session renewal with 404, as a leader that
// has just won an election does before it has replayed its log, while a
// consistent read (which waits for the leader to be ready) still finds the
// session.
type notReadyLeader struct{ *consultest.Cluster }

func (h notReadyLeader) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1/session/renew/") {
		// The simulated cluster renews (the TTL does not run out in the
		// test); the answer is the not-ready leader's.
		h.Cluster.ServeHTTP(httptest.NewRecorder(), r)
		http.Error(w, "Session id not found", http.StatusNotFound)
		return
	}
	h.Cluster.ServeHTTP(w, r)
}

// A renewal's 404 alone does not lose the lock: the session is looked up
// with a consistent read first. Seen on real 1.12.9 -> 1.13.9 right after
// the leader's swap, where the run halted on a lock it still held. Once
// the session is really gone, the lock is lost.
func TestARenewalsNotFoundIsConfirmedBeforeTheLockIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 1, "1.12.9")
		c := inProcessConsul(t, notReadyLeader{s})
		lk, err := c.(Locker).Lock(t.Context(), DefaultLockKey, LockHolder{Holder: "test"})
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Release(t.Context())
		time.Sleep(3 * lockTTL) // every renewal in between answered 404
		select {
		case <-lk.Lost:
			t.Fatal("the lock was declared lost on renewals' 404 while the session exists")
		default:
		}
		for _, id := range s.Sessions() {
			s.InvalidateSession(id)
		}
		time.Sleep(lockTTL / 3)
		select {
		case <-lk.Lost:
		default:
			t.Fatal("the lock is not lost after its session was invalidated")
		}
	})
}
