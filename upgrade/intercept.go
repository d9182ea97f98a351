package upgrade

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/consul/api"
)

// Intercept returns a Consul that makes every call of c through around: for
// metrics, tracing, logging, rate limits or retries of the embedder's own.
// around is given the call's context and name and a do that makes it; it
// returns do's error, or an error of its own (then the call fails with it).
// It may change the context do gets, call do again (a retry), or not call
// it: a call that around ends with a nil error without making it fails
// naming around.
//
// The returned Consul implements each optional interface (EraReader,
// FeatureReader, Locker, KVStore) exactly when c does, so Config.Validate
// and Run see the same abilities as in c. Wrapping a Consul the usual Go
// way, struct{ upgrade.Consul } with a method of its own, keeps only the 9
// methods of Consul: the run is then refused (see Config.NoLock), or, for
// FeatureReader, reports what it cannot observe. Use Intercept instead, or
// embed an interface that lists the abilities the wrapper keeps.
//
// The call names are the method names: Members, RaftConfiguration,
// AutopilotHealth, AutopilotConfiguration, Leader, AgentSelf, Datacenters,
// SnapshotSave, TransferLeader; Peers, KVList, ACLList, StaleState
// (EraReader); ACLReplication, ACLTokens, ConfigEntryCount, IntentionCount,
// Nodes (FeatureReader); KVGet, KVPut, KVDelete (KVStore). The upgrade
// lock of NewConsul's (or a Failover's) Consul is taken and kept through
// calls named "Lock/" and its operation: Lock/create-session,
// Lock/acquire, Lock/holder, Lock/renew-session, Lock/destroy-session,
// Lock/release, Lock/session-info, Lock/move, Lock/key-session,
// Lock/session-node; those made in the background to renew the lock carry
// a context of their own, not the run's. The Locker of any other Consul is
// called once, as "Lock", and keeps its lock its own way.
//
// A nil around returns c itself.
func Intercept(c Consul, around func(ctx context.Context, call string, do func(context.Context) error) error) Consul {
	if c == nil || around == nil {
		return c
	}
	w := &routed{
		route: func(ctx context.Context, call string, fn func(context.Context, Consul) error) error {
			called := false
			err := around(ctx, call, func(ctx context.Context) error {
				called = true
				return fn(ctx, c)
			})
			if !called && err == nil {
				return fmt.Errorf("upgrade.Intercept: around returned nil without making call %s; return do's error or one of its own", call)
			}
			return err
		},
		agentOf: func() string { return agentOf(c) },
		plumbed: lockPlumbed(c),
	}
	if lk, ok := c.(Locker); ok && !w.plumbed {
		w.lockFn = func(ctx context.Context, key string, holder LockHolder) (*Lock, error) {
			return via(ctx, w, "Lock", func(ctx context.Context, _ Consul) (*Lock, error) { return lk.Lock(ctx, key, holder) })
		}
	}
	return w.view(abilitiesOf(c))
}

// ability is one optional interface of a Consul.
type ability uint8

const (
	abilityEra ability = 1 << iota
	abilityFeatures
	abilityLock
	abilityKV
)

// abilitiesOf lists the optional interfaces c implements.
func abilitiesOf(c Consul) ability {
	var a ability
	if _, ok := c.(EraReader); ok {
		a |= abilityEra
	}
	if _, ok := c.(FeatureReader); ok {
		a |= abilityFeatures
	}
	if _, ok := c.(Locker); ok {
		a |= abilityLock
	}
	if _, ok := c.(KVStore); ok {
		a |= abilityKV
	}
	return a
}

