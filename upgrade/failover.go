package upgrade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/hashicorp/consul/api"
)

// Endpoint is one agent a failover Consul may talk to.
type Endpoint struct {
	// Addr names the agent in errors and in OnSwitch (its HTTP address).
	Addr string
	// Consul talks to it (NewConsul, ConnectAddr).
	Consul Consul
}

// AgentUnreachableError is returned by a call of a failover Consul
// (Failover, ConnectAddrs) when no configured agent answered it: every
// address tried, in order, with why each failed. A gate or an observation
// that gets it retries until its timeout like any API error, then halts
// the run with it wrapped; nothing is acted on without an answer.
type AgentUnreachableError struct {
	// Tried lists the addresses tried, in the order tried.
	Tried []string
	// Errs holds the error of each address in Tried.
	Errs []error
}

func (e *AgentUnreachableError) Error() string {
	parts := make([]string, len(e.Tried))
	for i, a := range e.Tried {
		parts[i] = fmt.Sprintf("%s: %v", a, e.Errs[i])
	}
	return fmt.Sprintf("no consul agent answered (tried %d: %s); start one of them or add the address of a live agent of the datacenter", len(e.Tried), strings.Join(parts, "; "))
}

// Unwrap returns the errors of every address.
func (e *AgentUnreachableError) Unwrap() []error { return e.Errs }

// FailoverConsul is a Consul that talks to one agent of a list at a time and
// moves to the next on a transport error (see Failover). It implements
// Consul, EraReader, FeatureReader and Locker; the lock's session is
// renewed through whichever agent answers. It is safe for concurrent use.
type FailoverConsul struct {
	eps      []Endpoint
	onSwitch func(from, to string, cause error)

	mu  sync.Mutex
	cur int
	dc  string // the datacenter of the first agent that answered
}

var (
	_ Consul        = (*FailoverConsul)(nil)
	_ EraReader     = (*FailoverConsul)(nil)
	_ FeatureReader = (*FailoverConsul)(nil)
	_ Locker        = (*FailoverConsul)(nil)
)

// Failover returns a Consul that sends each call to the agent in use, the
// first endpoint at first. When a call gets no answer from it (connection
// refused or reset, a timeout of the HTTP client, a name that does not
// resolve: the agent is down or cut off), the same call is made to the
// other endpoints in their configured order, and the first that answers
// becomes the agent in use (onSwitch, if not nil, is told). An answer of
// Consul, even an error status, is returned as it is: another agent of the
// datacenter would answer the same. A call that ends because its own ctx
// ended is not tried elsewhere. When no endpoint answers the call, the
// error is an *AgentUnreachableError naming every address tried.
//
// Before an agent is used for the first time its /v1/agent/self is read,
// and an agent of another datacenter than the first one that answered is
// never used (its error in AgentUnreachableError says so): a run observes
// one datacenter, never a guess at another one.
func Failover(endpoints []Endpoint, onSwitch func(from, to string, cause error)) (*FailoverConsul, error) {
	var errs []error
	if len(endpoints) == 0 {
		errs = append(errs, &ConfigError{Field: "Consul", Problem: "failover has no endpoints; pass at least one agent's address"})
	}
	seen := map[string]bool{}
	for i, ep := range endpoints {
		switch {
		case ep.Addr == "":
			errs = append(errs, &ConfigError{Field: "Consul", Value: fmt.Sprintf("endpoint #%d", i+1), Problem: "has an empty address; name each agent by its HTTP address"})
		case seen[ep.Addr]:
			errs = append(errs, &ConfigError{Field: "Consul", Value: ep.Addr, Problem: "is listed twice for failover; list each agent once"})
		case ep.Consul == nil:
			errs = append(errs, &ConfigError{Field: "Consul", Value: ep.Addr, Problem: "has a nil Consul; pass upgrade.ConnectAddr(addr)"})
		}
		seen[ep.Addr] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &FailoverConsul{eps: append([]Endpoint(nil), endpoints...), onSwitch: onSwitch, cur: -1}, nil
}

// ConnectAddrs returns a failover Consul (Failover) over the agents at
// addrs, tried in that order, each configured as ConnectAddr does.
func ConnectAddrs(onSwitch func(from, to string, cause error), addrs ...string) (*FailoverConsul, error) {
	eps := make([]Endpoint, 0, len(addrs))
	for _, a := range addrs {
		c, err := ConnectAddr(a)
		if err != nil {
			return nil, err
		}
		eps = append(eps, Endpoint{Addr: a, Consul: c})
	}
	return Failover(eps, onSwitch)
}

// Current returns the address of the agent in use ("" before the first
// call answered).
func (f *FailoverConsul) Current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur < 0 {
		return ""
	}
	return f.eps[f.cur].Addr
}

