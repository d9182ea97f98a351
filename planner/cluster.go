package planner

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Cluster is a snapshot of a Consul cluster as plain values: what the planner
// needs to know, and nothing it would have to ask a live cluster for. It
// round-trips through JSON. upgrade.Discover builds one from a live cluster;
// tests and previews build one by hand.
type Cluster struct {
	// Datacenters lists the datacenters with the primary marked. It may be
	// empty for a single-datacenter cluster whose agents name no datacenter
	// (the datacenter is then "dc1", the Consul default).
	Datacenters []Datacenter `json:"datacenters,omitempty"`
	Servers     []Server     `json:"servers"`
	Clients     []Client     `json:"clients,omitempty"`
	Features    Features     `json:"features"`

	// LeaderUnknown says that the cluster's description does not know
	// which server leads (a hand-built inventory). The no-leader pre-check
	// then does not block; Next and Plan order the servers as if none
	// led, so a live run, which observes its leader and swaps it last,
	// may order them differently (an approved plan then diverges and is
	// made again from the live cluster). upgrade.Discover never sets it.
	LeaderUnknown bool `json:"leader_unknown,omitempty"`

	// SnapshotVersion is the Consul version the servers ran when the last
	// verified snapshot was saved in this run ("" when none was). Next asks
	// for a snapshot before the first server swap of a hop whenever the
	// servers' version differs from it; the runner sets it after saving one.
	SnapshotVersion string `json:"snapshot_version,omitempty"`

	// Missing are the servers that serf still lists (failed, or left and
	// not yet reaped) but that are not in the Raft configuration: a server
	// that died and that autopilot's dead-server cleanup removed, one
	// removed by hand (consul operator raft remove-peer, force-leave), or
	// one retired on purpose (the replace strategy). They are not in
	// Servers: they vote in nothing and no step acts on them. Check names
	// each (RuleServerMissing), so a datacenter left with fewer voters is
	// not mistaken for a smaller one by design. upgrade.Discover fills it.
	Missing []MissingServer `json:"missing,omitempty"`

	// UnfinishedSwap is a server swap that a run started and did not
	// finish (the upgrade package's swap record), when the observer read
	// one; a later run finishes it before anything else. Plan records it
	// in the plan's Basis. Discover does not set it: that is the runner's
	// record, as SnapshotVersion is.
	UnfinishedSwap *UnfinishedSwap `json:"unfinished_swap,omitempty"`
}

// MissingServer is a server that serf lists but the Raft configuration
// does not (see Cluster.Missing).
type MissingServer struct {
	Name       string `json:"name"`
	Address    string `json:"address,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	// Version is the version its serf build tag last said.
	Version string `json:"version,omitempty"`
	// Status is its serf status: "failed" (it stopped answering) or
	// "left" (it left, was force-left, or autopilot's cleanup of dead
	// servers removed it; serf reaps it after a while).
	Status string `json:"status"`
}

// String describes the server for messages: "s3 (1.12.9, left in serf,
// not in the Raft configuration)".
func (m MissingServer) String() string {
	v := m.Version
	if v == "" {
		v = "version unknown"
	}
	return fmt.Sprintf("%s (%s, %s in serf, not in the Raft configuration)", m.Name, v, m.Status)
}

// UnfinishedSwap is a server swap a run started and did not finish.
type UnfinishedSwap struct {
	Node       string `json:"node"`
	Datacenter string `json:"datacenter,omitempty"`
	From       string `json:"from,omitempty"`
	To         string `json:"to"`
	// Holder names the run that started it.
	Holder string `json:"holder,omitempty"`
}

// String is "s2 1.12.9 -> 1.13.9".
func (u UnfinishedSwap) String() string {
	from := u.From
	if from == "" {
		from = "?"
	}
	return fmt.Sprintf("%s %s -> %s", u.Node, from, u.To)
}

// Datacenter is one Consul datacenter.
type Datacenter struct {
	Name string `json:"name"`
	// Primary marks the primary (ACL / federation) datacenter.
	Primary bool `json:"primary,omitempty"`
}

// Server is a Consul server agent. Voter and Healthy are what the
// observer saw; a Server built by hand should say them: use NewServer, or
// set both. In JSON, an absent "voter" or "healthy" reads as true, so a
// hand-written inventory need not repeat them (upgrade.Discover always
// writes both).
type Server struct {
	Name       string `json:"name"`
	Address    string `json:"address,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	Zone       string `json:"zone,omitempty"`
	Version    string `json:"version"`
	Leader     bool   `json:"leader,omitempty"`
	Voter      bool   `json:"voter"`
	Healthy    bool   `json:"healthy"`
}

// NewServer returns a server on version that is a healthy voter (not the
// leader): a hand-built inventory's server as the pre-checks expect it.
func NewServer(name, version string) Server {
	return Server{Name: name, Version: version, Voter: true, Healthy: true}
}

// UnmarshalJSON reads a server; an absent "voter" or "healthy" is true.
func (s *Server) UnmarshalJSON(b []byte) error {
	type plain Server
	v := plain{Voter: true, Healthy: true}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = Server(v)
	return nil
}

