package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
// swapping the agent it talks to does not drop the lock. Consul before 1.0
// ignores that and binds the session to the agent's serfHealth (0.6.4 to
// 0.9.3, measured), and at any version a node that leaves, or stays dead
// through an election, takes its sessions with it. So, from 0.7.0 (which
// has /v1/txn), Run moves the lock to a session on a server that stays up
// before it stops the node the lock's session is on, and a failover Consul
// (Failover, ConnectAddrs) moves it to the agent it fails over to. On 0.6
// the lock stays where it was taken: if that agent is down long enough for
// serf to find it failed, the lock is lost and the run halts with
// ErrLockLost.
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

// Lock is a held upgrade lock.
type Lock struct {
	// Key is the KV key.
	Key string
	// Lost is closed when the lock is lost (its session was invalidated).
	Lost <-chan struct{}

	release func(context.Context) error
	keep    func(ctx context.Context, nodes []string, to string) (moved string, err error)
	once    sync.Once
	err     error
}

// keepOff moves the lock to a session on node to when the session holding
// it belongs to one of nodes, which the run is about to stop: before 1.0
// Consul binds the lock's session to its node's serfHealth (see Locker),
// and a node that leaves, or stays dead through an election, takes its
// sessions with it. It returns the node the session was moved from ("" when
// no move was needed). The move is one transaction (Consul 0.7.0 and
// later); when it cannot be made the lock stays where it is.
func (l *Lock) keepOff(ctx context.Context, nodes []string, to string) (string, error) {
	if l.keep == nil {
		return "", nil
	}
	return l.keep(ctx, nodes, to)
}

// Release gives the lock back. It is safe to call more than once.
func (l *Lock) Release(ctx context.Context) error {
	l.once.Do(func() { l.err = l.release(ctx) })
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
	// snapshot. Seen on real 1.12.9 -> 1.13.9 runs right after the leader's
	// swap. A consistent read waits for the leader to be ready (Consul
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
		keep: func(ctx context.Context, nodes []string, to string) (string, error) {
			st.mu.Lock()
			defer st.mu.Unlock()
			return st.keepOff(ctx, s, nodes, to)
		},
		release: func(ctx context.Context) error {
			close(stop)
			<-done // the renewer is gone
			st.mu.Lock()
			defer st.mu.Unlock()
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
	// noMove: the agent in use cannot move the lock (no transactions).
	noMove bool
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
			if m != nil && (st.pending != "" || (!st.noMove && m.agent() != st.home)) {
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
func (st *heldLock) keepOff(ctx context.Context, s sessionAPI, nodes []string, to string) (string, error) {
	m, ok := s.(txnMover)
	if !ok || st.noMove || to == "" || slices.Contains(nodes, to) {
		return "", nil
	}
	select {
	case <-st.lost:
		return "", nil // the run sees Lost
	default:
	}
	if st.pending != "" && !st.move(s, m, st.body, st.home) {
		st.lose()
		return "", nil
	}
	if st.pending != "" {
		return "", errors.New("a move of the lock is still undecided (no answer from Consul)")
	}
	node, err := m.sessionNode(ctx, st.id)
	if err != nil {
		return "", fmt.Errorf("read the node of the lock's session: %w", err)
	}
	if !slices.Contains(nodes, node) {
		return "", nil
	}
	body := map[string]any{"Node": to}
	for k, v := range st.body {
		if k != "Node" {
			body[k] = v
		}
	}
	home := st.home
	if lm, ok := s.(lockMover); ok {
		home = lm.agent()
	}
	id := st.id
	if !st.move(s, m, body, home) {
		st.lose()
		return "", nil
	}
	switch {
	case st.noMove:
		return "", fmt.Errorf("the lock's session stays on %s: %w", node, errNoTxn)
	case st.id == id:
		return "", fmt.Errorf("the lock's session stays on %s: the move to %s did not commit or got no answer; it is tried again before the next stop", node, to)
	}
	return node, nil
}

// lockMover is a sessionAPI that talks through whichever of several agents
// answers (failoverSessions). A session belongs to the node of the agent it
// was made through, and Consul destroys it, so the lock is lost, when that
// node leaves the catalog. A dead agent's node does: a server restarted
// while the agent is dead never hears of it, and once it leads it
// deregisters the node as reaped (real 1.12.9 -> 1.13.9 with the run's
// first agent killed mid-gate: the lock went at the leader's swap). So once
// the run has failed over, the lock moves to a session made through the
// agent now in use, in one transaction that only commits while the old
// session still holds the key.
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
	// sessionNode returns the node of session id, read consistently.
	sessionNode(ctx context.Context, id string) (string, error)
}

func (a *apiConsul) sessionNode(ctx context.Context, id string) (string, error) {
	info, _, err := a.c.Session().Info(id, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil || info == nil {
		return "", err
	}
	return info.Node, nil
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