// view returns w as a value that implements Consul, plumbing and exactly
// the optional interfaces of a: one static type per combination (an
// interface embedded in a struct contributes its methods and no others).
func (w *routed) view(a ability) Consul {
	type (
		C = Consul
		P = plumbing
		E = EraReader
		F = FeatureReader
		L = Locker
		K = KVStore
	)
	switch a {
	case 0:
		return struct {
			C
			P
		}{w, w}
	case abilityEra:
		return struct {
			C
			P
			E
		}{w, w, w}
	case abilityFeatures:
		return struct {
			C
			P
			F
		}{w, w, w}
	case abilityEra | abilityFeatures:
		return struct {
			C
			P
			E
			F
		}{w, w, w, w}
	case abilityLock:
		return struct {
			C
			P
			L
		}{w, w, w}
	case abilityEra | abilityLock:
		return struct {
			C
			P
			E
			L
		}{w, w, w, w}
	case abilityFeatures | abilityLock:
		return struct {
			C
			P
			F
			L
		}{w, w, w, w}
	case abilityEra | abilityFeatures | abilityLock:
		return struct {
			C
			P
			E
			F
			L
		}{w, w, w, w, w}
	case abilityKV:
		return struct {
			C
			P
			K
		}{w, w, w}
	case abilityEra | abilityKV:
		return struct {
			C
			P
			E
			K
		}{w, w, w, w}
	case abilityFeatures | abilityKV:
		return struct {
			C
			P
			F
			K
		}{w, w, w, w}
	case abilityEra | abilityFeatures | abilityKV:
		return struct {
			C
			P
			E
			F
			K
		}{w, w, w, w, w}
	case abilityLock | abilityKV:
		return struct {
			C
			P
			L
			K
		}{w, w, w, w}
	case abilityEra | abilityLock | abilityKV:
		return struct {
			C
			P
			E
			L
			K
		}{w, w, w, w, w}
	case abilityFeatures | abilityLock | abilityKV:
		return struct {
			C
			P
			F
			L
			K
		}{w, w, w, w, w}
	default:
		return struct {
			C
			P
			E
			F
			L
			K
		}{w, w, w, w, w, w}
	}
}

// routed is a Consul whose every call goes through route, which makes it
// on the Consul that answers: the wrapped one (Intercept) or the agent in
// use (Failover). It is the package's one set of pass-throughs. It has
// every method of every optional interface; a call the Consul reached does
// not implement fails with that interface's error (ErrNoEraReader, ...),
// and Intercept shows only the interfaces its Consul has (view).
type routed struct {
	route func(ctx context.Context, call string, fn func(context.Context, Consul) error) error
	// agentOf names the agent calls go through now (see lockMover).
	agentOf func() string
	// plumbed: the lock's own calls reach a Consul that makes them
	// (NewConsul's), so Lock takes the lock through them, routed.
	plumbed bool
	// lockFn, when set, takes the lock instead (a Locker of another kind).
	lockFn func(ctx context.Context, key string, holder LockHolder) (*Lock, error)
}

// plumbing is what a routed Consul passes on besides the exported
// interfaces: the lock's own calls (lock.go) and the agent in use, so that
// a lock taken through a wrapper (or a Failover over wrapped endpoints)
// routes them too.
type plumbing interface {
	lockCalls
	AutopilotWriter // autopilot.go: always there, failing with ErrNoAutopilotWriter when the Consul reached lacks it
	MetricsReader   // logage.go: likewise, with ErrNoMetricsReader
	agent() string
}

// lockCalls are the calls the lock makes (sessions, the KV key, moves).
// lockPlumbed reports whether they reach a Consul that can make them.
type lockCalls interface {
	sessionAPI
	txnMover
	sessionInfo(ctx context.Context, id string) (bool, error)
	lockPlumbed() bool
}

var (
	_ lockCalls = (*apiConsul)(nil)
	_ plumbing  = (*routed)(nil)
	_ lockMover = (*routed)(nil)
)

func (a *apiConsul) lockPlumbed() bool { return true }

// lockPlumbed reports whether the lock's own calls can be made through c.
func lockPlumbed(c Consul) bool {
	p, ok := c.(lockCalls)
	return ok && p.lockPlumbed()
}

// agentOf names the agent c's calls go through now ("" when c does not
// say: it talks to one agent).
func agentOf(c Consul) string {
	if a, ok := c.(interface{ agent() string }); ok {
		return a.agent()
	}
	return ""
}

// errNoSessionAPI is the answer of a Consul that cannot make the lock's
// own calls.
var errNoSessionAPI = errors.New("this Consul cannot make the upgrade lock's session calls (upgrade.NewConsul's can); set Config.NoLock or use NewConsul")

// movers returns c's lock-moving calls, or an error wrapping errNoTxn.
func movers(c Consul) (txnMover, error) {
	m, err := sessions(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoTxn, err)
	}
	return m, nil
}

