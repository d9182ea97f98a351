package planner

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

	// SnapshotVersion is the Consul version the servers ran when the last
	// verified snapshot was saved in this run ("" when none was). Next asks
	// for a snapshot before the first server swap of a hop whenever the
	// servers' version differs from it; the runner sets it after saving one.
	SnapshotVersion string `json:"snapshot_version,omitempty"`
}

// Datacenter is one Consul datacenter.
type Datacenter struct {
	Name string `json:"name"`
	// Primary marks the primary (ACL / federation) datacenter.
	Primary bool `json:"primary,omitempty"`
}

// Server is a Consul server agent.
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

// Client is a Consul client agent.
type Client struct {
	Name       string `json:"name"`
	Address    string `json:"address,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	Zone       string `json:"zone,omitempty"`
	Version    string `json:"version"`
}

// Features are the cluster settings that version rules depend on. The zero
// value means: ACLs off, nothing special in use, defaults everywhere.
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
	// Connect is true when the service mesh (Connect) is in use.
	Connect bool `json:"connect,omitempty"`
	// Envoy is true when Envoy sidecars or gateways run next to the agents.
	Envoy bool `json:"envoy,omitempty"`
	// RaftProtocol is the configured raft_protocol (0: the version default).
	RaftProtocol int `json:"raft_protocol,omitempty"`
	// RaftLogStore is the Raft log store: "lmdb" (< 0.5.1), "boltdb" or
	// "wal" ("" means the version default).
	RaftLogStore string `json:"raft_log_store,omitempty"`
	// TLS describes the agents' TLS settings.
	TLS TLS `json:"tls,omitempty"`
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