// unreachable reports whether err says the agent gave no answer (rather
// than an answer that is an error), for a call whose ctx has not ended.
func unreachable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne)
}

// call makes fn on the agent in use, then on the others in order until one
// answers.
func call[T any](ctx context.Context, f *FailoverConsul, fn func(Consul) (T, error)) (T, error) {
	f.mu.Lock()
	cur, dc := f.cur, f.dc
	f.mu.Unlock()
	order := make([]int, 0, len(f.eps))
	if cur >= 0 {
		order = append(order, cur)
	}
	for i := range f.eps {
		if i != cur {
			order = append(order, i)
		}
	}
	var zero T
	ue := &AgentUnreachableError{}
	for _, i := range order {
		ep := f.eps[i]
		var got string
		if i != cur {
			var err error
			got, err = f.datacenter(ctx, ep)
			switch {
			case err != nil && unreachable(ctx, err):
				ue.Tried, ue.Errs = append(ue.Tried, ep.Addr), append(ue.Errs, err)
				continue
			case err != nil:
				return zero, fmt.Errorf("consul agent %s: %w", ep.Addr, err)
			case dc != "" && got != dc:
				ue.Tried = append(ue.Tried, ep.Addr)
				ue.Errs = append(ue.Errs, fmt.Errorf("agent of datacenter %s, not %s: not used", got, dc))
				continue
			}
		}
		out, err := fn(ep.Consul)
		if unreachable(ctx, err) {
			ue.Tried, ue.Errs = append(ue.Tried, ep.Addr), append(ue.Errs, err)
			continue
		}
		if i != cur {
			f.switchTo(i, got, ue)
		}
		return out, err
	}
	if err := ctx.Err(); err != nil {
		return zero, errors.Join(ue, err)
	}
	return zero, ue
}

// datacenter reads the datacenter of an agent about to be used.
func (f *FailoverConsul) datacenter(ctx context.Context, ep Endpoint) (string, error) {
	self, err := ep.Consul.AgentSelf(ctx)
	if err != nil {
		return "", err
	}
	return selfString(self, "Datacenter"), nil
}

// switchTo makes endpoint i, of datacenter dc, the agent in use.
func (f *FailoverConsul) switchTo(i int, dc string, ue *AgentUnreachableError) {
	f.mu.Lock()
	from := ""
	if f.cur >= 0 {
		from = f.eps[f.cur].Addr
	}
	f.cur = i
	if f.dc == "" {
		f.dc = dc
	}
	f.mu.Unlock()
	if from != "" && f.onSwitch != nil {
		var cause error
		if len(ue.Tried) > 0 {
			cause = ue
		}
		f.onSwitch(from, f.eps[i].Addr, cause)
	}
}

// The Consul calls.

func (f *FailoverConsul) Members(ctx context.Context) ([]*api.AgentMember, error) {
	return call(ctx, f, func(c Consul) ([]*api.AgentMember, error) { return c.Members(ctx) })
}

func (f *FailoverConsul) RaftConfiguration(ctx context.Context) (*api.RaftConfiguration, error) {
	return call(ctx, f, func(c Consul) (*api.RaftConfiguration, error) { return c.RaftConfiguration(ctx) })
}

func (f *FailoverConsul) AutopilotHealth(ctx context.Context) (*api.OperatorHealthReply, error) {
	return call(ctx, f, func(c Consul) (*api.OperatorHealthReply, error) { return c.AutopilotHealth(ctx) })
}

func (f *FailoverConsul) AutopilotConfiguration(ctx context.Context) (*api.AutopilotConfiguration, error) {
	return call(ctx, f, func(c Consul) (*api.AutopilotConfiguration, error) { return c.AutopilotConfiguration(ctx) })
}

func (f *FailoverConsul) Leader(ctx context.Context) (string, error) {
	return call(ctx, f, func(c Consul) (string, error) { return c.Leader(ctx) })
}

func (f *FailoverConsul) AgentSelf(ctx context.Context) (map[string]map[string]any, error) {
	return call(ctx, f, func(c Consul) (map[string]map[string]any, error) { return c.AgentSelf(ctx) })
}

func (f *FailoverConsul) Datacenters(ctx context.Context) ([]string, error) {
	return call(ctx, f, func(c Consul) ([]string, error) { return c.Datacenters(ctx) })
}

// SnapshotSave fails over only while no agent has answered; a stream that
// breaks once it has started fails the snapshot (which is then verified
// and refused), it is not resumed elsewhere.
func (f *FailoverConsul) SnapshotSave(ctx context.Context) (io.ReadCloser, error) {
	return call(ctx, f, func(c Consul) (io.ReadCloser, error) { return c.SnapshotSave(ctx) })
}

func (f *FailoverConsul) TransferLeader(ctx context.Context, id string) error {
	_, err := call(ctx, f, func(c Consul) (struct{}, error) { return struct{}{}, c.TransferLeader(ctx, id) })
	return err
}

