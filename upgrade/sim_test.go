package upgrade

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// simNode is one agent of the simulated cluster.
type simNode struct {
	name, addr, version, dc string
	server                  bool
	voter                   bool
	// down: the agent is not running (failed in serf, unhealthy).
	down bool
	// upAt is when a restarted agent is back (alive, healthy from then on).
	upAt time.Time
	// neverHealthy keeps autopilot reporting the server unhealthy.
	neverHealthy bool
	lastIndex    uint64
}

// sim is an in-process Consul: an http.Handler answering the endpoints the
// upgrade package uses from a small model of a cluster. Time is read with
// time.Now, so inside a synctest bubble it is virtual.
type sim struct {
	mu            sync.Mutex
	nodes         []*simNode
	leader        string // node name, "" during an election
	restartDelay  time.Duration
	stabilization time.Duration
	start         time.Time
	snapshot      []byte
	calls         map[string]int
	transfers     []string
	acls          string
	down          bool // every endpoint answers 500
	sessions      map[string]bool
	sessionSeq    int
	locks         map[string]simLock
}

// newSim returns a healthy cluster of servers s1..sN (s1 leads) and clients
// c1..cM on version v.
func newSim(servers, clients int, v string) *sim {
	s := &sim{leader: "s1", restartDelay: 2 * time.Second, stabilization: 3 * time.Second, start: time.Now(), calls: map[string]int{}, acls: "0"}
	for i := 1; i <= servers; i++ {
		s.nodes = append(s.nodes, &simNode{name: fmt.Sprintf("s%d", i), addr: fmt.Sprintf("10.0.0.%d", i), version: v, dc: "dc1", server: true, voter: true, lastIndex: 100})
	}
	for i := 1; i <= clients; i++ {
		s.nodes = append(s.nodes, &simNode{name: fmt.Sprintf("c%d", i), addr: fmt.Sprintf("10.0.1.%d", i), version: v, dc: "dc1"})
	}
	return s
}

func (s *sim) node(name string) *simNode {
	for _, n := range s.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// up reports whether the node's agent is running and back at time now.
func (n *simNode) up(now time.Time) bool { return !n.down && !now.Before(n.upAt) }

// swap is the transport's hook: the node was restarted on version (ok) or
// failed to come up on it (!ok).
func (s *sim) swap(node, version string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(node)
	if n == nil {
		return
	}
	now := time.Now()
	n.down = !ok
	if ok {
		n.version = version
		n.upAt = now.Add(s.restartDelay)
	}
	if s.leader == node {
		// The leader went away: the lowest-named healthy server wins the
		// election.
		s.leader = ""
		for _, o := range s.nodes {
			if o.server && o.name != node && o.up(now) && !o.neverHealthy {
				s.leader = o.name
				break
			}
		}
	}
}

func (s *sim) version(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node(name).version
}

func (s *sim) leaderName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader
}

func (s *sim) callCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

func (s *sim) healthy(n *simNode, now time.Time) bool {
	return n.up(now) && !n.neverHealthy && (s.leader != "")
}

