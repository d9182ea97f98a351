package planner

import (
	"fmt"
	"strings"
)

// Hop is one stretch of an upgrade path: every server (and, unless left
// behind, every client) reaches To before any server starts the next hop.
type Hop struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Rule is the ID of the rule that put this stepping stone here ("" for
	// the final hop to the target).
	Rule RuleID `json:"rule,omitempty"`
	// Reason says why the path stops here.
	Reason string `json:"reason,omitempty"`
	// Datacenters is the order in which the datacenters take this hop
	// (DatacenterOrder: each one's servers, then its clients). Plan fills
	// it for clusters with several datacenters; Path leaves it empty.
	Datacenters []string `json:"datacenters,omitempty"`
}

// StepKind is what a step does.
type StepKind string

const (
	// StepSnapshot saves and verifies a snapshot before a hop's first server
	// swap, in every datacenter; its Nodes are the datacenters' leaders, which
	// serve the snapshots.
	StepSnapshot StepKind = "snapshot"
	// StepSwapServer swaps one server to a new version.
	StepSwapServer StepKind = "swap-server"
	// StepTransferLeader moves leadership to an upgraded server (>= 1.15 on
	// both sides) so the old leader can be swapped as a follower.
	StepTransferLeader StepKind = "transfer-leader"
	// StepAddServer provisions a new server on To in Datacenter (replace
	// strategy). Node is "": the transport names the new host.
	StepAddServer StepKind = "add-server"
	// StepRetireServer gracefully removes the old server Node, on From,
	// from the cluster and retires its host (replace strategy).
	StepRetireServer StepKind = "retire-server"
	// StepSwapClients swaps one wave of clients.
	StepSwapClients StepKind = "swap-clients"
	// StepDone: nothing is left to do.
	StepDone StepKind = "done"
)

// GateCheck is one condition that must hold after a step before the next.
type GateCheck string

const (
	GateLeaderKnown      GateCheck = "leader-known"      // a leader is known
	GateVersion          GateCheck = "version"           // the node reports the new version
	GateVoter            GateCheck = "voter"             // the server is a Raft voter
	GateAutopilotHealthy GateCheck = "autopilot-healthy" // autopilot says the server is healthy
	GateStable           GateCheck = "stable"            // healthy for at least ServerStabilizationTime
	GateTrailingLogs     GateCheck = "trailing-logs"     // at most MaxTrailingLogs behind the leader
	GateFailureTolerance GateCheck = "failure-tolerance" // FailureTolerance back to its value before the run
	GateSerfAlive        GateCheck = "serf-alive"        // the agent is alive in serf
	GateRemoved          GateCheck = "removed"           // the server is no longer in the raft configuration
	// Before autopilot (and on 0.8/0.9 with raft protocol 2) Consul's own
	// upgrade guide checks each server's raft stats from /v1/agent/self:
	GateCommitIndex GateCheck = "commit-index" // commit_index within MaxTrailingLogs of the leader's
	GateLastContact GateCheck = "last-contact" // last_contact with the leader within LastContactThreshold
	// The upgrade package adds this one to the gate of every server step
	// (plans do not list it, so plans saved before it stay valid):
	GateRaftTerm GateCheck = "raft-term" // the Raft term rose by no more elections than the step explains
)

// BackupKind is how a snapshot step saves the cluster's state.
type BackupKind string

const (
	// BackupSnapshot is Consul's snapshot API (/v1/snapshot, 0.7.1 and
	// later): the whole Raft state, restorable with "consul snapshot
	// restore".
	BackupSnapshot BackupKind = "snapshot"
	// BackupLogical is a verified export through the HTTP API, for servers
	// below 0.7.1, which have no snapshot API: the KV tree and (with ACLs
	// on) the ACL tokens. It cannot restore what LogicalBackupOmits lists.
	BackupLogical BackupKind = "logical"
)

