package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tests of this file decide how keepOff moves the lock before a step
// stops the node its session is on, on moveFake: which way the cluster
// offers (a transaction through the run's agent or through a server's own
// API, or a release and an acquire), what each failure leaves, and when
// the step is refused.

// boundLock is a lock held by session c1-0, on node c1, taken through
// c1, and a fake whose sessions are bound to serfHealth (Consul before
// 1.0).
func boundLock() (*heldLock, *moveFake) {
	f := &moveFake{current: "c1", holder: "c1-0", commit: true, bound: true}
	return &heldLock{key: DefaultLockKey, value: []byte("v"), id: "c1-0", home: "c1", lost: make(chan struct{})}, f
}

func isLost(st *heldLock) bool {
	select {
	case <-st.lost:
		return true
	default:
		return false
	}
}

// viaFake is a server's own API over the same key as the run's agent's
// fake: its transactions commit.
type viaFake struct{ *moveFake }

func (v viaFake) moveLock(_ context.Context, _ string, _ []byte, from, to string) error {
	v.txns++
	if v.holder == from {
		v.holder = to
	}
	return nil
}

var errNoTxnHere = fmt.Errorf("%w: it has no /v1/txn (Consul before 0.7.0): Unexpected response code: 404", errNoTxn)

func TestHowTheLockMovesOffANodeTheRunStops(t *testing.T) {
	cases := []struct {
		name string
		// setup adjusts the fake and the request.
		setup func(f *moveFake, req *keepRequest)
		// how: a phrase of the move's description; txns: transactions
		// sent through the run's agent's fake.
		how  string
		txns int
	}{
		{
			name: "every server on 0.7 or later: one transaction through the run's agent",
			how:  "in one transaction through the run's agent", txns: 1,
		},
		{
			name: "the run's agent has no /v1/txn: one transaction through the server's own API",
			setup: func(f *moveFake, req *keepRequest) {
				f.answer, f.commit = errNoTxnHere, false
				req.via = func() (txnMover, error) { return viaFake{f}, nil }
			},
			how: "in one transaction through s1's own HTTP API (the run's agent has no /v1/txn)", txns: 2,
		},
		{
			name: "the run's agent has no /v1/txn and no server API is set: a release and an acquire",
			setup: func(f *moveFake, req *keepRequest) {
				f.answer, f.commit = errNoTxnHere, false
			},
			how: "by a release and an acquire through the run's agent, with no transaction (the run's agent has no /v1/txn; Config.ServerAPI is not set", txns: 1,
		},
		{
			name: "a server before 0.7.0: no transaction at all, a release and an acquire",
			setup: func(f *moveFake, req *keepRequest) {
				req.noTxn = "server s2 runs 0.6.4, and a server before 0.7.0 crashes on a transaction"
			},
			how: "by a release and an acquire through the run's agent, with no transaction (no transaction: server s2 runs 0.6.4", txns: 0,
		},
		{
			name: "the transaction does not commit (a 0.6 leader has no Txn service): a release and an acquire",
			setup: func(f *moveFake, req *keepRequest) {
				f.answer, f.commit = errors.New("Unexpected response code: 500 (rpc error: rpc: can't find service Txn.Apply)"), false
			},
			how: "by a release and an acquire through the run's agent, with no transaction (the transaction through the run's agent did not commit", txns: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, f := boundLock()
			req := keepRequest{nodes: []string{"c1"}, to: "s1"}
			if tc.setup != nil {
				tc.setup(f, &req)
			}
			moved, err := st.keepOff(t.Context(), f, req)
			if err != nil || moved.from != "c1" || moved.to != "s1" || !strings.Contains(moved.how, tc.how) {
				t.Fatalf("keepOff = %+v, %v; want moved from c1 to s1 %s", moved, err, tc.how)
			}
			// Each way tried makes its own session on s1; the last holds the
			// lock, and every other one, the old one included, is gone.
			last := fmt.Sprintf("s1-%d", f.seq)
			if st.id != last || f.holder != last || st.pending != "" || isLost(st) {
				t.Errorf("lock on %s (pending %q, lost %v), key held by %s; want both on %s", st.id, st.pending, isLost(st), f.holder, last)
			}
			if !slices.Contains(f.destroyed, "c1-0") || slices.Contains(f.destroyed, last) || len(f.destroyed) != f.seq {
				t.Errorf("sessions destroyed %v of %d made; want c1-0 and every one made but %s", f.destroyed, f.seq, last)
			}
			if f.txns != tc.txns {
				t.Errorf("%d transactions sent, want %d", f.txns, tc.txns)
			}
		})
	}
}

