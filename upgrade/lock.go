package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/consul/api"
)

// DefaultLockKey is the KV key of the upgrade lock.
const DefaultLockKey = "consul-upgrade/lock"

// lockTTL is the TTL of the lock's session. Consul may wait up to twice the
// TTL before it invalidates a session that was not renewed, which rides
// out the leader elections of a server swap.
const lockTTL = 30 * time.Second

// Locker is an optional interface of a Consul: it takes the cluster-wide
// upgrade lock, so that two operators (or two orchestrators) never upgrade
// one cluster at once. The Consul that NewConsul returns implements it with
// a KV key held by a TTL session that asks for no health checks, so
// swapping the agent it talks to does not drop the lock. An agent before
// 1.0 ignores that and binds the session to the serfHealth check of its
// node (the agent the session is made through decides; pinned on real
// agents by TestRealALockTakenThroughANodeDiesWithIt), and at any version a node that leaves, or stays
// dead through an election, takes its sessions with it. So, before Run
// stops the node the lock's session is on, it moves the lock to a session
// on a server that stays up, by the first way the cluster offers:
//
//   - one transaction (/v1/txn: check-session, unlock, lock) through the
//     run's agent, once every server runs 0.7.0 or later (a server before
//     0.7.0 does not know the transaction's Raft entry and panics on it);
//   - the same transaction through that server's own HTTP API
//     (Config.ServerAPI), when the run's agent has no /v1/txn (a client
//     still on 0.6 while the servers run 0.7 or later);
//   - when the session is bound to serfHealth and no transaction can be
//     made, a release by the old session and an acquire by the new one:
//     for that instant the key is free, and if another run takes it then,
//     the acquire fails and the lock is reported lost (ErrLockLost), never
//     taken back.
//
// When the session is bound to serfHealth and none of these moves it, the
// step is refused with a *LockMoveError before anything is stopped. A
// failover Consul (Failover, ConnectAddrs) also moves the lock to the
// agent it fails over to, by a transaction, once every server can apply
// one.
type Locker interface {
	// Lock takes the lock at key for holder. It returns a *LockedError when
	// another holder has it. While held, the lock is renewed in the
	// background; lost is closed if it is lost. release gives it back.
	Lock(ctx context.Context, key string, holder LockHolder) (l *Lock, err error)
}

// LockHolder says who holds the lock; it is stored as the key's value.
type LockHolder struct {
	Holder string    `json:"holder"`
	Target string    `json:"target"`
	Since  time.Time `json:"since"`
}

// Lock is a held upgrade lock, as the Locker of NewConsul's, Failover's
// and Intercept's Consuls returns it (a Lock made elsewhere holds nothing:
// its Release returns nil).
type Lock struct {
	// Key is the KV key.
	Key string
	// Lost is closed when the lock is lost (its session was invalidated).
	Lost <-chan struct{}

	release func(context.Context) error
	keep    func(ctx context.Context, req keepRequest) (lockMoved, error)
	// held renews the lock's session now and reports whether Consul still
	// has it (nil: only Lost tells).
	held func(ctx context.Context) bool
	once sync.Once
	err  error
}

// keepRequest is what a run knows before a step stops nodes (see
// Lock.keepOff).
type keepRequest struct {
	// nodes are the nodes the step stops.
	nodes []string
	// to is a server that stays up (the leader when it can); "" when none
	// does, and then the lock stays where it is.
	to string
	// noTxn says why the cluster cannot commit a transaction ("" when it
	// can: every server of the datacenter runs 0.7.0 or later). Consul's
	// FSM panics on a Raft entry it does not know (so that it never
	// diverges), and the transaction's entry came with 0.7.0: one
	// committed while a server runs 0.6 crashes that server.
	noTxn string
	// via reaches to's own HTTP API (Config.ServerAPI); nil when the run
	// cannot. A transaction goes through it when the run's agent has no
	// /v1/txn.
	via func() (txnMover, error)
}

// lockMoved says where keepOff moved the lock, and how.
type lockMoved struct {
	from, to string // the nodes of the old and the new session
	how      string // in words
}