// Client is a Consul client agent.
type Client struct {
	Name       string `json:"name"`
	Address    string `json:"address,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	Zone       string `json:"zone,omitempty"`
	Version    string `json:"version"`
}

// Features are the cluster settings that version rules depend on. The zero
// value means: ACLs off, defaults everywhere, and the use of the mesh
// features (Connect, Envoy, agentless mesh, terminating gateways) unknown.
// A rule tied to a feature whose use is unknown reports a warning ("blocking
// if you use X; not observed here") instead of refusing the plan. What the
// agents' versions prove needs no declaring: Check adds it (see Check), so
// ACLs on a cluster with a server below 1.4.0 count as legacy tokens.
type Features struct {
	// ACLs is true when the ACL system is enabled.
	ACLs bool `json:"acls,omitempty"`
	// ACLDefaultPolicy is "allow" or "deny" ("" means allow, the default).
	ACLDefaultPolicy string `json:"acl_default_policy,omitempty"`
	// LegacyACLs is true while legacy (pre-1.4) ACL tokens are still in use
	// or a server still runs in legacy ACL mode.
	LegacyACLs bool `json:"legacy_acls,omitempty"`
	// ACLReplication is true when secondary datacenters replicate ACLs from
	// the primary.
	ACLReplication bool `json:"acl_replication,omitempty"`
	// Connect says whether the service mesh (Connect) is in use: sidecar
	// proxies, gateways or intentions.
	Connect Usage `json:"connect,omitempty"`
	// Envoy says whether Envoy sidecars or gateways run next to the agents
	// (bootstrapped with consul connect envoy).
	Envoy Usage `json:"envoy,omitempty"`
	// AgentlessMesh says whether the servers host xDS streams themselves:
	// agentless workloads (consul-dataplane, Consul on Kubernetes without
	// client agents) whose Envoy proxies talk gRPC to the servers.
	// Connect == No implies No.
	AgentlessMesh Usage `json:"agentless_mesh,omitempty"`
	// TerminatingGateways says whether terminating gateways (mesh to
	// services outside the mesh) are in use. Connect == No implies No.
	TerminatingGateways Usage `json:"terminating_gateways,omitempty"`
	// RaftProtocol is the configured raft_protocol (0: the version default).
	RaftProtocol int `json:"raft_protocol,omitempty"`
	// RaftLogStore is the Raft log store: "lmdb" (< 0.5.1), "boltdb" or
	// "wal" ("" means the version default).
	RaftLogStore string `json:"raft_log_store,omitempty"`
	// TLS describes the agents' TLS settings.
	TLS TLS `json:"tls,omitempty"`
	// Unobserved lists the features that the observer (upgrade.Discover)
	// could not read from the live cluster, and why; their fields above
	// hold the default. Check reports them (RuleFeaturesUnobserved) so the
	// operator can declare them. Empty for hand-built clusters.
	Unobserved []FeatureGap `json:"unobserved,omitempty"`
}

// FeatureGap is a feature the observer could not read.
type FeatureGap struct {
	// Feature is the Features field ("LegacyACLs", "TLS.GRPCTLS", ...).
	Feature string `json:"feature"`
	// Reason says why it was not observed and how to supply it.
	Reason string `json:"reason"`
}

// Usage says whether a cluster uses a feature. The zero value is Unknown,
// so a hand-built Cluster that says nothing about a feature is not taken to
// be free of it. It marshals as "" (omitted), "no" or "yes"; it also
// unmarshals from JSON true and false (snapshots written when the field was
// a bool) and from "unknown".
type Usage string

const (
	// Unknown: nobody observed or declared whether the feature is used.
	Unknown Usage = ""
	// No: the feature is known to be unused.
	No Usage = "no"
	// Yes: the feature is known to be used.
	Yes Usage = "yes"
)

// UsageOf converts a bool observation to a Usage.
func UsageOf(used bool) Usage {
	if used {
		return Yes
	}
	return No
}

// Known reports whether the use of the feature is known (Yes or No).
func (u Usage) Known() bool { return u == Yes || u == No }

// String is "yes", "no" or "unknown".
func (u Usage) String() string {
	if u == Unknown {
		return "unknown"
	}
	return string(u)
}

// UsageError is a Usage value that is not "yes", "no", "unknown" or "".
type UsageError struct {
	Value string
}

func (e *UsageError) Error() string {
	return fmt.Sprintf("feature usage %q is not valid (want \"yes\", \"no\", \"unknown\", true or false); omit the field when the use is unknown", e.Value)
}

// UnmarshalJSON accepts "yes", "no", "unknown", "", true, false and null.
func (u *Usage) UnmarshalJSON(b []byte) error {
	switch s := strings.TrimSpace(string(b)); s {
	case "true":
		*u = Yes
		return nil
	case "false":
		*u = No
		return nil
	case "null":
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &UsageError{Value: string(b)}
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes":
		*u = Yes
	case "no":
		*u = No
	case "", "unknown":
		*u = Unknown
	default:
		return &UsageError{Value: s}
	}
	return nil
}

// TLS is the part of the agents' TLS configuration that upgrade rules read.
type TLS struct {
	// CertMaterial is true when tls.defaults (or the legacy top-level keys)
	// hold certificate material.
	CertMaterial bool `json:"cert_material,omitempty"`
	// HTTPSPort is true when ports.https is set.
	HTTPSPort bool `json:"https_port,omitempty"`
	// GRPCTLS is true when gRPC is served over TLS (ports.grpc_tls, or TLS
	// on ports.grpc before 1.14).
	GRPCTLS bool `json:"grpc_tls,omitempty"`
	// AutoEncrypt is true when auto_encrypt or auto_config is enabled.
	AutoEncrypt bool `json:"auto_encrypt,omitempty"`
}
