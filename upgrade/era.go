package upgrade

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-version"
)

// Era is the generation of Consul's HTTP API a cluster answers with. It
// decides how Discover, MeasureBaseline and the gates observe the cluster:
//
//	era            Raft peer set                    server health              backup
//	pre-0.7        /v1/status/peers                 each server's stale read   logical (KV, ACLs)
//	0.7            /v1/operator/raft/configuration  each server's agent/self   snapshot from 0.7.1
//	0.8-raft2      /v1/operator/raft/configuration  each server's agent/self   snapshot
//	autopilot      /v1/operator/raft/configuration  /v1/operator/autopilot     snapshot
//
// The era of a cluster is that of its oldest server (an operator endpoint is
// forwarded to the leader, which may be the old one), lowered further when
// the agent asked does not have an endpoint (a client left behind on an old
// version). GateError.Era and Event.Era name the era a gate applied;
// Baseline.Era the one the baseline was measured in.
type Era string

const (
	// EraPeers: before 0.7. No Raft configuration endpoint, no autopilot,
	// no snapshot API, and no raft stats in /v1/agent/self (they came with
	// 0.7). The peer set comes from /v1/status/peers; each server's progress
	// and contact with the leader from the headers of a stale read it
	// answers itself (X-Consul-Index, X-Consul-LastContact,
	// X-Consul-KnownLeader).
	EraPeers Era = "pre-0.7"
	// EraRaftConfig: 0.7. The Raft configuration endpoint exists, autopilot
	// does not.
	EraRaftConfig Era = "0.7"
	// EraRaftProtocol2: 0.8 or later with a server on raft protocol 2
	// (the default of 0.8 and 0.9): autopilot exists, but its health
	// endpoint refuses to answer until every server runs raft protocol 3.
	EraRaftProtocol2 Era = "0.8-raft2"
	// EraAutopilot: 0.8 or later with every server on raft protocol 3 or
	// later: autopilot health and configuration answer.
	EraAutopilot Era = "autopilot"
)

// RaftConfig reports whether the era has /v1/operator/raft/configuration.
func (e Era) RaftConfig() bool { return e != EraPeers }

// Autopilot reports whether the era's autopilot health endpoint answers.
func (e Era) Autopilot() bool { return e == EraAutopilot }

// Checks says, in words, how the era's gate checks a server.
func (e Era) Checks() string {
	switch e {
	case EraPeers:
		return "pre-0.7 checks: peers from /v1/status/peers, catalog index and last contact from a stale read each server answers itself"
	case EraRaftConfig:
		return "0.7 checks: peers from the raft configuration, raft stats from each server's /v1/agent/self (no autopilot)"
	case EraRaftProtocol2:
		return "0.8-raft2 checks: peers from the raft configuration, raft stats from each server's /v1/agent/self (autopilot health needs raft protocol 3 on every server)"
	}
	return "autopilot checks: raft configuration and /v1/operator/autopilot/health"
}

var (
	v07 = version.Must(version.NewVersion("0.7.0"))
	v08 = version.Must(version.NewVersion("0.8.0"))
)

// eraOfMembers is the era the servers' serf tags imply: that of the oldest
// server that has not left (its build tag), and EraRaftProtocol2 from 0.8
// on while any server's raft_vsn tag is below 3. A server whose build tag
// does not parse is not counted; with no server to go by, the era is
// EraAutopilot and the gates and Discover lower it when an endpoint turns out to
// be missing.
func eraOfMembers(members []*api.AgentMember) Era {
	var low *version.Version
	raft2 := false
	for _, m := range members {
		if m == nil || m.Status == serfLeft || m.Tags["role"] != "consul" {
			continue
		}
		if v, err := version.NewVersion(buildVersion(m.Tags["build"])); err == nil {
			v = v.Core() // 0.7.0-rc1 has 0.7's API
			if low == nil || v.LessThan(low) {
				low = v
			}
		}
		// Consul 0.8 and later always set raft_vsn; a server without it is
		// older, and its build tag says so.
		if rv, ok := m.Tags["raft_vsn"]; ok {
			if n, err := strconv.Atoi(rv); err != nil || n < 3 {
				raft2 = true
			}
		}
	}
	switch {
	case low == nil:
		return EraAutopilot
	case low.LessThan(v07):
		return EraPeers
	case low.LessThan(v08):
		return EraRaftConfig
	case raft2:
		return EraRaftProtocol2
	}
	return EraAutopilot
}

// ErrEndpointMissing is wrapped by every *MissingEndpointError.
var ErrEndpointMissing = errors.New("endpoint missing from this consul version")