// keepOff moves the lock to a session on req.to when the session holding
// it belongs to one of req.nodes, which the run is about to stop, by the
// first way the cluster offers (see Locker). It returns where it moved the
// lock from (a zero lockMoved when no move was needed or none could be
// made). The error is a *LockMoveError when the lock's session is bound to
// the serfHealth check of a node the step stops and could not be moved:
// the stop would lose the lock, so the step must not start. Other errors
// say why a move that was not needed to keep the lock did not happen.
func (l *Lock) keepOff(ctx context.Context, req keepRequest) (lockMoved, error) {
	if l.keep == nil {
		return lockMoved{}, nil
	}
	return l.keep(ctx, req)
}

// Release gives the lock back. It is safe to call more than once.
func (l *Lock) Release(ctx context.Context) error {
	l.once.Do(func() {
		if l.release != nil {
			l.err = l.release(ctx)
		}
	})
	return l.err
}

// LockedError is returned when another holder has the upgrade lock.
type LockedError struct {
	Key    string
	Holder LockHolder
}

func (e *LockedError) Error() string {
	since := "an unknown time"
	if !e.Holder.Since.IsZero() {
		since = e.Holder.Since.Format(time.RFC3339)
	}
	return fmt.Sprintf("upgrade lock %s is held by %q (target %s, since %s); wait for that run to end, or, if it died, delete the key once its session expires (consul kv delete %s)",
		e.Key, e.Holder.Holder, e.Holder.Target, since, e.Key)
}

// LockMoveError reports a step that was not started because it stops the
// node the upgrade lock's session is on, that session is bound to the
// node's serfHealth check (every session made through an agent before 1.0
// is, whatever the lock asks), and the lock could not be moved off it:
// stopping the node would lose the lock and let another run act on the
// cluster. The step was not started: it touched nothing.
type LockMoveError struct {
	Key string
	// Node is the node the lock's session is on, which the step stops.
	Node string
	// To is the server the lock was to move to.
	To string
	// Err says why each way of moving the lock failed.
	Err error
}

func (e *LockMoveError) Error() string {
	if e.Node == "" {
		return fmt.Sprintf("upgrade lock %s: %v; a session made through an agent before 1.0 is bound to the serfHealth check of its node, so the step is not started and touches nothing: make sure the run's agent answers, then run again", e.Key, e.Err)
	}
	return fmt.Sprintf("upgrade lock %s not moved off %s, which this step stops: %v; its session is bound to the serfHealth check of %s (Consul before 1.0 binds every session to one), so the stop would lose the lock and let another run act on the cluster; the step is not started and touches nothing: make sure %s is up and reachable through the run's agent (set Config.ServerAPI, so that a transaction can go through a server's own HTTP API when the run's agent has none), then run again",
		e.Key, e.Node, e.Err, e.Node, e.To)
}

func (e *LockMoveError) Unwrap() error { return e.Err }

// sessionCreateWait bounds the retries of a session creation that failed
// with a server error.
const sessionCreateWait = 30 * time.Second

// ErrLockLost is wrapped by the error of a run whose lock was lost.
var ErrLockLost = errors.New("upgrade lock lost")

// Lock implements Locker with a session (TTL, no checks, delete on
// invalidation) and a KV acquire.
func (a *apiConsul) Lock(ctx context.Context, key string, holder LockHolder) (*Lock, error) {
	return lockWith(ctx, a, key, holder)
}

// sessionAPI is the handful of session and KV calls the lock makes, so that
// a Consul that fails over between agents (Failover) holds the lock through
// whichever agent answers.
type sessionAPI interface {
	createSession(ctx context.Context, body map[string]any) (id string, err error)
	acquire(ctx context.Context, key string, value []byte, session string) (bool, error)
	// holderValue returns the key's value (nil when the key does not exist).
	holderValue(ctx context.Context, key string) ([]byte, error)
	// renewSession returns false (and no error) when Consul answered that
	// the session no longer exists.
	renewSession(ctx context.Context, id string) (bool, error)
	destroySession(ctx context.Context, id string) error
	releaseKey(ctx context.Context, key, session string) error
}

