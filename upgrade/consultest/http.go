package consultest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Serf member status codes, as /v1/agent/members reports them.
const (
	serfAlive  = 1
	serfFailed = 4
)

// ServeHTTP implements http.Handler. It answers:
//
//   - GET /v1/agent/members: every node, alive or failed, with the role,
//     dc, port, id, build and acls tags Consul sets
//   - GET /v1/agent/self: the agent addressed (ClientAt; else the first
//     server), its datacenter, its configuration in the shape of its
//     version (see Features) and, for a server from 0.7 on, its raft stats
//   - GET /v1/agent/metrics: the leader's raft gauges (SetLeaderLogAge)
//   - GET /v1/catalog/services: no services, with the headers of a stale
//     read the agent addressed answers itself (X-Consul-Index its last
//     index, X-Consul-LastContact, X-Consul-KnownLeader)
//   - GET /v1/status/peers: the voters' Raft addresses
//   - GET /v1/acl/list: the legacy ACL tokens (401 while ACLs are off)
//   - GET /v1/kv/<prefix>?recurse: every key under prefix
//   - GET /v1/catalog/datacenters
//   - GET /v1/status/leader: the leader's Raft address, "" during an election
//   - GET /v1/operator/raft/configuration (500 without a leader)
//   - GET /v1/operator/autopilot/health: 200 when every server is healthy,
//     429 otherwise, with the same body
//   - GET and PUT /v1/operator/autopilot/configuration, with ?cas= (see
//     SetAutopilotConfig, AutopilotWrites)
//   - GET /v1/snapshot: the configured archive
//   - POST /v1/operator/raft/transfer-leader?id=: moves leadership to a
//     healthy voter
//   - sessions (create, renew, destroy, info) and KV keys (get, put,
//     acquire, release, delete)
//   - PUT /v1/txn with the KV verbs check-session, lock and unlock, from
//     0.7.0 on the agent addressed and the leader
//   - GET /v1/acl/replication, /v1/acl/tokens, /v1/connect/intentions,
//     /v1/config/<kind> and /v1/catalog/nodes, from WithFeatures
//
// Any other path answers 404, and so does every endpoint the cluster's era
// (WithEra) does not have; every path answers 500 while SetDown(true).
func (c *Cluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[r.URL.Path]++
	if c.down {
		http.Error(w, "rpc error making call: No cluster leader", http.StatusInternalServerError)
		return
	}
	now := time.Now()
	c.expireSessions(now)
	c.elect(now, "")
	if !c.era.has(r.URL.Path) {
		notInEra(w, c.era, r.URL.Path)
		return
	}
	switch r.URL.Path {
	case "/v1/txn":
		c.serveTxn(w, r, now)
	case "/v1/agent/members":
		c.serveMembers(w, now)
	case "/v1/agent/self":
		c.serveSelf(w, c.agentFor(r))
	case "/v1/agent/metrics":
		c.serveMetrics(w, c.agentFor(r)) // metrics.go
	case "/v1/status/peers":
		c.servePeers(w)
	case "/v1/acl/list":
		c.serveACLList(w)
	case "/v1/catalog/services":
		c.serveStaleServices(w, c.agentFor(r))
	case "/v1/catalog/datacenters":
		writeJSON(w, http.StatusOK, c.datacenters())
	case "/v1/status/leader":
		addr := ""
		if l := c.find(c.leader); l != nil {
			addr = l.addr + ":8300"
		}
		writeJSON(w, http.StatusOK, addr)
	case "/v1/operator/raft/configuration":
		if c.leader == "" {
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
			return
		}
		out := api.RaftConfiguration{Index: 10}
		for _, n := range c.nodes {
			if n.server() {
				rs := &api.RaftServer{ID: c.raftIDIn(n), Node: n.name, Address: n.raftAddr(),
					Leader: n.name == c.leader, Voter: n.voter, ProtocolVersion: "3"}
				switch c.era {
				case Era07:
					rs.ProtocolVersion = "" // 0.7 reports none
				case Era08Raft2:
					rs.ProtocolVersion = "2"
				}
				out.Servers = append(out.Servers, rs)
			}
		}
		writeJSON(w, http.StatusOK, out)
	case "/v1/operator/autopilot/health":
		if c.era == Era08Raft2 || c.raftProtocol() < 3 {
			http.Error(w, "all servers must have raft_protocol set to 3 or higher to use this endpoint", http.StatusInternalServerError)
			return
		}
		c.serveHealth(w, now)
	case "/v1/operator/autopilot/configuration":
		c.serveAutopilotConfig(w, r) // autopilot.go
	case "/v1/snapshot":
		if r.Method != http.MethodGet {
			http.Error(w, "consultest: restoring a snapshot is not simulated", http.StatusMethodNotAllowed)
			return
		}
		if c.snapshot == nil {
			http.Error(w, "consultest: the cluster was built WithSnapshot(nil), so /v1/snapshot fails", http.StatusInternalServerError)
			return
		}
		index := uint64(0)
		if l := c.find(c.leader); l != nil {
			index = l.lastIndex
		}
		w.Header().Set("X-Consul-Index", strconv.FormatUint(index, 10))
		w.Header().Set("Content-Type", "application/x-gzip")
		w.WriteHeader(http.StatusOK)
		w.Write(c.snapshot)
	case "/v1/operator/raft/transfer-leader":
		id := r.URL.Query().Get("id")
		c.transfers = append(c.transfers, id)
		if len(c.transferMiss) > 0 {
			miss := c.transferMiss[0]
			c.transferMiss = c.transferMiss[1:]
			switch {
			case miss.lostFor > 0 && c.leader != "":
				c.reelect, c.reelectAt = c.leader, now.Add(miss.lostFor)
				c.leader, c.pinned = "", true
			case miss.land != "":
				c.leader, c.pinned = miss.land, false
				c.term++
			}
			writeJSON(w, http.StatusOK, api.TransferLeaderResponse{Success: true})
			return
		}
		for _, n := range c.nodes {
			if n.server() && n.raftID() == id && n.voter && c.healthy(n, now) {
				c.leader, c.pinned = n.name, false
				c.term++ // the transfer's election
				writeJSON(w, http.StatusOK, api.TransferLeaderResponse{Success: true})
				return
			}
		}
		writeJSON(w, http.StatusOK, api.TransferLeaderResponse{Success: false})
	default:
		if strings.HasPrefix(r.URL.Path, "/v1/session/") {
			c.serveSession(w, r, now)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") && r.Method == http.MethodGet && r.URL.Query().Has("recurse") {
			c.serveKVRecurse(w, strings.TrimPrefix(r.URL.Path, "/v1/kv/"))
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			c.serveKV(w, r)
			return
		}
		if c.serveFeature(w, r) { // features.go
			return
		}
		http.Error(w, "consultest: "+r.URL.Path+" is not simulated", http.StatusNotFound)
	}
}