// The EraReader calls: an endpoint without EraReader answers with the
// error eraReader gives (ErrNoEraReader).

func (f *FailoverConsul) Peers(ctx context.Context) ([]string, error) {
	return call(ctx, f, func(c Consul) ([]string, error) {
		r, err := eraReader(c, "read raft peers")
		if err != nil {
			return nil, err
		}
		return r.Peers(ctx)
	})
}

type kvList struct {
	pairs []*api.KVPair
	index uint64
}

func (f *FailoverConsul) KVList(ctx context.Context) ([]*api.KVPair, uint64, error) {
	out, err := call(ctx, f, func(c Consul) (kvList, error) {
		r, err := eraReader(c, "read the KV tree")
		if err != nil {
			return kvList{}, err
		}
		p, i, err := r.KVList(ctx)
		return kvList{p, i}, err
	})
	return out.pairs, out.index, err
}

func (f *FailoverConsul) ACLList(ctx context.Context) ([]*api.ACLEntry, error) {
	return call(ctx, f, func(c Consul) ([]*api.ACLEntry, error) {
		r, err := eraReader(c, "list legacy ACL tokens")
		if err != nil {
			return nil, err
		}
		return r.ACLList(ctx)
	})
}

func (f *FailoverConsul) StaleState(ctx context.Context) (StaleState, error) {
	return call(ctx, f, func(c Consul) (StaleState, error) {
		r, err := eraReader(c, "stale catalog read")
		if err != nil {
			return StaleState{}, err
		}
		return r.StaleState(ctx)
	})
}

// The FeatureReader calls.

// errNoFeatureReader is the answer of an endpoint whose Consul does not
// implement FeatureReader.
var errNoFeatureReader = errors.New("the Consul of this failover endpoint does not implement upgrade.FeatureReader (upgrade.NewConsul's does)")

func featureReader(c Consul) (FeatureReader, error) {
	if r, ok := c.(FeatureReader); ok {
		return r, nil
	}
	return nil, errNoFeatureReader
}

func (f *FailoverConsul) ACLReplication(ctx context.Context, dc string) (*api.ACLReplicationStatus, error) {
	return call(ctx, f, func(c Consul) (*api.ACLReplicationStatus, error) {
		r, err := featureReader(c)
		if err != nil {
			return nil, err
		}
		return r.ACLReplication(ctx, dc)
	})
}

func (f *FailoverConsul) ACLTokens(ctx context.Context) ([]ACLTokenEntry, error) {
	return call(ctx, f, func(c Consul) ([]ACLTokenEntry, error) {
		r, err := featureReader(c)
		if err != nil {
			return nil, err
		}
		return r.ACLTokens(ctx)
	})
}

func (f *FailoverConsul) ConfigEntryCount(ctx context.Context, kind string) (int, error) {
	return call(ctx, f, func(c Consul) (int, error) {
		r, err := featureReader(c)
		if err != nil {
			return 0, err
		}
		return r.ConfigEntryCount(ctx, kind)
	})
}

func (f *FailoverConsul) IntentionCount(ctx context.Context) (int, error) {
	return call(ctx, f, func(c Consul) (int, error) {
		r, err := featureReader(c)
		if err != nil {
			return 0, err
		}
		return r.IntentionCount(ctx)
	})
}

func (f *FailoverConsul) Nodes(ctx context.Context, dc string) ([]*api.Node, error) {
	return call(ctx, f, func(c Consul) ([]*api.Node, error) {
		r, err := featureReader(c)
		if err != nil {
			return nil, err
		}
		return r.Nodes(ctx, dc)
	})
}

// The lock: its session calls fail over too, so the lock is renewed while
// the agent that created the session is down (the session has no checks,
// so that agent's death does not invalidate it).

// errNoSessionAPI is the answer of an endpoint whose Consul cannot take
// the lock.
var errNoSessionAPI = errors.New("the Consul of this failover endpoint cannot take the upgrade lock (upgrade.NewConsul's can); set Config.NoLock or use NewConsul")

func sessions(c Consul) (sessionAPI, error) {
	if s, ok := c.(sessionAPI); ok {
		return s, nil
	}
	return nil, errNoSessionAPI
}

// Lock implements Locker: see lockWith.
func (f *FailoverConsul) Lock(ctx context.Context, key string, holder LockHolder) (*Lock, error) {
	return lockWith(ctx, failoverSessions{f}, key, holder)
}

type failoverSessions struct{ f *FailoverConsul }

func (s failoverSessions) createSession(ctx context.Context, body map[string]any) (string, error) {
	return call(ctx, s.f, func(c Consul) (string, error) {
		a, err := sessions(c)
		if err != nil {
			return "", err
		}
		return a.createSession(ctx, body)
	})
}