func (a *apiConsul) createSession(ctx context.Context, body map[string]any) (string, error) {
	var created struct{ ID string }
	_, err := a.c.Raw().Write("/v1/session/create", body, &created, (&api.WriteOptions{}).WithContext(ctx))
	return created.ID, err
}

func (a *apiConsul) acquire(ctx context.Context, key string, value []byte, session string) (bool, error) {
	ok, _, err := a.c.KV().Acquire(&api.KVPair{Key: key, Value: value, Session: session}, (&api.WriteOptions{}).WithContext(ctx))
	return ok, err
}

func (a *apiConsul) holderValue(ctx context.Context, key string) ([]byte, error) {
	p, _, err := a.c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || p == nil {
		return nil, err
	}
	return p.Value, nil
}

// sessionExists asks whether session id still exists (a consistent read)
// when s can tell; otherwise it reports an error.
func sessionExists(s sessionAPI, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lockTTL/6)
	defer cancel()
	return sessionExistsCtx(ctx, s, id)
}

func sessionExistsCtx(ctx context.Context, s sessionAPI, id string) (bool, error) {
	in, ok := s.(interface {
		sessionInfo(ctx context.Context, id string) (bool, error)
	})
	if !ok {
		return false, errors.New("cannot read sessions")
	}
	return in.sessionInfo(ctx, id)
}

func (a *apiConsul) sessionInfo(ctx context.Context, id string) (bool, error) {
	info, _, err := a.c.Session().Info(id, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	return info != nil, err
}

func (a *apiConsul) renewSession(ctx context.Context, id string) (bool, error) {
	entry, _, err := a.c.Session().Renew(id, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil || entry != nil {
		return entry != nil, err
	}
	// A renewal answers 404 from the leader's state store without waiting
	// for it to be ready: a server that has just won an election (the old
	// leader, restarted on its new version, often wins again) may not have
	// replayed its log yet and not know a session made since its last
	// snapshot (TestARenewalsNotFoundIsConfirmedBeforeTheLockIsLost). A
	// consistent read waits for the leader to be ready (Consul
	// 0.9.0 and later), so the session is gone only when that read says so.
	info, _, err := a.c.Session().Info(id, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("renewal found no session %s; confirming it: %w", id, err)
	}
	return info != nil, nil
}

func (a *apiConsul) destroySession(ctx context.Context, id string) error {
	_, err := a.c.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx))
	return err
}

func (a *apiConsul) releaseKey(ctx context.Context, key, session string) error {
	_, _, err := a.c.KV().Release(&api.KVPair{Key: key, Session: session}, (&api.WriteOptions{}).WithContext(ctx))
	return err
}

