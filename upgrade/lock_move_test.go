package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// moveFake is a lockMover over an in-memory key: sessions are made through
// the agent in use, and moveLock commits (or not) and answers as told.
type moveFake struct {
	current   string
	holder    string // the session holding the key
	seq       int
	destroyed []string
	// commit: whether a moveLock commits; answer: what it returns.
	commit bool
	answer error
	// readErr fails keySession.
	readErr error
	// bound: every session is bound to its node's serfHealth check (as
	// every session made through an agent before 1.0 is).
	bound bool
	// gone: the key was deleted (holder is then "").
	gone bool
	// acquireErr fails acquire (after it did what it would have, unless
	// acquireDrops); releaseErr fails releaseLock likewise (unless
	// releaseDrops).
	acquireErr, releaseErr     error
	acquireDrops, releaseDrops bool
	// stealOnRelease: another run's session takes the key as soon as the
	// lock's session releases it.
	stealOnRelease string
	// createErr fails createSession.
	createErr error
	txns      int // moveLock calls
}

func (f *moveFake) agent() string { return f.current }

func (f *moveFake) createSession(_ context.Context, body map[string]any) (string, error) {
	if f.createErr != nil {
		return "", f.createErr
	}
	f.seq++
	node := f.current
	if n, ok := body["Node"].(string); ok {
		node = n
	}
	return fmt.Sprintf("%s-%d", node, f.seq), nil
}

// sessionNode: a session's ID starts with its node's name.
func (f *moveFake) sessionNode(_ context.Context, id string) (string, []string, error) {
	node, _, _ := strings.Cut(id, "-")
	var checks []string
	if f.bound {
		checks = []string{"serfHealth"}
	}
	return node, checks, f.readErr
}

// acquire takes a free key (or one session already holds).
func (f *moveFake) acquire(_ context.Context, _ string, _ []byte, session string) (bool, error) {
	if f.acquireDrops {
		return false, f.acquireErr
	}
	ok := f.holder == "" || f.holder == session
	if ok {
		f.holder, f.gone = session, false
	}
	return ok, f.acquireErr
}

func (f *moveFake) holderValue(context.Context, string) ([]byte, error) {
	if f.gone {
		return nil, nil
	}
	return []byte("v"), nil
}

func (f *moveFake) renewSession(context.Context, string) (bool, error) { return true, nil }
func (f *moveFake) releaseKey(context.Context, string, string) error   { return nil }

func (f *moveFake) releaseLock(_ context.Context, _ string, _ []byte, session string) (bool, error) {
	if f.releaseDrops {
		return false, f.releaseErr
	}
	if f.holder != session {
		return false, f.releaseErr
	}
	f.holder = f.stealOnRelease
	return true, f.releaseErr
}

func (f *moveFake) destroySession(_ context.Context, id string) error {
	f.destroyed = append(f.destroyed, id)
	if f.holder == id {
		f.holder, f.gone = "", true // behavior "delete"
	}
	return nil
}

func (f *moveFake) moveLock(_ context.Context, _ string, _ []byte, from, to string) error {
	f.txns++
	if f.commit && f.holder == from {
		f.holder = to
	}
	return f.answer
}

func (f *moveFake) keySession(context.Context, string) (string, error) {
	return f.holder, f.readErr
}

// After a failover the lock moves to a session made through the agent now
// in use, and the old session (on the dead agent's node, which a new
// leader may deregister as reaped) is destroyed. An answer lost after the
// transaction committed, a rollback, a key held by neither session and an
// agent without transactions are each decided from what Consul says.
func TestTheLockMovesToTheAgentTheRunFailedOverTo(t *testing.T) {
	noAnswer := errors.New("dial tcp 127.0.0.22:8500: connect: connection refused")
	cases := []struct {
		name string
		fake moveFake
		// stolen: another session holds the key before the move.
		stolen bool
		// want: the session holding the lock afterwards; lost: the lock
		// is reported lost; pending: a session is left to decide.
		want             string
		lost, noMove     bool
		pending          string
		destroyed        []string
		retriesNextRenew bool
	}{
		{name: "committed", fake: moveFake{commit: true}, want: "c2-1", destroyed: []string{"c1-0"}},
		{name: "committed, answer lost", fake: moveFake{commit: true, answer: noAnswer}, want: "c2-1", destroyed: []string{"c1-0"}},
		{name: "not committed, no answer", fake: moveFake{answer: noAnswer}, want: "c1-0", destroyed: []string{"c2-1"}, retriesNextRenew: true},
		{name: "no answer, key unreadable", fake: moveFake{answer: noAnswer, readErr: noAnswer}, want: "c1-0", pending: "c2-1"},
		{name: "key held by another run", fake: moveFake{answer: errors.New("Unexpected response code: 409")}, stolen: true, want: "c1-0", lost: true, destroyed: []string{"c2-1"}},
		{name: "no transactions (before 0.7.0)", fake: moveFake{answer: fmt.Errorf("%w: it has no /v1/txn", errNoTxn)}, want: "c1-0", noMove: true, destroyed: []string{"c2-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fake
			f.current, f.holder = "c2", "c1-0"
			if tc.stolen {
				f.holder = "other-run"
			}
			st := &heldLock{key: DefaultLockKey, id: "c1-0", home: "c1"}
			if kept := st.move(&f, &f, nil, f.current); kept == tc.lost {
				t.Fatalf("move reported the lock kept=%v, want kept=%v", kept, !tc.lost)
			}
			if st.id != tc.want || st.pending != tc.pending || st.noMove != tc.noMove {
				t.Errorf("lock on %q (pending %q, noMove %v), want %q (pending %q, noMove %v)", st.id, st.pending, st.noMove, tc.want, tc.pending, tc.noMove)
			}
			if !tc.lost && f.holder != st.id && f.holder != st.pending {
				t.Errorf("the key is held by %q, not by the lock's session %q", f.holder, st.id)
			}
			if !slices.Equal(f.destroyed, tc.destroyed) {
				t.Errorf("sessions destroyed %v, want %v", f.destroyed, tc.destroyed)
			}
			if got := st.home != f.current; got != tc.retriesNextRenew && !tc.noMove && !tc.lost {
				t.Errorf("move tried again at the next renewal: %v, want %v", got, tc.retriesNextRenew)
			}
		})
	}
}

