package consultest

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Era is the generation of Consul's HTTP API the simulated agents answer
// with (see WithEra). The versions the nodes run are whatever NewCluster and
// Swap say; the era decides which endpoints exist and what the serf tags
// hold.
type Era int

const (
	// EraCurrent is a 1.x agent: raft configuration, autopilot (every
	// server on raft protocol 3), snapshots, leadership transfer, the acls
	// serf tag. The default.
	EraCurrent Era = iota
	// Era04 is a 0.4/0.5 agent: no raft configuration, no autopilot, no
	// snapshot API (404); the peer set from /v1/status/peers, the raft state
	// in /v1/agent/self stats; serf tags role, dc, vsn, vsn_min, vsn_max,
	// build, port (no id, raft_vsn or acls); ACLs show as acl_datacenter in
	// the agent's configuration.
	Era04
	// Era06 is a 0.6 agent: as Era04 for everything an upgrade asks (serf
	// protocol 3 in the vsn tags).
	Era06
	// Era07 is a 0.7 agent (0.7.1 or later): the raft configuration (IDs are
	// addresses) and the snapshot API exist; autopilot does not (404).
	Era07
	// Era08Raft2 is a 0.8/0.9 agent on its default raft protocol 2: the id
	// and raft_vsn=2 serf tags, the autopilot configuration, and an
	// autopilot health endpoint that answers 500 "all servers must have
	// raft_protocol set to 3 or higher to use this endpoint".
	Era08Raft2
)

func (e Era) String() string {
	switch e {
	case Era04:
		return "0.4/0.5"
	case Era06:
		return "0.6"
	case Era07:
		return "0.7"
	case Era08Raft2:
		return "0.8 (raft protocol 2)"
	}
	return "current"
}

// WithEra makes the simulated agents answer as agents of era e would (see
// Era). Unknown values count as EraCurrent.
func WithEra(e Era) Option {
	return func(c *Cluster) { c.era = e }
}

// SetEra makes the agents answer as those of era e from now on, as the
// whole cluster does once its last agent of the older era is swapped: a
// test of one run across eras (0.6.4 -> 0.7.5 -> 0.9.3) sets the era of
// each hop as the run reaches it. Transactions and the sessions of the
// upgrade lock follow each agent's own version whatever the era (see
// ServeHTTP).
func (c *Cluster) SetEra(e Era) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.era = e
}

// has reports whether the era has the endpoint at path; an endpoint it does
// not have answers 404, as an old agent answers an unknown path.
func (e Era) has(path string) bool {
	switch path {
	case "/v1/operator/raft/configuration", "/v1/snapshot":
		return e == EraCurrent || e >= Era07
	case "/v1/operator/autopilot/health", "/v1/operator/autopilot/configuration":
		return e == EraCurrent || e >= Era08Raft2
	case "/v1/operator/raft/transfer-leader":
		return e == EraCurrent
	}
	return true
}

// legacyIDs: before raft protocol 3, a server's Raft ID is its address.
func (e Era) legacyIDs() bool { return e != EraCurrent }

// tags are the serf tags of n in era e.
func (c *Cluster) tags(n *node) map[string]string {
	build := n.version + ":deadbeef"
	vsn := map[Era][3]string{Era04: {"2", "1", "2"}, Era06: {"2", "1", "3"}, Era07: {"2", "1", "3"}, Era08Raft2: {"2", "2", "3"}}
	if c.era == EraCurrent {
		if n.server() {
			t := map[string]string{"role": "consul", "dc": c.dc, "port": "8300", "id": n.raftID(), "build": build, "acls": string(c.acls)}
			c.addFeatureTags(n, t) // features.go: raft_vsn, gRPC ports
			return t
		}
		return map[string]string{"role": "node", "dc": c.dc, "build": build}
	}
	v := vsn[c.era]
	t := map[string]string{"role": "node", "dc": c.dc, "vsn": v[0], "vsn_min": v[1], "vsn_max": v[2], "build": build}
	if n.server() {
		t["role"], t["port"] = "consul", "8300"
		if c.era == Era08Raft2 {
			t["id"], t["raft_vsn"] = n.raftID(), "2"
		}
	}
	return t
}

// raftAddr is a server's Raft address.
func (n *node) raftAddr() string { return n.addr + ":8300" }

// raftIDIn is n's Raft ID as the era reports it.
func (c *Cluster) raftIDIn(n *node) string {
	if c.era.legacyIDs() {
		return n.raftAddr()
	}
	return n.raftID()
}

// agentFor is the agent a request is addressed to: the node whose address
// is the request's host (see ClientAt), else the agent the cluster's
// clients talk to. Callers hold c.mu.
func (c *Cluster) agentFor(r *http.Request) *node {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, n := range c.nodes {
		if n.addr == host {
			return n
		}
	}
	return c.agent()
}

// downAgent reports whether a request is addressed to a node's own address
// while that node's agent is not running. Callers hold c.mu.
func (c *Cluster) downAgent(r *http.Request, now time.Time) bool {
	host := r.URL.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, n := range c.nodes {
		if n.addr == host {
			return !n.up(now)
		}
	}
	return false
}

// ClientAt returns a consul/api client for the agent at addr ("10.0.0.2"
// or "10.0.0.2:8500"): its requests reach the cluster in-process like
// Client's, /v1/agent/self answers as the node with that address, and
// while that node's agent is down every request is refused. Gates that read
// each server's own raft stats reach the servers through it.
func (c *Cluster) ClientAt(addr string) (*api.Client, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "8500")
	}
	return api.NewClient(&api.Config{Address: addr, Scheme: "http", HttpClient: &http.Client{Transport: c.RoundTripper()}})
}