// lockWith takes the lock through s.
func lockWith(ctx context.Context, s sessionAPI, key string, holder LockHolder) (*Lock, error) {
	body := map[string]any{
		"Name":      "consul-upgrade",
		"TTL":       lockTTL.String(),
		"Behavior":  "delete",
		"LockDelay": "0s",
		"Checks":    []string{}, // no serfHealth (from 1.0; see Locker): swapping this agent must not drop the lock
	}
	var id string
	// A server error right after the agent (re)started is transient: no
	// leader yet, or the agent's own node not yet in the catalog ("Missing
	// node registration"). Those are retried for sessionCreateWait; any
	// other error is final.
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 250*time.Millisecond, 2*time.Second, sessionCreateWait
	err := backoff.Retry(func() error {
		var err error
		id, err = s.createSession(ctx, body)
		var se api.StatusError
		if err != nil && !(errors.As(err, &se) && se.Code >= 500) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, ctx))
	if err != nil {
		return nil, fmt.Errorf("upgrade lock %s: create session: %w", key, err)
	}
	value, err := json.Marshal(holder)
	if err != nil {
		return nil, err
	}
	ok, err := s.acquire(ctx, key, value, id)
	if err != nil || !ok {
		_ = s.destroySession(context.WithoutCancel(ctx), id)
		if err != nil {
			return nil, fmt.Errorf("upgrade lock %s: acquire: %w", key, err)
		}
		le := &LockedError{Key: key}
		if v, gerr := s.holderValue(ctx, key); gerr == nil && v != nil {
			_ = json.Unmarshal(v, &le.Holder)
		}
		return nil, le
	}

	lost := make(chan struct{})
	stop := make(chan struct{})
	done := make(chan struct{})
	st := &heldLock{key: key, value: value, body: body, id: id, lost: lost}
	if m, ok := s.(lockMover); ok {
		st.home = m.agent()
	}
	go func() {
		defer close(done)
		st.renew(s, stop)
	}()
	return &Lock{
		Key:  key,
		Lost: lost,
		keep: func(ctx context.Context, req keepRequest) (lockMoved, error) {
			st.mu.Lock()
			defer st.mu.Unlock()
			return st.keepOff(ctx, s, req)
		},
		held: func(context.Context) bool {
			st.mu.Lock()
			defer st.mu.Unlock()
			select {
			case <-lost:
				return false
			default:
			}
			// A renewal that gets no answer is not a loss (renewOnce).
			if _, gone := st.renewOnce(s, time.Now()); gone {
				st.lose()
				return false
			}
			return true
		},
		release: func(ctx context.Context) error {
			close(stop)
			<-done // the renewer is gone
			st.mu.Lock()
			defer st.mu.Unlock()
			// A hand-over left half done (released, not yet acquired)
			// is finished first, so that destroying the session that
			// holds the key deletes it.
			if m, ok := s.(txnMover); ok && st.handing {
				_ = st.settle(s, m)
			}
			// A move left undecided (see heldLock.pending) may have
			// handed the key to the pending session.
			if st.pending != "" {
				_ = s.destroySession(ctx, st.pending)
			}
			// Destroying the session deletes the key it holds (behavior
			// "delete"), so a finished run leaves no trace in the KV store.
			derr := s.destroySession(ctx, st.id)
			if derr == nil {
				return nil
			}
			if rerr := s.releaseKey(ctx, key, st.id); rerr != nil {
				return fmt.Errorf("upgrade lock %s: destroy session: %v; release: %w", key, derr, rerr)
			}
			return nil
		},
	}, nil
}

// heldLock is the state of a held lock. mu is held by the renewer for each
// renewal and by keepOff.
type heldLock struct {
	mu    sync.Mutex
	lost  chan struct{}
	gone  sync.Once // closes lost
	key   string
	value []byte
	body  map[string]any // how its sessions are made
	id    string         // the session holding the key
	// home is the agent id was made through (for a lockMover).
	home string
	// pending is a session that a move made and may have handed the key
	// to: the move got no answer, or was rolled back, and the key is read
	// at the next renewal to decide. Both sessions are renewed meanwhile.
	pending string
	// handing: pending comes from a hand-over (release, then acquire),
	// not a transaction, so a key held by neither session may be the move
	// half done: the pending session acquires it (see settleHandOver).
	// released: the old session is known to have released the key.
	handing, released bool
	// pendingHome is the agent a pending hand-over's session was made
	// through.
	pendingHome string
	// noMove: the agent in use cannot move the lock (no transactions).
	noMove bool
	// noTxn: the run last saw a server before 0.7.0, which a transaction
	// would crash, so the lock does not follow a failover (keepOff sets
	// it at every step).
	noTxn bool
}

// renew renews the session every TTL/6 until stop is closed. Errors (an
// election in progress, the agent restarting) are retried; the lock is lost
// only when Consul says the session no longer exists, or when no renewal
// has succeeded for a whole TTL. Through a lockMover, the lock then follows
// the run to the agent it has failed over to.
func (st *heldLock) renew(s sessionAPI, stop <-chan struct{}) {
	tick := time.NewTicker(lockTTL / 6)
	defer tick.Stop()
	for last := time.Now(); ; {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		st.mu.Lock()
		var gone bool
		last, gone = st.renewOnce(s, last)
		st.mu.Unlock()
		if gone {
			st.lose()
			return
		}
	}
}

