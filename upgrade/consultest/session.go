package consultest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	version "github.com/hashicorp/go-version"
)

// session is a Consul session: bound to a node, optionally to its serfHealth
// check, optionally with a TTL.
type session struct {
	id, name, node string
	serfHealth     bool // invalidated when the node's agent fails
	ttl            time.Duration
	behavior       string // "release" or "delete"
	renewed        time.Time
}

// kvEntry is a KV key; session is the session holding its lock ("" for none).
type kvEntry struct {
	value       []byte
	session     string
	createIndex uint64
	modifyIndex uint64
	lockIndex   uint64
}

// expireSessions invalidates the sessions whose TTL ran out: Consul allows a
// grace of one more TTL, so a session not renewed for twice its TTL is gone.
// Callers hold c.mu.
func (c *Cluster) expireSessions(now time.Time) {
	for id, s := range c.sessions {
		if s.ttl > 0 && now.Sub(s.renewed) > 2*s.ttl {
			c.invalidate(id)
		}
	}
}

// agentFailed invalidates the sessions bound to node's serfHealth check.
// Callers hold c.mu.
func (c *Cluster) agentFailed(node string) {
	for id, s := range c.sessions {
		if s.node == node && s.serfHealth {
			c.invalidate(id)
		}
	}
}

// invalidate ends a session: the locks it holds are released, or their keys
// deleted (behavior "delete"). Callers hold c.mu.
func (c *Cluster) invalidate(id string) {
	s, ok := c.sessions[id]
	if !ok {
		return
	}
	delete(c.sessions, id)
	for k, e := range c.kv {
		if e.session != id {
			continue
		}
		if s.behavior == api.SessionBehaviorDelete {
			delete(c.kv, k)
			continue
		}
		e.session = ""
		c.kvIndex++
		e.modifyIndex = c.kvIndex
	}
}

// InvalidateSession ends the session with id as Consul does when its TTL runs
// out or its node fails: the locks it holds are released, or their keys
// deleted if it was created with behavior "delete". Its holder learns at its
// next renewal. An unknown id changes nothing.
func (c *Cluster) InvalidateSession(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invalidate(id)
}

// TxnCrashed returns the servers a transaction crashed, in order: each ran
// a version before 0.7.0 when a transaction committed (see ServeHTTP).
func (c *Cluster) TxnCrashed() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.txnCrashed)
}