// serveSelf answers /v1/agent/self as agent a: its configuration in the
// shape of its version (selfDocumentOf), its serf member and, from 0.7 on,
// its stats (raft stats on a server). Callers hold c.mu.
func (c *Cluster) serveSelf(w http.ResponseWriter, a *node) {
	doc := c.selfDocumentOf(a)
	self := map[string]any{}
	for k, v := range doc {
		self[k] = v
	}
	if a == nil {
		writeJSON(w, http.StatusOK, self)
		return
	}
	self["Member"] = api.AgentMember{Name: a.name, Addr: a.addr, Port: 8301, Tags: c.tags(a), Status: serfAlive}
	if c.era == Era04 || c.era == Era06 {
		writeJSON(w, http.StatusOK, self) // no Stats before 0.7
		return
	}
	stats := map[string]map[string]string{"consul": {"server": strconv.FormatBool(a.server()), "known_datacenters": "1"}}
	if a.server() {
		voters := 0
		for _, n := range c.nodes {
			if n.server() && n.voter {
				voters++
			}
		}
		last, never, _ := c.contact(a)
		state, contact := "Follower", last.String()
		switch {
		case c.leader == a.name:
			state, contact = "Leader", "0"
		case c.leader == "":
			state = "Candidate"
		case never:
			contact = "never"
		}
		idx := strconv.FormatUint(a.lastIndex, 10)
		stats["raft"] = map[string]string{"state": state, "commit_index": idx, "last_log_index": idx, "applied_index": idx,
			"last_contact": contact, "num_peers": strconv.Itoa(max(0, voters-1)), "term": strconv.FormatUint(c.raftTerm(), 10)}
		stats["consul"]["leader"] = strconv.FormatBool(c.leader == a.name)
	}
	self["Stats"] = stats
	writeJSON(w, http.StatusOK, self)
}

// contact is what server a says of its contact with the leader: the last
// contact ("0" on the leader, "never" for a server that came back unhealthy)
// and whether it knows a leader. Callers hold c.mu.
func (c *Cluster) contact(a *node) (lastContact time.Duration, never, knownLeader bool) {
	switch {
	case c.leader == a.name:
		return 0, false, true
	case c.leader == "":
		return 3 * time.Second, false, false
	case a.neverHealthy || a.sick:
		return time.Hour, true, true
	}
	return 10 * time.Millisecond, false, true
}

// serveStaleServices answers GET /v1/catalog/services as agent a answers a
// stale read itself: X-Consul-Index is its last index, X-Consul-LastContact
// and X-Consul-KnownLeader its contact with the leader. Callers hold c.mu.
func (c *Cluster) serveStaleServices(w http.ResponseWriter, a *node) {
	var index uint64
	known, last := c.leader != "", time.Duration(0)
	if a != nil && a.server() {
		index = a.lastIndex
		last, _, known = c.contact(a)
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(index, 10))
	w.Header().Set("X-Consul-LastContact", strconv.FormatInt(last.Milliseconds(), 10))
	w.Header().Set("X-Consul-KnownLeader", strconv.FormatBool(known))
	writeJSON(w, http.StatusOK, map[string][]string{"consul": {}})
}

// servePeers answers /v1/status/peers: the voters' Raft addresses. Callers
// hold c.mu.
func (c *Cluster) servePeers(w http.ResponseWriter) {
	out := []string{}
	for _, n := range c.nodes {
		if n.server() && n.voter {
			out = append(out, n.raftAddr())
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// serveACLList answers the legacy /v1/acl/list: the anonymous token and the
// master token while ACLs are on. Callers hold c.mu.
func (c *Cluster) serveACLList(w http.ResponseWriter) {
	if c.acls == ACLsDisabled {
		http.Error(w, "ACL support disabled", http.StatusUnauthorized)
		return
	}
	writeJSON(w, http.StatusOK, []api.ACLEntry{
		{ID: "anonymous", Name: "Anonymous Token", Type: "client", CreateIndex: 1, ModifyIndex: 1},
		{ID: "simulated-master-token", Name: "Master Token", Type: "management", CreateIndex: 2, ModifyIndex: 2},
	})
}

// serveKVRecurse answers GET /v1/kv/<prefix>?recurse: every key under
// prefix, sorted, or 404 when there is none. Callers hold c.mu.
func (c *Cluster) serveKVRecurse(w http.ResponseWriter, prefix string) {
	var keys []string
	for k := range c.kv {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		w.Header().Set("X-Consul-Index", strconv.FormatUint(c.kvIndex, 10))
		w.WriteHeader(http.StatusNotFound)
		return
	}
	slices.Sort(keys)
	out := make([]*api.KVPair, 0, len(keys))
	for _, k := range keys {
		e := c.kv[k]
		out = append(out, &api.KVPair{Key: k, Value: e.value, Session: e.session, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex, LockIndex: e.lockIndex})
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(c.kvIndex, 10))
	writeJSON(w, http.StatusOK, out)
}

// notInEra answers 404 for an endpoint the era does not have.
func notInEra(w http.ResponseWriter, e Era, path string) {
	http.Error(w, fmt.Sprintf("consultest: %s is not in the %s API", path, e), http.StatusNotFound)
}