// lose closes lost, once.
func (st *heldLock) lose() { st.gone.Do(func() { close(st.lost) }) }

// renewOnce makes one renewal; last is when one last succeeded. It reports
// true when the lock is lost. Callers hold st.mu.
func (st *heldLock) renewOnce(s sessionAPI, last time.Time) (time.Time, bool) {
	m, _ := s.(lockMover)
	{
		ctx, cancel := context.WithTimeout(context.Background(), lockTTL/6)
		if st.pending != "" {
			_, _ = s.renewSession(ctx, st.pending)
		}
		exists, err := s.renewSession(ctx, st.id)
		cancel()
		switch {
		case err == nil && !exists:
			return last, true // Consul answered: the session is gone
		case err == nil:
			last = time.Now()
			if tm, ok := s.(txnMover); ok && st.pending != "" {
				return last, !st.settle(s, tm)
			}
			if m != nil && !st.noMove && !st.noTxn && m.agent() != st.home {
				return last, !st.move(s, m, st.body, m.agent())
			}
		case time.Since(last) > lockTTL:
			// No renewal for a whole TTL. Consul keeps a session for up
			// to twice its TTL: the lock is still held while a read says
			// the session exists, and lost once it does not or once
			// nothing has confirmed it for that long.
			if held, ierr := sessionExists(s, st.id); ierr == nil && held && time.Since(last) < 2*lockTTL {
				return last, false
			}
			return last, true
		}
	}
	return last, false
}

// keepOff: see Lock.keepOff. Callers hold st.mu.
func (st *heldLock) keepOff(ctx context.Context, s sessionAPI, req keepRequest) (lockMoved, error) {
	st.noTxn = req.noTxn != ""
	m, ok := s.(txnMover)
	if !ok || req.to == "" || slices.Contains(req.nodes, req.to) {
		return lockMoved{}, nil
	}
	select {
	case <-st.lost:
		return lockMoved{}, nil // the run sees Lost
	default:
	}
	if st.pending != "" && !st.settle(s, m) {
		st.lose()
		return lockMoved{}, nil
	}
	node, bound, err := sessionOf(ctx, m, st.id)
	if err != nil {
		return lockMoved{}, &LockMoveError{Key: st.key, To: req.to, Err: fmt.Errorf("the node of the lock's session %s could not be read, so whether this step stops it is unknown: %w", st.id, err)}
	}
	if node == "" {
		st.lose() // a consistent read found no such session
		return lockMoved{}, nil
	}
	if !slices.Contains(req.nodes, node) {
		return lockMoved{}, nil
	}
	fail := func(err error) (lockMoved, error) {
		if bound {
			return lockMoved{}, &LockMoveError{Key: st.key, Node: node, To: req.to, Err: err}
		}
		return lockMoved{}, fmt.Errorf("the lock's session stays on %s: %w", node, err)
	}
	if st.pending != "" {
		return fail(errors.New("a move of the lock is still undecided (no answer from Consul); it is decided at a later renewal"))
	}
	body := map[string]any{"Node": req.to}
	for k, v := range st.body {
		if k != "Node" {
			body[k] = v
		}
	}
	home := st.home
	if lm, ok := s.(lockMover); ok {
		home = lm.agent()
	}
	moved := lockMoved{from: node, to: req.to}
	var why []string
	if req.noTxn == "" {
		switch st.moveBy(s, m, body, home) {
		case moveDone:
			st.noMove = false
			moved.how = "in one transaction through the run's agent"
			return moved, nil
		case moveLost:
			return lockMoved{}, nil
		case movePending:
			return fail(errors.New("the transaction through the run's agent got no answer and the key could not be read; the move is decided at a later renewal"))
		case moveNoTxn:
			st.noMove = true // the failover moves of the renewer need it too
			why = append(why, "the run's agent has no /v1/txn")
			if req.via == nil {
				why = append(why, "Config.ServerAPI is not set, so no server's own API can be reached")
				break
			}
			vm, err := req.via()
			if err != nil {
				why = append(why, fmt.Sprintf("%s's own HTTP API: %v", req.to, err))
				break
			}
			switch st.moveBy(s, vm, body, home) {
			case moveDone:
				moved.how = fmt.Sprintf("in one transaction through %s's own HTTP API (the run's agent has no /v1/txn)", req.to)
				return moved, nil
			case moveLost:
				return lockMoved{}, nil
			case movePending:
				return fail(fmt.Errorf("the transaction through %s's own HTTP API got no answer and the key could not be read; the move is decided at a later renewal", req.to))
			default:
				why = append(why, fmt.Sprintf("the transaction through %s's own HTTP API did not commit", req.to))
			}
		default:
			why = append(why, "the transaction through the run's agent did not commit")
		}
	} else {
		why = append(why, "no transaction: "+req.noTxn)
	}
	if !bound {
		return fail(fmt.Errorf("%s; it is tried again before the next stop", strings.Join(why, "; ")))
	}
	o, err := st.handOver(s, m, body, home)
	switch o {
	case moveDone:
		moved.how = fmt.Sprintf("by a release and an acquire through the run's agent, with no transaction (%s)", strings.Join(why, "; "))
		return moved, nil
	case moveLost:
		return lockMoved{}, nil
	}
	return fail(fmt.Errorf("%s; a release and an acquire did not move it either: %w", strings.Join(why, "; "), err))
}

