package consultest

import (
	"net/http"
	"strconv"
	"strings"

	version "github.com/hashicorp/go-version"
)

// Features is what the simulated agents report about their configuration
// and the service mesh: the /v1/agent/self document, the servers' serf tags
// and the ACL, intention, config-entry and catalog-node endpoints that
// feature observation reads. The zero value is a plain cluster: connect
// off, no HTTPS, no gRPC, no TLS files, Raft protocol 3.
type Features struct {
	// ConnectEnabled is connect.enabled on the agents.
	ConnectEnabled bool
	// HTTPSPort, GRPCPort and GRPCTLSPort are the ports (0: disabled,
	// reported as -1). Servers advertise the gRPC ports as serf tags.
	HTTPSPort, GRPCPort, GRPCTLSPort int
	// CertFile and CAFile are the TLS files (on the gRPC interface from
	// 1.12, top-level keys before).
	CertFile, CAFile string
	// AutoEncrypt is auto_encrypt.allow_tls on the servers.
	AutoEncrypt bool
	// RaftProtocol is every server's raft_vsn tag (0: 3).
	RaftProtocol int
	// ACLDefaultPolicy is acl.default_policy ("": allow).
	ACLDefaultPolicy string
	// ACLReplication: secondary datacenters report replication enabled
	// in /v1/acl/replication?dc=.
	ACLReplication bool
	// ACLForbidden answers 403 on /v1/acl/tokens (a token without
	// acl:read); LegacyTokens is how many listed tokens are legacy.
	ACLForbidden bool
	LegacyTokens int
	// Intentions and TerminatingGateways are how many intentions and
	// terminating-gateway config entries exist.
	Intentions, TerminatingGateways int
	// ZoneTag is the autopilot redundancy_zone_tag the agents report.
	ZoneTag string
	// NodeMeta is each node's node meta, by node name.
	NodeMeta map[string]map[string]string
	// AgentConfig is more of each node's configuration, by node name: keys
	// and values added to its /v1/agent/self "Config" before 1.0 (the full
	// configuration, as {"Reap": true}) and "DebugConfig" from 1.0 (the
	// runtime configuration, as {"ConnectServerlessPluginEnabled": true}).
	AgentConfig map[string]map[string]any
}

// WithFeatures sets what the agents report about their configuration and
// the mesh (see Features).
func WithFeatures(f Features) Option {
	return func(c *Cluster) { c.features = f }
}

// port reports a disabled port as Consul does (-1).
func port(p int) int {
	if p <= 0 {
		return -1
	}
	return p
}

// selfDocumentOf is /v1/agent/self as agent a answers it (without the
// Member and Stats that serveSelf adds). Callers hold c.mu.
func (c *Cluster) selfDocumentOf(a *node) map[string]map[string]any {
	f := c.features
	cfg := map[string]any{"Datacenter": c.dc, "PrimaryDatacenter": c.primary}
	if a != nil {
		cfg["NodeName"] = a.name
		cfg["Version"] = a.version
		cfg["Server"] = a.server()
	}
	aclsOn := c.acls != ACLsDisabled
	policy := f.ACLDefaultPolicy
	if policy == "" {
		policy = "allow"
	}
	v, err := version.NewVersion("0.0.0")
	if a != nil {
		if av, perr := version.NewVersion(a.version); perr == nil {
			v, err = av.Core(), nil
		}
	}
	before := func(s string) bool { return err == nil && v.LessThan(version.Must(version.NewVersion(s))) }
	if before("1.0.0") {
		// The 0.x era: the full config in "Config".
		if aclsOn {
			cfg["ACLDatacenter"] = c.primary
		}
		cfg["ACLDefaultPolicy"] = policy
		cfg["Ports"] = map[string]any{"HTTPS": port(f.HTTPSPort)}
		cfg["CertFile"], cfg["CAFile"], cfg["KeyFile"] = f.CertFile, f.CAFile, ""
		c.addAgentConfig(a, cfg)
		return map[string]map[string]any{"Config": cfg}
	}
	dbg := map[string]any{
		"ConnectEnabled":             f.ConnectEnabled,
		"HTTPSPort":                  port(f.HTTPSPort),
		"GRPCPort":                   port(f.GRPCPort),
		"RaftProtocol":               c.raftProtocol(),
		"AutoEncryptAllowTLS":        f.AutoEncrypt,
		"AutoEncryptTLS":             false,
		"AutopilotRedundancyZoneTag": f.ZoneTag,
		"PrimaryDatacenter":          c.primary,
		"ACLsEnabled":                aclsOn,
	}
	if !before("1.14.0") {
		dbg["GRPCTLSPort"] = port(f.GRPCTLSPort)
	}
	if before("1.11.0") {
		dbg["ACLDefaultPolicy"] = policy
	} else {
		dbg["ACLResolverSettings"] = map[string]any{"ACLDefaultPolicy": policy, "ACLsEnabled": aclsOn}
	}
	if before("1.4.0") && aclsOn {
		dbg["ACLDatacenter"] = c.primary
	}
	files := map[string]any{"CertFile": f.CertFile, "CAFile": f.CAFile, "CAPath": "", "KeyFile": "hidden"}
	if before("1.12.0") {
		for k, v := range files {
			dbg[k] = v
		}
	} else {
		dbg["TLS"] = map[string]any{"GRPC": files, "HTTPS": files, "InternalRPC": files}
	}
	c.addAgentConfig(a, dbg)
	return map[string]map[string]any{"Config": cfg, "DebugConfig": dbg}
}