func sessions(c Consul) (lockCalls, error) {
	if p, ok := c.(lockCalls); ok && p.lockPlumbed() {
		return p, nil
	}
	return nil, errNoSessionAPI
}

// errNoFeatureReader is the answer of a Consul without FeatureReader.
var errNoFeatureReader = errors.New("this Consul does not implement upgrade.FeatureReader (upgrade.NewConsul's does; wrap with upgrade.Intercept to keep it)")

func featureReader(c Consul) (FeatureReader, error) {
	if r, ok := c.(FeatureReader); ok {
		return r, nil
	}
	return nil, errNoFeatureReader
}

func kvStore(c Consul) (KVStore, error) {
	if s, ok := c.(KVStore); ok {
		return s, nil
	}
	return nil, errors.New("this Consul has no KV store: it does not implement upgrade.KVStore (upgrade.NewConsul's does; wrap with upgrade.Intercept to keep it)")
}

// via makes call through w and returns the answer of the Consul that
// answered.
func via[T any](ctx context.Context, w *routed, call string, fn func(context.Context, Consul) (T, error)) (T, error) {
	var out T
	err := w.route(ctx, call, func(ctx context.Context, c Consul) error {
		v, err := fn(ctx, c)
		out = v
		return err
	})
	return out, err
}

// do is via for calls that answer only an error.
func (w *routed) do(ctx context.Context, call string, fn func(context.Context, Consul) error) error {
	return w.route(ctx, call, fn)
}

func (w *routed) agent() string {
	if w.agentOf == nil {
		return ""
	}
	return w.agentOf()
}

func (w *routed) lockPlumbed() bool { return w.plumbed }

// The Consul calls.

func (w *routed) Members(ctx context.Context) ([]*api.AgentMember, error) {
	return via(ctx, w, "Members", func(ctx context.Context, c Consul) ([]*api.AgentMember, error) { return c.Members(ctx) })
}

func (w *routed) RaftConfiguration(ctx context.Context) (*api.RaftConfiguration, error) {
	return via(ctx, w, "RaftConfiguration", func(ctx context.Context, c Consul) (*api.RaftConfiguration, error) { return c.RaftConfiguration(ctx) })
}

func (w *routed) AutopilotHealth(ctx context.Context) (*api.OperatorHealthReply, error) {
	return via(ctx, w, "AutopilotHealth", func(ctx context.Context, c Consul) (*api.OperatorHealthReply, error) { return c.AutopilotHealth(ctx) })
}

func (w *routed) AutopilotConfiguration(ctx context.Context) (*api.AutopilotConfiguration, error) {
	return via(ctx, w, "AutopilotConfiguration", func(ctx context.Context, c Consul) (*api.AutopilotConfiguration, error) {
		return c.AutopilotConfiguration(ctx)
	})
}

func (w *routed) Leader(ctx context.Context) (string, error) {
	return via(ctx, w, "Leader", func(ctx context.Context, c Consul) (string, error) { return c.Leader(ctx) })
}

func (w *routed) AgentSelf(ctx context.Context) (map[string]map[string]any, error) {
	return via(ctx, w, "AgentSelf", func(ctx context.Context, c Consul) (map[string]map[string]any, error) { return c.AgentSelf(ctx) })
}

func (w *routed) Datacenters(ctx context.Context) ([]string, error) {
	return via(ctx, w, "Datacenters", func(ctx context.Context, c Consul) ([]string, error) { return c.Datacenters(ctx) })
}

// SnapshotSave routes the start of the stream: a Failover tries another
// agent only while none has answered; a stream that breaks once it has
// started fails the snapshot (which is then verified and refused).
func (w *routed) SnapshotSave(ctx context.Context) (io.ReadCloser, error) {
	return via(ctx, w, "SnapshotSave", func(ctx context.Context, c Consul) (io.ReadCloser, error) { return c.SnapshotSave(ctx) })
}

func (w *routed) TransferLeader(ctx context.Context, id string) error {
	return w.do(ctx, "TransferLeader", func(ctx context.Context, c Consul) error { return c.TransferLeader(ctx, id) })
}

// The EraReader calls.