// sessionOf reads the node of session id and whether the session is bound
// to that node's serfHealth check, retrying failed reads for a few seconds
// (the agent may have just come back from a swap).
func sessionOf(ctx context.Context, m txnMover, id string) (node string, serfHealth bool, err error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 250*time.Millisecond, 2*time.Second, 10*time.Second
	err = backoff.Retry(func() error {
		var checks []string
		node, checks, err = m.sessionNode(ctx, id)
		serfHealth = slices.Contains(checks, serfHealthCheck)
		return err
	}, backoff.WithContext(b, ctx))
	return node, serfHealth, err
}

// serfHealthCheck is the ID of the check that follows an agent's serf
// membership.
const serfHealthCheck = "serfHealth"

// moveOutcome is what one attempt to move the lock did.
type moveOutcome int

const (
	moveNotDone moveOutcome = iota // the lock is where it was, held
	moveDone                       // the lock is on the new session
	moveLost                       // the key is held by neither session: the lock is lost
	movePending                    // undecided: see heldLock.pending
	moveNoTxn                      // the agent has no /v1/txn: nothing was tried
)

// moveBy moves the lock in one transaction through m (see move) and says
// what happened. Callers hold st.mu.
func (st *heldLock) moveBy(s sessionAPI, m txnMover, body map[string]any, home string) moveOutcome {
	id, noMove := st.id, st.noMove
	st.noMove = false
	kept := st.move(s, m, body, home)
	noTxn := st.noMove
	st.noMove = noMove
	switch {
	case !kept:
		st.lose()
		return moveLost
	case st.id != id:
		return moveDone
	case noTxn:
		return moveNoTxn
	case st.pending != "":
		return movePending
	}
	return moveNotDone
}

// handOver moves the lock to a new session made with body without a
// transaction: the lock's session releases the key (with its value), then
// the new session acquires it. For that instant the key is free: if
// another run takes it then, the acquire fails and the lock is lost, never
// taken back. A step whose answer is lost is decided by reading the key
// (see settle). It works on every version (Consul 0.6 has no /v1/txn;
// ?cas= does not guard an acquire or a release, which ignore it). Callers
// hold st.mu.
func (st *heldLock) handOver(s sessionAPI, m txnMover, body map[string]any, home string) (moveOutcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lockTTL/3)
	defer cancel()
	id, err := s.createSession(ctx, body)
	if err != nil {
		return moveNotDone, fmt.Errorf("create a session on %v: %w", body["Node"], err)
	}
	st.pending, st.handing, st.pendingHome = id, true, home
	released, err := m.releaseLock(ctx, st.key, st.value, st.id)
	st.released = err == nil && released
	switch {
	case st.released:
		ok, aerr := s.acquire(ctx, st.key, st.value, id)
		if aerr == nil && ok {
			st.handed(ctx, s)
			return moveDone, nil
		}
		err = aerr
	case err == nil:
		// Refused: the lock's session does not hold the key. Another
		// does, or none, and the lock is not taken back.
		_ = s.destroySession(ctx, id)
		st.pending, st.handing = "", false
		if holder, herr := m.keySession(ctx, st.key); herr == nil && holder == st.id {
			return moveNotDone, errors.New("the release was refused while the lock's session held the key")
		}
		st.lose()
		return moveLost, nil
	}
	// Refused or unanswered: the key tells.
	kept, serr := st.settleHandOver(ctx, s, m)
	switch {
	case !kept:
		st.lose()
		return moveLost, nil
	case st.id == id:
		return moveDone, nil
	case st.pending != "":
		return movePending, errors.Join(err, serr)
	}
	return moveNotDone, err
}