// A pending move is decided at a later renewal, once the key can be read:
// here the transaction had committed.
func TestAPendingMoveIsDecidedOnceTheKeyCanBeRead(t *testing.T) {
	noAnswer := errors.New("context deadline exceeded")
	f := &moveFake{current: "c2", holder: "c1-0", commit: true, answer: noAnswer, readErr: noAnswer}
	st := &heldLock{key: DefaultLockKey, id: "c1-0", home: "c1"}
	if !st.move(f, f, nil, f.current) || st.pending != "c2-1" || st.id != "c1-0" {
		t.Fatalf("after an unanswered move: id %q pending %q, want id c1-0 pending c2-1", st.id, st.pending)
	}
	f.readErr = nil
	if !st.move(f, f, nil, f.current) {
		t.Fatal("the lock was reported lost, but the pending session holds the key")
	}
	if st.id != "c2-1" || st.pending != "" || !slices.Equal(f.destroyed, []string{"c1-0"}) || f.holder != "c2-1" {
		t.Errorf("id %q pending %q destroyed %v holder %q, want the lock on c2-1 and c1-0 destroyed", st.id, st.pending, f.destroyed, f.holder)
	}
}

// Before the run stops the node its lock's session belongs to, the lock
// moves to a session on another node (before 1.0 the session dies with its
// node's serfHealth); a session on any other node stays where it is.
func TestTheLockMovesOffANodeTheRunIsAboutToStop(t *testing.T) {
	f := &moveFake{current: "c1", holder: "c1-0", commit: true}
	st := &heldLock{key: DefaultLockKey, id: "c1-0", home: "c1", lost: make(chan struct{})}
	from, err := st.keepOff(t.Context(), f, keepRequest{nodes: []string{"s2"}, to: "s1"})
	if err != nil || from.from != "" || st.id != "c1-0" || f.seq != 0 {
		t.Fatalf("keepOff of a node the session is not on: moved from %q, err %v, lock on %s, sessions made %d; want nothing done", from, err, st.id, f.seq)
	}
	from, err = st.keepOff(t.Context(), f, keepRequest{nodes: []string{"c1"}, to: "s1"})
	if err != nil || from.from != "c1" {
		t.Fatalf("keepOff of the session's node: moved from %q, err %v; want moved from c1", from, err)
	}
	if st.id != "s1-1" || f.holder != "s1-1" || !slices.Equal(f.destroyed, []string{"c1-0"}) {
		t.Errorf("lock on %s, key held by %s, destroyed %v; want both on s1-1 and c1-0 destroyed", st.id, f.holder, f.destroyed)
	}
	// A move that does not commit leaves the lock where it is, and says so.
	f2 := &moveFake{current: "c1", holder: "c1-0", answer: errors.New("Unexpected response code: 500")}
	st2 := &heldLock{key: DefaultLockKey, id: "c1-0", home: "c1", lost: make(chan struct{})}
	if _, err := st2.keepOff(t.Context(), f2, keepRequest{nodes: []string{"c1"}, to: "s1"}); err == nil || !strings.Contains(err.Error(), "stays on c1") {
		t.Errorf("keepOff after a failed move: err %v, want one saying the session stays on c1", err)
	}
	if st2.id != "c1-0" || f2.holder != "c1-0" {
		t.Errorf("after a failed move the lock is on %s and the key held by %s, want c1-0", st2.id, f2.holder)
	}
	// A key held by neither session: lost.
	f3 := &moveFake{current: "c1", holder: "other-run", answer: errors.New("Unexpected response code: 409")}
	st3 := &heldLock{key: DefaultLockKey, id: "c1-0", home: "c1", lost: make(chan struct{})}
	if _, err := st3.keepOff(t.Context(), f3, keepRequest{nodes: []string{"c1"}, to: "s1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st3.lost:
	default:
		t.Error("the key is held by another session, but the lock is not lost")
	}
}

// A run moves its lock off each server it is about to swap when the lock's
// session is on it (the simulated agent makes sessions on s1), to the
// leader or another server that stays up; the lock is never lost, and the
// run gives it back at the end.
func TestRunMovesItsLockOffEachNodeItStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		var moves []Event
		stopped := map[string]int{} // node -> index of its step-started event
		for i, e := range r.events {
			switch {
			case e.Kind == EventLockMoved:
				moves = append(moves, e)
				if e.Err != nil {
					t.Errorf("lock move failed: %v", e.Err)
				}
			case e.Kind == EventStepStarted && e.Step.Kind == planner.StepSwapServer:
				stopped[e.Step.Node] = i
			}
		}
		if len(moves) != 1 {
			t.Fatalf("lock moves %v, want one: off s1 before its swap", moves)
		}
		m := moves[0]
		if m.Step.Node != "s1" || m.Node == "s1" || m.Node == "" || !strings.Contains(m.Detail, "its session was on s1") {
			t.Errorf("lock move %+v, want one off s1 to another server", m)
		}
		if got := r.sim.Sessions(); len(got) != 0 {
			t.Errorf("sessions left after the run: %v", got)
		}
	})
}