// agent is the node the HTTP API is served by: the first server (or the
// first node). Callers hold c.mu.
func (c *Cluster) agent() *node {
	for _, n := range c.nodes {
		if n.server() {
			return n
		}
	}
	if len(c.nodes) > 0 {
		return c.nodes[0]
	}
	return nil
}

// datacenters is what the catalog lists: the cluster's datacenter, its
// primary and the peers, sorted, each once. Callers hold c.mu.
func (c *Cluster) datacenters() []string {
	out := append([]string{c.dc, c.primary}, c.peers...)
	slices.Sort(out)
	return slices.Compact(out)
}

func (c *Cluster) serveMembers(w http.ResponseWriter, now time.Time) {
	out := []api.AgentMember{}
	for _, n := range c.nodes {
		status := serfAlive
		if !n.up(now) {
			status = serfFailed
		}
		out = append(out, api.AgentMember{Name: n.name, Addr: n.addr, Port: 8301, Tags: c.tags(n), Status: status})
	}
	out = append(out, c.leftMembers()...) // dead.go
	writeJSON(w, http.StatusOK, out)
}

func (c *Cluster) serveHealth(w http.ResponseWriter, now time.Time) {
	out := api.OperatorHealthReply{Healthy: true, Servers: []api.ServerHealth{}}
	voters, healthyVoters := 0, 0
	for _, n := range c.nodes {
		if !n.server() {
			continue
		}
		h := c.healthy(n, now)
		sh := api.ServerHealth{ID: n.raftID(), Name: n.name, Address: n.addr + ":8300", SerfStatus: "alive", Version: n.version,
			Leader: n.name == c.leader, Voter: n.voter, Healthy: h, LastIndex: n.lastIndex,
			LastContact: api.NewReadableDuration(10 * time.Millisecond)}
		if !n.up(now) {
			sh.SerfStatus = "failed"
		}
		if h {
			sh.StableSince = c.stableSince
			if n.upAt.After(c.stableSince) {
				sh.StableSince = n.upAt
			}
		}
		if n.voter {
			voters++
			if h {
				healthyVoters++
			}
		}
		out.Healthy = out.Healthy && h
		out.Servers = append(out.Servers, sh)
	}
	out.FailureTolerance = max(0, healthyVoters-(voters/2+1))
	code := http.StatusOK
	if !out.Healthy {
		code = http.StatusTooManyRequests // Consul's answer while unhealthy
	}
	writeJSON(w, code, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