// settle decides a pending move from the key. It reports false when the
// lock is lost. Callers hold st.mu.
func (st *heldLock) settle(s sessionAPI, m txnMover) bool {
	if !st.handing {
		return st.move(s, m, st.body, st.home)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTTL/3)
	defer cancel()
	kept, _ := st.settleHandOver(ctx, s, m)
	return kept
}

// settleHandOver decides a pending hand-over from the key: held by the
// new session, it is done; by the old one, the release never happened; by
// none, the new session acquires it now; by another, the lock is lost. It
// reports false when the lock is lost, and the error of a read or an
// acquire that left it pending. Callers hold st.mu.
func (st *heldLock) settleHandOver(ctx context.Context, s sessionAPI, m txnMover) (bool, error) {
	holder, err := m.keySession(ctx, st.key)
	if err == nil && holder == "" && st.released {
		// Released by the old session: the new one takes it. (A key gone,
		// rather than released, went with the old session: lost.)
		var ok bool
		ok, err = s.acquire(ctx, st.key, st.value, st.pending)
		if err == nil && ok {
			holder = st.pending
		} else if err == nil {
			holder, err = m.keySession(ctx, st.key)
		}
	} else if err == nil && holder == "" {
		// The release got no answer: a key still there, free, is one it
		// released; a key gone went with the old session.
		var v []byte
		if v, err = s.holderValue(ctx, st.key); err == nil && v != nil {
			st.released = true
			return st.settleHandOver(ctx, s, m)
		}
	}
	switch {
	case err != nil:
		return true, err // still pending
	case holder == st.pending:
		st.handed(ctx, s)
		return true, nil
	case holder == st.id:
		_ = s.destroySession(ctx, st.pending)
		st.pending, st.handing, st.released = "", false, false
		return true, nil
	}
	_ = s.destroySession(ctx, st.pending)
	st.pending, st.handing, st.released = "", false, false
	return false, nil
}

// handed finishes a hand-over: the pending session holds the key, and the
// old one, which holds nothing now, is destroyed. Callers hold st.mu.
func (st *heldLock) handed(ctx context.Context, s sessionAPI) {
	_ = s.destroySession(ctx, st.id)
	st.id, st.home, st.pending, st.handing, st.released = st.pending, st.pendingHome, "", false, false
}

// lockMover is a sessionAPI that talks through whichever of several agents
// answers (failoverSessions). A session belongs to the node of the agent it
// was made through, and Consul destroys it, so the lock is lost, when that
// node leaves the catalog. A dead agent's node does: a server restarted
// while the agent is dead never hears of it, and once it leads it
// deregisters the node as reaped. So once the run has failed over, the
// lock moves to a session made through the agent now in use, in one
// transaction that only commits while the old session still holds the key
// (TestTheLockMovesToTheAgentTheRunFailedOverTo).
type lockMover interface {
	// agent names the agent calls go through now.
	agent() string
	txnMover
}

// errNoTxn is wrapped by a move that cannot be made with this agent.
var errNoTxn = errors.New("the upgrade lock cannot move through this agent")