func (w *routed) Peers(ctx context.Context) ([]string, error) {
	return via(ctx, w, "Peers", func(ctx context.Context, c Consul) ([]string, error) {
		r, err := eraReader(c, "read raft peers")
		if err != nil {
			return nil, err
		}
		return r.Peers(ctx)
	})
}

func (w *routed) KVList(ctx context.Context) ([]*api.KVPair, uint64, error) {
	type list struct {
		pairs []*api.KVPair
		index uint64
	}
	out, err := via(ctx, w, "KVList", func(ctx context.Context, c Consul) (list, error) {
		r, err := eraReader(c, "read the KV tree")
		if err != nil {
			return list{}, err
		}
		p, i, err := r.KVList(ctx)
		return list{p, i}, err
	})
	return out.pairs, out.index, err
}

func (w *routed) ACLList(ctx context.Context) ([]*api.ACLEntry, error) {
	return via(ctx, w, "ACLList", func(ctx context.Context, c Consul) ([]*api.ACLEntry, error) {
		r, err := eraReader(c, "list legacy ACL tokens")
		if err != nil {
			return nil, err
		}
		return r.ACLList(ctx)
	})
}

func (w *routed) StaleState(ctx context.Context) (StaleState, error) {
	return via(ctx, w, "StaleState", func(ctx context.Context, c Consul) (StaleState, error) {
		r, err := eraReader(c, "stale catalog read")
		if err != nil {
			return StaleState{}, err
		}
		return r.StaleState(ctx)
	})
}

// The FeatureReader calls.

func (w *routed) ACLReplication(ctx context.Context, dc string) (*api.ACLReplicationStatus, error) {
	return via(ctx, w, "ACLReplication", func(ctx context.Context, c Consul) (*api.ACLReplicationStatus, error) {
		r, err := featureReader(c)
		if err != nil {
			return nil, err
		}
		return r.ACLReplication(ctx, dc)
	})
}

func (w *routed) ACLTokens(ctx context.Context) ([]ACLTokenEntry, error) {
	return via(ctx, w, "ACLTokens", func(ctx context.Context, c Consul) ([]ACLTokenEntry, error) {
		r, err := featureReader(c)
		if err != nil {
			return nil, err
		}
		return r.ACLTokens(ctx)
	})
}

func (w *routed) ConfigEntryCount(ctx context.Context, kind string) (int, error) {
	return via(ctx, w, "ConfigEntryCount", func(ctx context.Context, c Consul) (int, error) {
		r, err := featureReader(c)
		if err != nil {
			return 0, err
		}
		return r.ConfigEntryCount(ctx, kind)
	})
}

func (w *routed) IntentionCount(ctx context.Context) (int, error) {
	return via(ctx, w, "IntentionCount", func(ctx context.Context, c Consul) (int, error) {
		r, err := featureReader(c)
		if err != nil {
			return 0, err
		}
		return r.IntentionCount(ctx)
	})
}

func (w *routed) Nodes(ctx context.Context, dc string) ([]*api.Node, error) {
	return via(ctx, w, "Nodes", func(ctx context.Context, c Consul) ([]*api.Node, error) {
		r, err := featureReader(c)
		if err != nil {
			return nil, err
		}
		return r.Nodes(ctx, dc)
	})
}

// The KVStore calls.

func (w *routed) KVGet(ctx context.Context, key string) ([]byte, bool, error) {
	type got struct {
		v  []byte
		ok bool
	}
	g, err := via(ctx, w, "KVGet", func(ctx context.Context, c Consul) (got, error) {
		s, err := kvStore(c)
		if err != nil {
			return got{}, err
		}
		v, ok, err := s.KVGet(ctx, key)
		return got{v, ok}, err
	})
	return g.v, g.ok, err
}

func (w *routed) KVPut(ctx context.Context, key string, value []byte) error {
	return w.do(ctx, "KVPut", func(ctx context.Context, c Consul) error {
		s, err := kvStore(c)
		if err != nil {
			return err
		}
		return s.KVPut(ctx, key, value)
	})
}

func (w *routed) KVDelete(ctx context.Context, key string) error {
	return w.do(ctx, "KVDelete", func(ctx context.Context, c Consul) error {
		s, err := kvStore(c)
		if err != nil {
			return err
		}
		return s.KVDelete(ctx, key)
	})
}