// Sessions returns the IDs of the live sessions, sorted.
func (c *Cluster) Sessions() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireSessions(time.Now())
	out := make([]string, 0, len(c.sessions))
	for id := range c.sessions {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// LockHolder returns the value of the KV key and whether a session holds its
// lock.
func (c *Cluster) LockHolder(key string) (value []byte, held bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireSessions(time.Now())
	e, ok := c.kv[key]
	if !ok {
		return nil, false
	}
	return slices.Clone(e.value), e.session != ""
}

// KV returns the value of a KV key and whether it exists.
func (c *Cluster) KV(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireSessions(time.Now())
	e, ok := c.kv[key]
	if !ok {
		return nil, false
	}
	return slices.Clone(e.value), true
}

// PutKV sets a KV key, as a plain PUT /v1/kv/<key> does.
func (c *Cluster) PutKV(key string, value []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.put(key, c.kv[key], slices.Clone(value))
}

// HeldLocks returns the KV keys whose lock a session holds, sorted.
func (c *Cluster) HeldLocks() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireSessions(time.Now())
	var out []string
	for k, e := range c.kv {
		if e.session != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// serveSession answers /v1/session/{create,renew,destroy,info}. Callers hold
// c.mu.
func (c *Cluster) serveSession(w http.ResponseWriter, r *http.Request, now time.Time) {
	op, id, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/session/"), "/")
	switch {
	case op == "create" && id == "" && r.Method == http.MethodPut:
		s, code, err := c.newSession(r.Body, now, c.agentFor(r))
		if err != nil {
			http.Error(w, err.Error(), code)
			return
		}
		c.sessions[s.id] = s
		writeJSON(w, http.StatusOK, map[string]string{"ID": s.id})
	case op == "renew" && id != "" && r.Method == http.MethodPut:
		s, ok := c.sessions[id]
		if !ok {
			http.Error(w, fmt.Sprintf("Session id '%s' not found", id), http.StatusNotFound)
			return
		}
		s.renewed = now
		writeJSON(w, http.StatusOK, []*api.SessionEntry{s.entry()})
	case op == "destroy" && id != "" && r.Method == http.MethodPut:
		c.invalidate(id)
		writeJSON(w, http.StatusOK, true)
	case op == "info" && id != "" && r.Method == http.MethodGet:
		out := []*api.SessionEntry{}
		if s, ok := c.sessions[id]; ok {
			out = append(out, s.entry())
		}
		writeJSON(w, http.StatusOK, out)
	default:
		http.Error(w, fmt.Sprintf("consultest: %s %s is not simulated", r.Method, r.URL.Path), http.StatusNotFound)
	}
}

// newSession validates a session create request made through agent a as
// Consul does: the node (a's own when the request names none) must exist,
// the only check that exists is serfHealth (the default when no checks are
// named), the TTL is 0 or 10s..24h, the behavior release or delete. An agent
// before 1.0 keeps its default serfHealth when the request names an empty
// list of checks (it decoded the body over its defaults, and an empty list
// left them as they were; measured on 0.6.4 to 0.9.3). Callers hold c.mu.
func (c *Cluster) newSession(body io.Reader, now time.Time, a *node) (*session, int, error) {
	var req struct {
		Name       string
		Node       string
		TTL        string
		Behavior   string
		Checks     *[]string
		NodeChecks *[]string
	}
	if err := json.NewDecoder(body).Decode(&req); err != nil && err != io.EOF {
		return nil, http.StatusBadRequest, fmt.Errorf("request decode failed: %v", err)
	}
	s := &session{name: req.Name, node: req.Node, behavior: req.Behavior, renewed: now}
	if s.node == "" && a != nil {
		s.node = a.name
	}
	if c.find(s.node) == nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("missing node registration: node %q", s.node)
	}
	checks := []string{"serfHealth"}
	switch {
	case req.Checks != nil && (len(*req.Checks) > 0 || !before(a, "1.0.0")):
		checks = *req.Checks
	case req.NodeChecks != nil && (len(*req.NodeChecks) > 0 || !before(a, "1.0.0")):
		checks = *req.NodeChecks
	}
	for _, ch := range checks {
		if ch != "serfHealth" {
			return nil, http.StatusInternalServerError, fmt.Errorf("missing check %q registration (consultest simulates only serfHealth)", ch)
		}
		s.serfHealth = true
	}
	if req.TTL != "" {
		ttl, err := time.ParseDuration(req.TTL)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("request decode failed: invalid TTL %q: %v", req.TTL, err)
		}
		if ttl != 0 && (ttl < 10*time.Second || ttl > 24*time.Hour) {
			return nil, http.StatusBadRequest, fmt.Errorf("invalid session TTL %s: must be 0 or between 10s and 24h0m0s", ttl)
		}
		s.ttl = ttl
	}
	switch s.behavior {
	case "":
		s.behavior = api.SessionBehaviorRelease
	case api.SessionBehaviorRelease, api.SessionBehaviorDelete:
	default:
		return nil, http.StatusBadRequest, fmt.Errorf("invalid behavior %q: use release or delete", s.behavior)
	}
	c.sessionSeq++
	s.id = fmt.Sprintf("00000000-0000-0000-0000-%012d", c.sessionSeq)
	return s, 0, nil
}

func (s *session) entry() *api.SessionEntry {
	e := &api.SessionEntry{ID: s.id, Name: s.name, Node: s.node, Behavior: s.behavior, NodeChecks: []string{}}
	if s.serfHealth {
		e.NodeChecks = []string{"serfHealth"}
	}
	if s.ttl > 0 {
		e.TTL = s.ttl.String()
	}
	return e
}

// serveKV answers /v1/kv/<key>: GET, PUT (plain, ?acquire=, ?release=) and
// DELETE of single keys. Callers hold c.mu.
func (c *Cluster) serveKV(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
	q := r.URL.Query()
	if q.Has("recurse") || q.Has("keys") || q.Has("cas") {
		http.Error(w, "consultest: recurse, keys and cas are not simulated", http.StatusBadRequest)
		return
	}
	e := c.kv[key]
	switch r.Method {
	case http.MethodGet:
		if e == nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, []*api.KVPair{{Key: key, Value: e.value, Session: e.session,
			CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex, LockIndex: e.lockIndex}})
	case http.MethodDelete:
		delete(c.kv, key)
		writeJSON(w, http.StatusOK, true)
	case http.MethodPut:
		value, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		acquire, release := q.Get("acquire"), q.Get("release")
		switch {
		case q.Has("acquire"):
			if _, ok := c.sessions[acquire]; !ok {
				http.Error(w, fmt.Sprintf("invalid session %q", acquire), http.StatusInternalServerError)
				return
			}
			if e != nil && e.session != "" && e.session != acquire {
				writeJSON(w, http.StatusOK, false)
				return
			}
			e = c.put(key, e, value)
			if e.session != acquire {
				e.lockIndex++
			}
			e.session = acquire
		case q.Has("release"):
			if e == nil || e.session != release {
				writeJSON(w, http.StatusOK, false)
				return
			}
			e = c.put(key, e, value)
			e.session = ""
		default:
			c.put(key, e, value)
		}
		writeJSON(w, http.StatusOK, true)
	default:
		http.Error(w, fmt.Sprintf("consultest: %s %s is not simulated", r.Method, r.URL.Path), http.StatusMethodNotAllowed)
	}
}

