package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
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
}

func (f *moveFake) agent() string { return f.current }

func (f *moveFake) createSession(context.Context, map[string]any) (string, error) {
	f.seq++
	return fmt.Sprintf("%s-%d", f.current, f.seq), nil
}

func (f *moveFake) acquire(context.Context, string, []byte, string) (bool, error) { return true, nil }
func (f *moveFake) holderValue(context.Context, string) ([]byte, error)           { return nil, nil }
func (f *moveFake) renewSession(context.Context, string) (bool, error)            { return true, nil }
func (f *moveFake) releaseKey(context.Context, string, string) error              { return nil }

func (f *moveFake) destroySession(_ context.Context, id string) error {
	f.destroyed = append(f.destroyed, id)
	if f.holder == id {
		f.holder = "" // behavior "delete"
	}
	return nil
}

func (f *moveFake) moveLock(_ context.Context, _ string, _ []byte, from, to string) error {
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
			if kept := st.move(&f, &f); kept == tc.lost {
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
	if !st.move(f, f) || st.pending != "c2-1" || st.id != "c1-0" {
		t.Fatalf("after an unanswered move: id %q pending %q, want id c1-0 pending c2-1", st.id, st.pending)
	}
	f.readErr = nil
	if !st.move(f, f) {
		t.Fatal("the lock was reported lost, but the pending session holds the key")
	}
	if st.id != "c2-1" || st.pending != "" || !slices.Equal(f.destroyed, []string{"c1-0"}) || f.holder != "c2-1" {
		t.Errorf("id %q pending %q destroyed %v holder %q, want the lock on c2-1 and c1-0 destroyed", st.id, st.pending, f.destroyed, f.holder)
	}
}