func (s failoverSessions) acquire(ctx context.Context, key string, value []byte, session string) (bool, error) {
	return call(ctx, s.f, func(c Consul) (bool, error) {
		a, err := sessions(c)
		if err != nil {
			return false, err
		}
		return a.acquire(ctx, key, value, session)
	})
}

func (s failoverSessions) holderValue(ctx context.Context, key string) ([]byte, error) {
	return call(ctx, s.f, func(c Consul) ([]byte, error) {
		a, err := sessions(c)
		if err != nil {
			return nil, err
		}
		return a.holderValue(ctx, key)
	})
}

func (s failoverSessions) renewSession(ctx context.Context, id string) (bool, error) {
	return call(ctx, s.f, func(c Consul) (bool, error) {
		a, err := sessions(c)
		if err != nil {
			return false, err
		}
		return a.renewSession(ctx, id)
	})
}

func (s failoverSessions) destroySession(ctx context.Context, id string) error {
	_, err := call(ctx, s.f, func(c Consul) (struct{}, error) {
		a, err := sessions(c)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, a.destroySession(ctx, id)
	})
	return err
}

func (s failoverSessions) releaseKey(ctx context.Context, key, session string) error {
	_, err := call(ctx, s.f, func(c Consul) (struct{}, error) {
		a, err := sessions(c)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, a.releaseKey(ctx, key, session)
	})
	return err
}

func (s failoverSessions) sessionInfo(ctx context.Context, id string) (bool, error) {
	return call(ctx, s.f, func(c Consul) (bool, error) {
		a, err := sessions(c)
		if err != nil {
			return false, err
		}
		return sessionExistsCtx(ctx, a, id)
	})
}

// agent implements lockMover.
func (s failoverSessions) agent() string { return s.f.Current() }

func movers(c Consul) (txnMover, error) {
	if m, ok := c.(txnMover); ok {
		return m, nil
	}
	return nil, fmt.Errorf("%w: its Consul is not upgrade.NewConsul's", errNoTxn)
}

func (s failoverSessions) moveLock(ctx context.Context, key string, value []byte, from, to string) error {
	_, err := call(ctx, s.f, func(c Consul) (struct{}, error) {
		m, err := movers(c)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, m.moveLock(ctx, key, value, from, to)
	})
	return err
}

func (s failoverSessions) sessionNode(ctx context.Context, id string) (string, []string, error) {
	type info struct {
		node   string
		checks []string
	}
	got, err := call(ctx, s.f, func(c Consul) (info, error) {
		m, err := movers(c)
		if err != nil {
			return info{}, err
		}
		node, checks, err := m.sessionNode(ctx, id)
		return info{node, checks}, err
	})
	return got.node, got.checks, err
}

func (s failoverSessions) releaseLock(ctx context.Context, key string, value []byte, session string) (bool, error) {
	return call(ctx, s.f, func(c Consul) (bool, error) {
		m, err := movers(c)
		if err != nil {
			return false, err
		}
		return m.releaseLock(ctx, key, value, session)
	})
}

var (
	_ lockMover = failoverSessions{}
	_ txnMover  = (*apiConsul)(nil)
)

func (s failoverSessions) keySession(ctx context.Context, key string) (string, error) {
	return call(ctx, s.f, func(c Consul) (string, error) {
		m, err := movers(c)
		if err != nil {
			return "", err
		}
		return m.keySession(ctx, key)
	})
}

// KVGet implements KVStore through whichever agent answers, when every
// endpoint's Consul has a KV store (NewConsul's has).
func (f *FailoverConsul) KVGet(ctx context.Context, key string) ([]byte, bool, error) {
	type got struct {
		v  []byte
		ok bool
	}
	g, err := call(ctx, f, func(c Consul) (got, error) {
		s, err := kvStore(c)
		if err != nil {
			return got{}, err
		}
		v, ok, err := s.KVGet(ctx, key)
		return got{v, ok}, err
	})
	return g.v, g.ok, err
}

// KVPut implements KVStore (see KVGet).
func (f *FailoverConsul) KVPut(ctx context.Context, key string, value []byte) error {
	_, err := call(ctx, f, func(c Consul) (struct{}, error) {
		s, err := kvStore(c)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.KVPut(ctx, key, value)
	})
	return err
}

// KVDelete implements KVStore (see KVGet).
func (f *FailoverConsul) KVDelete(ctx context.Context, key string) error {
	_, err := call(ctx, f, func(c Consul) (struct{}, error) {
		s, err := kvStore(c)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.KVDelete(ctx, key)
	})
	return err
}

func kvStore(c Consul) (KVStore, error) {
	if s, ok := c.(KVStore); ok {
		return s, nil
	}
	return nil, errors.New("the Consul of this failover endpoint has no KV store (upgrade.NewConsul's has)")
}