// put stores value at key (e is the existing entry or nil) and returns the
// entry. Callers hold c.mu.
func (c *Cluster) put(key string, e *kvEntry, value []byte) *kvEntry {
	c.kvIndex++
	if e == nil {
		e = &kvEntry{createIndex: c.kvIndex}
		c.kv[key] = e
	}
	e.value, e.modifyIndex = value, c.kvIndex
	return e
}

// before reports whether agent a runs a version before v. An agent whose
// version does not parse (or none) counts as current.
func before(a *node, v string) bool {
	if a == nil {
		return false
	}
	av, err := version.NewVersion(a.version)
	return err == nil && av.Core().LessThan(version.Must(version.NewVersion(v)))
}

// serveTxn answers PUT /v1/txn for the KV verbs check-session, lock and
// unlock: every operation applies or none does (409 with the failing
// operation's index, as Consul rolls back). Any other verb is refused
// (400). Transactions came with 0.7.0, and it is the versions that decide:
// an agent addressed (ClientAt) that runs an older one answers 404, as an
// old agent answers a path it does not know, and a leader that does fails
// the call (500, its RPC server has no Txn service). A transaction that
// commits while another server runs a version before 0.7.0 crashes that
// server, as Consul's FSM panics on a Raft entry it does not know: it goes
// down until its next Swap (see TxnCrashed). Callers hold c.mu.
func (c *Cluster) serveTxn(w http.ResponseWriter, r *http.Request, now time.Time) {
	if r.Method != http.MethodPut {
		http.Error(w, "consultest: /v1/txn takes PUT", http.StatusMethodNotAllowed)
		return
	}
	if before(c.agentFor(r), "0.7.0") {
		http.Error(w, "", http.StatusNotFound)
		return
	}
	if l := c.find(c.leader); l == nil {
		http.Error(w, "No cluster leader", http.StatusInternalServerError)
		return
	} else if before(l, "0.7.0") {
		http.Error(w, "rpc error: rpc: can't find service Txn.Apply", http.StatusInternalServerError)
		return
	}
	var ops []struct{ KV *api.KVTxnOp }
	if err := json.NewDecoder(r.Body).Decode(&ops); err != nil {
		http.Error(w, "Failed to parse body: "+err.Error(), http.StatusBadRequest)
		return
	}
	// Each op sees the ones before it: held tracks the keys' lock holders
	// as the transaction would leave them.
	held := map[string]string{}
	holder := func(key string) string {
		if h, ok := held[key]; ok {
			return h
		}
		if e := c.kv[key]; e != nil {
			return e.session
		}
		return ""
	}
	rollback := func(i int, what string) {
		writeJSON(w, http.StatusConflict, api.TxnResponse{Errors: api.TxnErrors{{OpIndex: i, What: what}}})
	}
	for i, op := range ops {
		if op.KV == nil {
			http.Error(w, "consultest: only KV operations are simulated in /v1/txn", http.StatusBadRequest)
			return
		}
		k := op.KV
		switch k.Verb {
		case api.KVCheckSession:
			if holder(k.Key) != k.Session {
				rollback(i, fmt.Sprintf("failed session check for key %q, current session %q != %q", k.Key, holder(k.Key), k.Session))
				return
			}
		case api.KVUnlock:
			if holder(k.Key) != k.Session {
				rollback(i, fmt.Sprintf("failed to unlock key %q: lock not held by session %q", k.Key, k.Session))
				return
			}
			held[k.Key] = ""
		case api.KVLock:
			if _, ok := c.sessions[k.Session]; !ok {
				rollback(i, fmt.Sprintf("failed to lock key %q: invalid session %q", k.Key, k.Session))
				return
			}
			if h := holder(k.Key); h != "" && h != k.Session {
				rollback(i, fmt.Sprintf("failed to lock key %q, lock is already held", k.Key))
				return
			}
			held[k.Key] = k.Session
		default:
			http.Error(w, fmt.Sprintf("consultest: KV verb %q is not simulated in /v1/txn", k.Verb), http.StatusBadRequest)
			return
		}
	}
	for _, n := range c.nodes {
		if n.server() && n.up(now) && before(n, "0.7.0") {
			n.down = true
			c.txnCrashed = append(c.txnCrashed, n.name)
		}
	}
	for _, op := range ops {
		k := op.KV
		switch k.Verb {
		case api.KVUnlock, api.KVLock:
			e := c.put(k.Key, c.kv[k.Key], slices.Clone(k.Value))
			if k.Verb == api.KVLock && e.session != k.Session {
				e.lockIndex++
			}
			e.session = held[k.Key]
		}
	}
	writeJSON(w, http.StatusOK, api.TxnResponse{})
}