// MissingEndpointError reports an HTTP endpoint the agent does not have: it
// answered 404 for its path, as a Consul older than the endpoint does. It is
// not an outage and is never retried as one: Discover and the gates fall back to
// the older era's means when they can, and otherwise stop with it.
type MissingEndpointError struct {
	// Path is the endpoint ("/v1/operator/raft/configuration").
	Path string
	// Versions are the Consul versions that have it ("0.7.0 and later").
	Versions string
}

func (e *MissingEndpointError) Error() string {
	return fmt.Sprintf("%s answered 404: the agent's Consul version does not have this endpoint (only %s have it)", e.Path, e.Versions)
}

func (e *MissingEndpointError) Unwrap() error { return ErrEndpointMissing }

// raftStats is a server's Raft state as its /v1/agent/self reports it in
// Stats.raft (0.7 and later; the values are strings there), or as a stale
// read's headers tell it before 0.7 (Stale).
type raftStats struct {
	State        string `json:"state"` // "Leader", "Follower", "Candidate"
	CommitIndex  uint64 `json:"commit_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	// LastContact is the time since the server last heard from the leader;
	// 0 on the leader; Never when it never did.
	LastContact time.Duration `json:"last_contact,omitempty"`
	Never       bool          `json:"never,omitempty"`
	NumPeers    int           `json:"num_peers,omitempty"`
	Term        uint64        `json:"term,omitempty"`   // the raft term (0: not reported)
	Leader      bool          `json:"leader,omitempty"` // Stats.consul.leader
	Node        string        `json:"node,omitempty"`
	// Stale: read from a stale read's headers (before 0.7), not raft
	// stats: CommitIndex and LastLogIndex are then the server's catalog
	// index, an approximation of how far it has applied the log.
	Stale bool `json:"stale,omitempty"`
}

// statsFromStale builds a server's raft state from a stale read it
// answered (Consul before 0.7, whose /v1/agent/self has no stats); leader
// says whether it is the leader /v1/status/leader names.
func statsFromStale(node string, ss StaleState, leader bool) raftStats {
	rs := raftStats{Node: node, Stale: true, CommitIndex: ss.Index, LastLogIndex: ss.Index, LastContact: ss.LastContact, Leader: leader}
	switch {
	case leader:
		rs.State, rs.LastContact = "Leader", 0
	case !ss.KnownLeader:
		rs.State, rs.Never = "Candidate", true
	default:
		rs.State = "Follower"
	}
	return rs
}

// ErrNoRaftStats is wrapped when an agent's /v1/agent/self has no raft
// stats: it is a client agent, not a server.
var ErrNoRaftStats = errors.New("no raft stats in /v1/agent/self")

// parseRaftStats reads the raft stats of an /v1/agent/self document.
func parseRaftStats(self map[string]map[string]any) (raftStats, error) {
	var rs raftStats
	rs.Node = selfString(self, "NodeName")
	raft, _ := self["Stats"]["raft"].(map[string]any)
	if raft == nil {
		return rs, fmt.Errorf("agent %s: %w (a client agent has none; ask a server)", orUnknown(rs.Node), ErrNoRaftStats)
	}
	str := func(k string) string { s, _ := raft[k].(string); return s }
	num := func(k string) (uint64, error) {
		n, err := strconv.ParseUint(str(k), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("agent %s: raft stat %s = %q is not a number", orUnknown(rs.Node), k, str(k))
		}
		return n, nil
	}
	var err error
	rs.State = str("state")
	if rs.CommitIndex, err = num("commit_index"); err != nil {
		return rs, err
	}
	if rs.LastLogIndex, err = num("last_log_index"); err != nil {
		return rs, err
	}
	if n, err := strconv.Atoi(str("num_peers")); err == nil {
		rs.NumPeers = n
	}
	if n, err := strconv.ParseUint(str("term"), 10, 64); err == nil {
		rs.Term = n
	}
	switch lc := str("last_contact"); lc {
	case "never":
		rs.Never = true
	case "0", "":
		rs.LastContact = 0
	default:
		d, err := time.ParseDuration(lc)
		if err != nil {
			return rs, fmt.Errorf("agent %s: raft stat last_contact = %q is not a duration", orUnknown(rs.Node), lc)
		}
		rs.LastContact = d
	}
	if c, ok := self["Stats"]["consul"].(map[string]any); ok {
		rs.Leader = c["leader"] == "true"
	}
	if strings.EqualFold(rs.State, "leader") {
		rs.Leader = true
	}
	return rs, nil
}