// addAgentConfig adds node a's Features.AgentConfig to its configuration
// section. Callers hold c.mu.
func (c *Cluster) addAgentConfig(a *node, section map[string]any) {
	if a == nil {
		return
	}
	for k, v := range c.features.AgentConfig[a.name] {
		section[k] = v
	}
}

func (c *Cluster) raftProtocol() int {
	if c.features.RaftProtocol > 0 {
		return c.features.RaftProtocol
	}
	return 3
}

// addFeatureTags adds the serf tags a server of this configuration
// carries: raft_vsn, and the gRPC ports. Callers hold c.mu.
func (c *Cluster) addFeatureTags(n *node, tags map[string]string) {
	if !n.server() {
		return
	}
	tags["raft_vsn"] = strconv.Itoa(c.raftProtocol())
	if p := c.features.GRPCPort; p > 0 {
		tags["grpc_port"] = strconv.Itoa(p)
	}
	if p := c.features.GRPCTLSPort; p > 0 {
		tags["grpc_tls_port"] = strconv.Itoa(p)
	}
}

// serveFeature answers the endpoints of feature observation; it reports
// whether r was one of them. Callers hold c.mu.
func (c *Cluster) serveFeature(w http.ResponseWriter, r *http.Request) bool {
	f := c.features
	aclsOff := func() bool {
		if c.acls == ACLsDisabled {
			http.Error(w, "ACL support disabled", http.StatusUnauthorized)
			return true
		}
		return false
	}
	switch r.URL.Path {
	case "/v1/acl/replication":
		if aclsOff() {
			return true
		}
		dc := r.URL.Query().Get("dc")
		if dc == "" {
			dc = c.dc
		}
		on := f.ACLReplication && dc != c.primary
		src := ""
		if on {
			src = c.primary
		}
		writeJSON(w, http.StatusOK, map[string]any{"Enabled": on, "Running": on, "SourceDatacenter": src, "ReplicationType": "tokens"})
	case "/v1/acl/tokens":
		if aclsOff() {
			return true
		}
		if f.ACLForbidden {
			http.Error(w, "Permission denied", http.StatusForbidden)
			return true
		}
		out := []map[string]any{{"AccessorID": "00000000-0000-0000-0000-000000000002", "Description": "Anonymous Token"}}
		for i := 0; i < f.LegacyTokens; i++ {
			out = append(out, map[string]any{"AccessorID": "legacy-" + strconv.Itoa(i), "Legacy": true})
		}
		writeJSON(w, http.StatusOK, out)
	case "/v1/connect/intentions":
		out := []map[string]any{}
		for i := 0; i < f.Intentions; i++ {
			out = append(out, map[string]any{"ID": "intention-" + strconv.Itoa(i), "SourceName": "web", "DestinationName": "db"})
		}
		writeJSON(w, http.StatusOK, out)
	case "/v1/catalog/nodes":
		out := []map[string]any{}
		for _, n := range c.nodes {
			out = append(out, map[string]any{"Node": n.name, "Address": n.addr, "Datacenter": c.dc, "Meta": f.NodeMeta[n.name]})
		}
		writeJSON(w, http.StatusOK, out)
	default:
		kind, ok := strings.CutPrefix(r.URL.Path, "/v1/config/")
		if !ok {
			return false
		}
		out := []map[string]any{}
		if kind == "terminating-gateway" {
			for i := 0; i < f.TerminatingGateways; i++ {
				out = append(out, map[string]any{"Kind": kind, "Name": "tgw-" + strconv.Itoa(i)})
			}
		}
		writeJSON(w, http.StatusOK, out)
	}
	return true
}