// move moves the lock to a session made through the agent in use, or
// decides a pending move. It reports false when the lock is lost: the key
// is held by neither session. Any other failure leaves the lock where it
// is, to be moved at a later renewal.
func (st *heldLock) move(s sessionAPI, m txnMover, body map[string]any, home string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), lockTTL/3)
	defer cancel()
	if st.pending == "" {
		id, err := s.createSession(ctx, body)
		if err != nil {
			return true
		}
		err = m.moveLock(ctx, st.key, st.value, st.id, id)
		switch {
		case err == nil:
			_ = s.destroySession(ctx, st.id) // it holds nothing now
			st.id, st.home = id, home
			return true
		case errors.Is(err, errNoTxn):
			st.noMove = true
			_ = s.destroySession(ctx, id)
			return true
		}
		// Rolled back, or no answer: the key tells. A failover may have
		// sent the transaction to a second agent after the first one
		// committed it, and that second one was rolled back.
		st.pending, st.home = id, home
	}
	holder, err := m.keySession(ctx, st.key)
	switch {
	case err != nil:
		return true // still pending
	case holder == st.pending:
		_ = s.destroySession(ctx, st.id)
		st.id, st.pending = holder, ""
		return true
	case holder == st.id:
		_ = s.destroySession(ctx, st.pending)
		st.pending, st.home = "", "" // not moved: try again
		return true
	default:
		_ = s.destroySession(ctx, st.pending)
		st.pending = ""
		return false
	}
}

// txnMover moves the lock between sessions.
type txnMover interface {
	// moveLock hands key, with value, from session from to session to:
	// check-session, unlock and lock in one transaction (/v1/txn, Consul
	// 0.7.0 and later). It returns an error wrapping errNoTxn when the
	// agent has no transactions.
	moveLock(ctx context.Context, key string, value []byte, from, to string) error
	// keySession returns the session holding key, "" when none holds it
	// or there is no key, read consistently.
	keySession(ctx context.Context, key string) (string, error)
	// sessionNode returns the node of session id and the checks it is
	// bound to (its node checks; "" and nil when it does not exist), read
	// consistently.
	sessionNode(ctx context.Context, id string) (node string, checks []string, err error)
	// releaseLock releases key from session, setting its value (PUT
	// ?release=, any version). It returns false when session did not
	// hold the key.
	releaseLock(ctx context.Context, key string, value []byte, session string) (bool, error)
}

func (a *apiConsul) sessionNode(ctx context.Context, id string) (string, []string, error) {
	info, _, err := a.c.Session().Info(id, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil || info == nil {
		return "", nil, err
	}
	// Before 1.7 the checks are in Checks; from 1.7 node checks are in
	// NodeChecks too.
	checks := slices.Clone(info.NodeChecks)
	for _, c := range info.Checks {
		if !slices.Contains(checks, c) {
			checks = append(checks, c)
		}
	}
	return info.Node, checks, nil
}

func (a *apiConsul) releaseLock(ctx context.Context, key string, value []byte, session string) (bool, error) {
	ok, _, err := a.c.KV().Release(&api.KVPair{Key: key, Value: value, Session: session}, (&api.WriteOptions{}).WithContext(ctx))
	return ok, err
}

func (a *apiConsul) moveLock(ctx context.Context, key string, value []byte, from, to string) error {
	ops := api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: key, Session: from}},
		{KV: &api.KVTxnOp{Verb: api.KVUnlock, Key: key, Value: value, Session: from}},
		{KV: &api.KVTxnOp{Verb: api.KVLock, Key: key, Value: value, Session: to}},
	}
	_, err := a.c.Raw().Write("/v1/txn", ops, nil, (&api.WriteOptions{}).WithContext(ctx))
	var se api.StatusError
	if errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusMethodNotAllowed) {
		return fmt.Errorf("%w: it has no /v1/txn (Consul before 0.7.0): %v", errNoTxn, err)
	}
	return err
}

func (a *apiConsul) keySession(ctx context.Context, key string) (string, error) {
	p, _, err := a.c.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil || p == nil {
		return "", err
	}
	return p.Session, nil
}