// A step is refused before anything is stopped when the lock's session is
// bound to the serfHealth of a node the step stops and no way moves it;
// the lock stays held where it was. A session that is not bound (1.0 and
// later) is only reported: the stop does not end it.
func TestALockTheStopWouldLoseAndThatCannotMoveRefusesTheStep(t *testing.T) {
	st, f := boundLock()
	f.createErr = errors.New("Unexpected response code: 500 (rpc error: No cluster leader)")
	_, err := st.keepOff(t.Context(), f, keepRequest{nodes: []string{"c1"}, to: "s1"})
	var lme *LockMoveError
	if !errors.As(err, &lme) || lme.Node != "c1" || lme.To != "s1" || lme.Key != DefaultLockKey {
		t.Fatalf("keepOff = %v; want a *LockMoveError naming c1, s1 and the key", err)
	}
	for _, want := range []string{"not moved off c1", "serfHealth", "the step is not started and touches nothing", "No cluster leader", "Config.ServerAPI"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if st.id != "c1-0" || f.holder != "c1-0" || isLost(st) {
		t.Errorf("after the refusal the lock is on %s, the key held by %s (lost %v); want both on c1-0", st.id, f.holder, isLost(st))
	}

	st, f = boundLock()
	f.bound, f.answer, f.commit = false, errors.New("Unexpected response code: 500"), false
	_, err = st.keepOff(t.Context(), f, keepRequest{nodes: []string{"c1"}, to: "s1"})
	if err == nil || errors.As(err, &lme) || !strings.Contains(err.Error(), "stays on c1") {
		t.Errorf("keepOff of an unbound session that cannot move = %v; want a plain error saying it stays on c1", err)
	}
	if f.holder != "c1-0" || f.seq != 1 {
		t.Errorf("key held by %s, sessions made %d; want c1-0 and only the transaction's session (no release and acquire)", f.holder, f.seq)
	}
}

// During a release and an acquire the key is free for an instant: a run
// that takes it then keeps it, and this run's lock is lost (never taken
// back). Answers lost on the way are decided from the key.
func TestAReleaseAndAcquireIsDecidedFromTheKey(t *testing.T) {
	noAnswer := errors.New("context deadline exceeded")
	cases := []struct {
		name  string
		setup func(f *moveFake)
		// moved, lost, refused: the outcome; holder: who holds the key.
		moved, lost, refused bool
		holder               string
	}{
		{name: "another run takes the key in between", setup: func(f *moveFake) { f.stealOnRelease = "other-run" }, lost: true, holder: "other-run"},
		{name: "the acquire's answer is lost after it took the key", setup: func(f *moveFake) { f.acquireErr = noAnswer }, moved: true, holder: "s1-1"},
		{name: "the acquire got no answer and did not take the key", setup: func(f *moveFake) { f.acquireErr, f.acquireDrops = noAnswer, true }, refused: true, holder: ""},
		{name: "the release's answer is lost after it released the key", setup: func(f *moveFake) { f.releaseErr = noAnswer }, moved: true, holder: "s1-1"},
		{name: "the release got no answer and did not release the key", setup: func(f *moveFake) { f.releaseErr, f.releaseDrops = noAnswer, true }, refused: true, holder: "c1-0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, f := boundLock()
			tc.setup(f)
			req := keepRequest{nodes: []string{"c1"}, to: "s1", noTxn: "server s2 runs 0.6.4"}
			moved, err := st.keepOff(t.Context(), f, req)
			var lme *LockMoveError
			switch {
			case tc.moved && (err != nil || moved.from != "c1"):
				t.Errorf("keepOff = %+v, %v; want moved off c1", moved, err)
			case tc.lost && (err != nil || !isLost(st)):
				t.Errorf("keepOff = %v, lost %v; want the lock reported lost, and no error", err, isLost(st))
			case tc.refused && !errors.As(err, &lme):
				t.Errorf("keepOff = %v; want a *LockMoveError", err)
			}
			if f.holder != tc.holder {
				t.Errorf("the key is held by %q, want %q", f.holder, tc.holder)
			}
		})
	}
}

// A release and an acquire left half done (released, the acquire
// unanswered) is finished at the next renewal: the new session takes the
// key, which nobody else took.
func TestAHalfDoneReleaseAndAcquireIsFinishedAtTheNextRenewal(t *testing.T) {
	st, f := boundLock()
	f.acquireErr, f.acquireDrops = errors.New("context deadline exceeded"), true
	if _, err := st.keepOff(t.Context(), f, keepRequest{nodes: []string{"c1"}, to: "s1", noTxn: "server s2 runs 0.6.4"}); err == nil {
		t.Fatal("keepOff with the acquire unanswered: no error; want the step refused")
	}
	if st.pending != "s1-1" || !st.handing || f.holder != "" {
		t.Fatalf("pending %q handing %v holder %q; want s1-1 pending on a released key", st.pending, st.handing, f.holder)
	}
	f.acquireErr, f.acquireDrops = nil, false
	if _, gone := st.renewOnce(f, time.Now()); gone {
		t.Fatal("the renewal reported the lock lost")
	}
	if st.id != "s1-1" || st.pending != "" || f.holder != "s1-1" || !slices.Contains(f.destroyed, "c1-0") {
		t.Errorf("after the renewal: lock on %s (pending %q), key held by %s, destroyed %v; want the move finished", st.id, st.pending, f.holder, f.destroyed)
	}
}

// While a server runs a version before 0.7.0 a transaction would crash it:
// keepOff sends none, and the lock does not follow a failover (the renewer
// moves it by transaction only) until a step says every server can.
func TestNoTransactionIsSentWhileAServerRunsBefore_0_7(t *testing.T) {
	f := &moveFake{current: "c2", holder: "c1-0", commit: true}
	st := &heldLock{key: DefaultLockKey, value: []byte("v"), id: "c1-0", home: "c1", lost: make(chan struct{})}
	if _, err := st.keepOff(t.Context(), f, keepRequest{nodes: []string{"s3"}, to: "s1", noTxn: "server s3 runs 0.6.4"}); err != nil {
		t.Fatal(err)
	}
	if _, gone := st.renewOnce(f, time.Now()); gone || f.txns != 0 || st.id != "c1-0" {
		t.Fatalf("after a failover to c2 with a 0.6 server: lost %v, %d transactions, lock on %s; want none sent and the lock on c1-0", gone, f.txns, st.id)
	}
	if _, err := st.keepOff(t.Context(), f, keepRequest{nodes: []string{"s3"}, to: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, gone := st.renewOnce(f, time.Now()); gone || f.txns != 1 || st.id != "c2-1" {
		t.Errorf("once every server can apply one: lost %v, %d transactions, lock on %s; want the lock moved to c2-1", gone, f.txns, st.id)
	}
}
