package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
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
// Consul, EraReader, FeatureReader, Locker and KVStore: each call of an
// optional interface is made on the agent in use, and fails there when that
// endpoint's Consul does not implement it (NewConsul's implements them all).
// The lock's session is renewed, and the lock moved, through whichever
// agent answers. It is safe for concurrent use.
type FailoverConsul struct {
	routed // every call, through route

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
	_ KVStore       = (*FailoverConsul)(nil)
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
	f := &FailoverConsul{eps: append([]Endpoint(nil), endpoints...), onSwitch: onSwitch, cur: -1}
	f.routed = routed{route: f.call, agentOf: f.Current, plumbed: true}
	return f, nil
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
// answers (routed.route).
func (f *FailoverConsul) call(ctx context.Context, _ string, fn func(context.Context, Consul) error) error {
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
				return fmt.Errorf("consul agent %s: %w", ep.Addr, err)
			case dc != "" && got != dc:
				ue.Tried = append(ue.Tried, ep.Addr)
				ue.Errs = append(ue.Errs, fmt.Errorf("agent of datacenter %s, not %s: not used", got, dc))
				continue
			}
		}
		err := fn(ctx, ep.Consul)
		if unreachable(ctx, err) {
			ue.Tried, ue.Errs = append(ue.Tried, ep.Addr), append(ue.Errs, err)
			continue
		}
		if i != cur {
			f.switchTo(i, got, ue)
		}
		return err
	}
	if err := ctx.Err(); err != nil {
		return errors.Join(ue, err)
	}
	return ue
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