// LogicalBackupOmits is what a logical backup does not hold, so cannot
// restore.
const LogicalBackupOmits = "sessions and locks, catalog registrations (nodes, services, checks; agents re-register their own), prepared queries, events, and the raft state itself (log, index, peer set)"

// Deadline is a time bound that a stretch of steps must meet, from the
// start of the first step it names to the end of the last.
type Deadline struct {
	Rule    RuleID `json:"rule"`
	Seconds int    `json:"seconds"`
	// First and Last are the plan indexes of the first and last step the
	// deadline covers (filled in by Plan; Next sets both to -1).
	First  int    `json:"first"`
	Last   int    `json:"last"`
	Reason string `json:"reason"`
}

// Step is one thing to do, chosen from the observed cluster.
type Step struct {
	Kind StepKind `json:"kind"`
	// Node is the server to swap, or the server that leads (for
	// transfer-leader).
	Node string `json:"node,omitempty"`
	// Nodes are the clients of a wave, or the leaders serving a snapshot.
	Nodes []string `json:"nodes,omitempty"`
	// Target is the server that receives leadership (transfer-leader).
	Target     string `json:"target,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	// From and To are versions; From is "" for a wave of mixed versions.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Hop is the index of the hop in the path.
	Hop int `json:"hop"`
	// Wave numbers the client waves of a datacenter and hop (0 = canary).
	Wave     int      `json:"wave,omitempty"`
	StopMode StopMode `json:"stop_mode,omitempty"`
	// Gate lists what must hold after the step, in order.
	Gate []GateCheck `json:"gate,omitempty"`
	// Reason says why this step is next.
	Reason string `json:"reason"`
	// Deadline is set when the step belongs to a stretch with a time bound.
	Deadline *Deadline `json:"deadline,omitempty"`
	// Backup is how a snapshot step saves the state: the snapshot API from
	// 0.7.1, a logical backup before it ("" for other steps).
	Backup BackupKind `json:"backup,omitempty"`
	// NoReturn names the rule after which a binary downgrade of this node
	// is unsafe ("" when a downgrade stays possible).
	NoReturn RuleID `json:"no_return,omitempty"`
}

// UpgradePlan is a whole plan: the findings, the path and the steps that
// Next would return one after the other.
type UpgradePlan struct {
	Target   string   `json:"target"`
	Policy   Policy   `json:"policy"`
	Findings Findings `json:"findings"`
	Path     []Hop    `json:"path"`
	Steps    []Step   `json:"steps"`
	// Basis is what the plan was reviewed on (see CheckBasis). Plan always
	// sets it; a plan saved before plans recorded one has none, and
	// CheckBasis refuses it.
	Basis *Basis `json:"basis,omitempty"`
}

// String renders the step on one line: "swap-server s2 -> 1.13.9",
// "swap-clients dc1 wave 0 (2 clients) [c1, c2] -> 1.13.9",
// "transfer-leader s1 => s2". The same text names steps in errors and
// events.
func (s Step) String() string {
	var b strings.Builder
	b.WriteString(string(s.Kind))
	switch s.Kind {
	case StepSwapClients:
		fmt.Fprintf(&b, " %s wave %d (%d clients)", s.Datacenter, s.Wave, len(s.Nodes))
		if len(s.Nodes) > 0 && len(s.Nodes) <= 3 {
			fmt.Fprintf(&b, " [%s]", strings.Join(s.Nodes, ", "))
		}
	case StepTransferLeader:
		fmt.Fprintf(&b, " %s => %s", s.Node, s.Target)
		return b.String()
	default:
		if s.Node != "" {
			b.WriteString(" " + s.Node)
		}
	}
	if s.To != "" {
		b.WriteString(" -> " + s.To)
	}
	return b.String()
}

// String renders the hop: "1.10.12 -> 1.12.9", with the rule that placed
// the stepping stone when there is one: "0.5.0 -> 0.5.2 (<rule ID>)".
func (h Hop) String() string {
	s := h.From + " -> " + h.To
	if h.Rule != "" {
		s += " (" + string(h.Rule) + ")"
	}
	return s
}