func (s *sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[r.URL.Path]++
	if s.down {
		http.Error(w, "rpc error: no cluster leader", http.StatusInternalServerError)
		return
	}
	now := time.Now()
	servers := func(yield func(*simNode) bool) {
		for _, n := range s.nodes {
			if n.server && !yield(n) {
				return
			}
		}
	}
	switch r.URL.Path {
	case "/v1/agent/members":
		var out []api.AgentMember
		for _, n := range s.nodes {
			status := serfAlive
			if !n.up(now) {
				status = serfFailed
			}
			tags := map[string]string{"role": "node", "dc": n.dc, "build": n.version + ":deadbeef"}
			if n.server {
				tags = map[string]string{"role": "consul", "dc": n.dc, "port": "8300", "id": "id-" + n.name, "build": n.version + ":deadbeef", "acls": s.acls}
			}
			out = append(out, api.AgentMember{Name: n.name, Addr: n.addr, Port: 8301, Tags: tags, Status: status})
		}
		writeJSON(w, http.StatusOK, out)
	case "/v1/status/leader":
		addr := ""
		if l := s.node(s.leader); l != nil {
			addr = l.addr + ":8300"
		}
		writeJSON(w, http.StatusOK, addr)
	case "/v1/operator/raft/configuration":
		if s.leader == "" {
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
			return
		}
		out := api.RaftConfiguration{Index: 10}
		for n := range servers {
			out.Servers = append(out.Servers, &api.RaftServer{ID: "id-" + n.name, Node: n.name, Address: n.addr + ":8300", Leader: n.name == s.leader, Voter: n.voter, ProtocolVersion: "3"})
		}
		writeJSON(w, http.StatusOK, out)
	case "/v1/operator/autopilot/health":
		out := api.OperatorHealthReply{Healthy: true}
		voters, healthyVoters := 0, 0
		for n := range servers {
			h := s.healthy(n, now)
			sh := api.ServerHealth{ID: "id-" + n.name, Name: n.name, Address: n.addr + ":8300", Version: n.version, Leader: n.name == s.leader, Voter: n.voter, Healthy: h, LastIndex: n.lastIndex, LastContact: api.NewReadableDuration(10 * time.Millisecond)}
			sh.SerfStatus = "alive"
			if !n.up(now) {
				sh.SerfStatus = "failed"
			}
			if h {
				sh.StableSince = s.start
				if n.upAt.After(s.start) {
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
			code = http.StatusTooManyRequests
		}
		writeJSON(w, code, out)
	case "/v1/operator/autopilot/configuration":
		c := api.NewAutopilotConfiguration()
		c.ServerStabilizationTime = api.NewReadableDuration(s.stabilization)
		writeJSON(w, http.StatusOK, c)
	case "/v1/agent/self":
		writeJSON(w, http.StatusOK, map[string]map[string]any{"Config": {"Datacenter": "dc1", "PrimaryDatacenter": "dc1", "NodeName": "s1"}})
	case "/v1/catalog/datacenters":
		writeJSON(w, http.StatusOK, []string{"dc1"})
	case "/v1/snapshot":
		if s.snapshot == nil {
			http.Error(w, "snapshot not configured in the simulation", http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Consul-Index", "1234")
		w.WriteHeader(http.StatusOK)
		w.Write(s.snapshot)
	case "/v1/operator/raft/transfer-leader":
		id := r.URL.Query().Get("id")
		s.transfers = append(s.transfers, id)
		for n := range servers {
			if "id-"+n.name == id && n.voter && s.healthy(n, now) {
				s.leader = n.name
				writeJSON(w, http.StatusOK, api.TransferLeaderResponse{Success: true})
				return
			}
		}
		writeJSON(w, http.StatusOK, api.TransferLeaderResponse{Success: false})
	default:
		if s.serveLock(w, r) {
			return
		}
		http.Error(w, "not simulated: "+r.URL.Path, http.StatusNotFound)
	}
}

// serveLock answers the session and KV calls of the upgrade lock: sessions
// (create, renew, destroy) and one lock key per path (acquire, release, get).
func (s *sim) serveLock(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	switch {
	case p == "/v1/session/create":
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		if checks, ok := body["Checks"].([]any); !ok || len(checks) != 0 {
			http.Error(w, "sim: the lock session must be created with an empty Checks list", http.StatusBadRequest)
			return true
		}
		s.sessionSeq++
		id := fmt.Sprintf("session-%d", s.sessionSeq)
		if s.sessions == nil {
			s.sessions = map[string]bool{}
		}
		s.sessions[id] = true
		writeJSON(w, http.StatusOK, map[string]string{"ID": id})
	case strings.HasPrefix(p, "/v1/session/renew/"):
		id := strings.TrimPrefix(p, "/v1/session/renew/")
		if !s.sessions[id] {
			http.Error(w, "session not found", http.StatusNotFound)
			return true
		}
		writeJSON(w, http.StatusOK, []map[string]string{{"ID": id}})
	case strings.HasPrefix(p, "/v1/session/destroy/"):
		id := strings.TrimPrefix(p, "/v1/session/destroy/")
		delete(s.sessions, id)
		for k, l := range s.locks { // behavior "delete": the keys it held go with it
			if l.session == id {
				delete(s.locks, k)
			}
		}
		writeJSON(w, http.StatusOK, true)
	case strings.HasPrefix(p, "/v1/kv/"):
		key := strings.TrimPrefix(p, "/v1/kv/")
		if s.locks == nil {
			s.locks = map[string]simLock{}
		}
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodPut && q.Has("acquire"):
			held, ok := s.locks[key]
			if ok && held.session != q.Get("acquire") && s.sessions[held.session] {
				writeJSON(w, http.StatusOK, false)
				return true
			}
			b, _ := io.ReadAll(r.Body)
			s.locks[key] = simLock{session: q.Get("acquire"), value: b}
			writeJSON(w, http.StatusOK, true)
		case r.Method == http.MethodPut && q.Has("release"):
			if held, ok := s.locks[key]; ok && held.session == q.Get("release") {
				delete(s.locks, key)
			}
			writeJSON(w, http.StatusOK, true)
		case r.Method == http.MethodGet:
			held, ok := s.locks[key]
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				return true
			}
			writeJSON(w, http.StatusOK, []map[string]any{{"Key": key, "Value": held.value, "Session": held.session}})
		default:
			return false
		}
	default:
		return false
	}
	return true
}

type simLock struct {
	session string
	value   []byte
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// sortedNames returns the names of the sim's servers, sorted.
func (s *sim) serverNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, n := range s.nodes {
		if n.server {
			out = append(out, n.name)
		}
	}
	sort.Strings(out)
	return out
}