// The lock: Locker, and the lock's own calls (plumbing), each routed, so
// that the lock is renewed and moved through whichever Consul answers.

// Lock implements Locker: with the session lock NewConsul's Consul takes,
// through the lock's own calls when they reach such a Consul, else through
// the wrapped Consul's Locker.
func (w *routed) Lock(ctx context.Context, key string, holder LockHolder) (*Lock, error) {
	if w.lockFn != nil {
		return w.lockFn(ctx, key, holder)
	}
	return lockWith(ctx, w, key, holder)
}

func (w *routed) createSession(ctx context.Context, body map[string]any) (string, error) {
	return via(ctx, w, "Lock/create-session", func(ctx context.Context, c Consul) (string, error) {
		a, err := sessions(c)
		if err != nil {
			return "", err
		}
		return a.createSession(ctx, body)
	})
}

func (w *routed) acquire(ctx context.Context, key string, value []byte, session string) (bool, error) {
	return via(ctx, w, "Lock/acquire", func(ctx context.Context, c Consul) (bool, error) {
		a, err := sessions(c)
		if err != nil {
			return false, err
		}
		return a.acquire(ctx, key, value, session)
	})
}

func (w *routed) holderValue(ctx context.Context, key string) ([]byte, error) {
	return via(ctx, w, "Lock/holder", func(ctx context.Context, c Consul) ([]byte, error) {
		a, err := sessions(c)
		if err != nil {
			return nil, err
		}
		return a.holderValue(ctx, key)
	})
}

func (w *routed) renewSession(ctx context.Context, id string) (bool, error) {
	return via(ctx, w, "Lock/renew-session", func(ctx context.Context, c Consul) (bool, error) {
		a, err := sessions(c)
		if err != nil {
			return false, err
		}
		return a.renewSession(ctx, id)
	})
}

func (w *routed) destroySession(ctx context.Context, id string) error {
	return w.do(ctx, "Lock/destroy-session", func(ctx context.Context, c Consul) error {
		a, err := sessions(c)
		if err != nil {
			return err
		}
		return a.destroySession(ctx, id)
	})
}

func (w *routed) releaseKey(ctx context.Context, key, session string) error {
	return w.do(ctx, "Lock/release", func(ctx context.Context, c Consul) error {
		a, err := sessions(c)
		if err != nil {
			return err
		}
		return a.releaseKey(ctx, key, session)
	})
}

func (w *routed) sessionInfo(ctx context.Context, id string) (bool, error) {
	return via(ctx, w, "Lock/session-info", func(ctx context.Context, c Consul) (bool, error) {
		a, err := sessions(c)
		if err != nil {
			return false, err
		}
		return a.sessionInfo(ctx, id)
	})
}

func (w *routed) moveLock(ctx context.Context, key string, value []byte, from, to string) error {
	return w.do(ctx, "Lock/move", func(ctx context.Context, c Consul) error {
		a, err := sessions(c)
		if err != nil {
			return fmt.Errorf("%w: %v", errNoTxn, err)
		}
		return a.moveLock(ctx, key, value, from, to)
	})
}

func (w *routed) keySession(ctx context.Context, key string) (string, error) {
	return via(ctx, w, "Lock/key-session", func(ctx context.Context, c Consul) (string, error) {
		a, err := sessions(c)
		if err != nil {
			return "", fmt.Errorf("%w: %v", errNoTxn, err)
		}
		return a.keySession(ctx, key)
	})
}

func (w *routed) sessionNode(ctx context.Context, id string) (string, []string, error) {
	type info struct {
		node   string
		checks []string
	}
	got, err := via(ctx, w, "Lock/session-node", func(ctx context.Context, c Consul) (info, error) {
		a, err := sessions(c)
		if err != nil {
			return info{}, fmt.Errorf("%w: %v", errNoTxn, err)
		}
		node, checks, err := a.sessionNode(ctx, id)
		return info{node, checks}, err
	})
	return got.node, got.checks, err
}

func (w *routed) releaseLock(ctx context.Context, key string, value []byte, session string) (bool, error) {
	return via(ctx, w, "Lock/release-lock", func(ctx context.Context, c Consul) (bool, error) {
		a, err := sessions(c)
		if err != nil {
			return false, err
		}
		return a.releaseLock(ctx, key, value, session)
	})
}
