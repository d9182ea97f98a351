package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
	version "github.com/hashicorp/go-version"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// This file observes the planner.Features that version rules read, from
// what the HTTP API of each era shows:
//
//   - serf member tags: acls (1.4+: 0 off, 1 on, 2 legacy mode), raft_vsn
//     (0.8+), grpc_port / grpc_tls_port (servers, 1.13+ / 1.14+);
//   - /v1/agent/self: before 1.0 "Config" is the whole agent config
//     (ACLDatacenter, ACLDefaultPolicy, Ports.HTTPS, CertFile, ...); from
//     1.0 "Config" is a summary and "DebugConfig" the sanitized runtime
//     config (ConnectEnabled, HTTPSPort, GRPCPort, GRPCTLSPort 1.14+, TLS
//     per interface 1.12+, ACLResolverSettings 1.11+, RaftLogStoreConfig
//     1.15+, AutopilotRedundancyZoneTag);
//   - /v1/acl/replication?dc= per datacenter, /v1/acl/tokens (the Legacy
//     flag, 1.4-1.10), /v1/config/terminating-gateway (1.8+),
//     /v1/connect/intentions (1.2+) and /v1/catalog/nodes (node meta,
//     0.7.3+), through the optional FeatureReader.
//
// What cannot be read is listed in Features.Unobserved with the reason and
// how to supply it (Config.Features, which wins over observation); the
// planner reports it as the features-not-observed finding. Settings come
// from the agent the Consul talks to: run against a server of the
// datacenter to see the servers' settings.

// FeatureReader is the optional part of Consul that feature observation
// uses beyond the calls every run needs. NewConsul's Consul implements it; a
// Consul without it leaves these features unobserved (and says so).
type FeatureReader interface {
	// ACLReplication returns GET /v1/acl/replication of datacenter dc
	// ("" for the agent's own).
	ACLReplication(ctx context.Context, dc string) (*api.ACLReplicationStatus, error)
	// ACLTokens returns GET /v1/acl/tokens (ACL system 1.4+; needs
	// acl:read).
	ACLTokens(ctx context.Context) ([]ACLTokenEntry, error)
	// ConfigEntryCount returns how many config entries of a kind exist
	// (GET /v1/config/<kind>, 1.5+; terminating-gateway from 1.8).
	ConfigEntryCount(ctx context.Context, kind string) (int, error)
	// IntentionCount returns how many intentions exist (GET
	// /v1/connect/intentions, 1.2+).
	IntentionCount(ctx context.Context) (int, error)
	// Nodes returns the catalog nodes of datacenter dc ("" for the
	// agent's own) with their node meta.
	Nodes(ctx context.Context, dc string) ([]*api.Node, error)
}

// ACLTokenEntry is the part of a /v1/acl/tokens entry feature observation
// reads. Legacy is set by Consul 1.4-1.10 for tokens of the legacy system
// (api.ACLTokenListEntry does not decode it).
type ACLTokenEntry struct {
	AccessorID string
	Legacy     bool
}

// FeatureConfig is what the operator tells a run about the cluster's
// features. Every declared field wins over observation and removes the
// feature from Features.Unobserved; the zero value declares nothing.
type FeatureConfig struct {
	// ZoneKey is the node-meta key that names a node's zone
	// (Server.Zone, Client.Zone). "" uses the servers' autopilot
	// redundancy_zone_tag when one is set, else leaves zones empty.
	ZoneKey string

	ACLs             planner.Usage // ACL system enabled
	ACLDefaultPolicy string        // "allow" or "deny"
	LegacyACLs       planner.Usage // legacy tokens still in use
	ACLReplication   planner.Usage // secondaries replicate ACLs

	Connect             planner.Usage // service mesh in use
	Envoy               planner.Usage // Envoy proxies run
	AgentlessMesh       planner.Usage // servers feed consul-dataplane proxies over xDS
	TerminatingGateways planner.Usage // terminating gateways in use

	RaftProtocol int    // 1, 2 or 3 (0: observe)
	RaftLogStore string // "boltdb" or "wal" ("": observe)

	CertMaterial planner.Usage // tls.defaults / legacy TLS keys hold certificates
	HTTPSPort    planner.Usage // ports.https set
	GRPCTLS      planner.Usage // gRPC served over TLS
	AutoEncrypt  planner.Usage // auto_encrypt or auto_config on
}

// validate reports the problems of a FeatureConfig as *ConfigErrors.
func (fc FeatureConfig) validate() []error {
	var errs []error
	add := func(field, value, problem string) {
		errs = append(errs, &ConfigError{Field: "Features." + field, Value: value, Problem: problem})
	}
	for _, u := range fc.usages() {
		if *u.v != planner.Unknown && !u.v.Known() {
			add(u.name, strconv.Quote(string(*u.v)), `is not a feature usage; use planner.Yes, planner.No or leave it unset ("")`)
		}
	}
	if p := fc.ACLDefaultPolicy; p != "" && p != "allow" && p != "deny" {
		add("ACLDefaultPolicy", strconv.Quote(p), `is not an ACL default policy; use "allow", "deny" or "" to observe it`)
	}
	if fc.RaftProtocol < 0 || fc.RaftProtocol > 3 {
		add("RaftProtocol", strconv.Itoa(fc.RaftProtocol), "is not a raft_protocol; use 1, 2 or 3, or 0 to observe it")
	}
	if s := fc.RaftLogStore; s != "" && s != "boltdb" && s != "wal" {
		add("RaftLogStore", strconv.Quote(s), `is not a Raft log store; use "boltdb", "wal" or "" to observe it`)
	}
	if strings.TrimSpace(fc.ZoneKey) != fc.ZoneKey {
		add("ZoneKey", strconv.Quote(fc.ZoneKey), "has surrounding spaces; node-meta keys have none")
	}
	return errs
}

type namedUsage struct {
	name string
	v    *planner.Usage
}

// usages lists the Usage fields with the planner.Features name they set.
func (fc *FeatureConfig) usages() []namedUsage {
	return []namedUsage{
		{"ACLs", &fc.ACLs}, {"LegacyACLs", &fc.LegacyACLs}, {"ACLReplication", &fc.ACLReplication},
		{"Connect", &fc.Connect}, {"Envoy", &fc.Envoy}, {"AgentlessMesh", &fc.AgentlessMesh},
		{"TerminatingGateways", &fc.TerminatingGateways},
		{"TLS.CertMaterial", &fc.CertMaterial}, {"TLS.HTTPSPort", &fc.HTTPSPort},
		{"TLS.GRPCTLS", &fc.GRPCTLS}, {"TLS.AutoEncrypt", &fc.AutoEncrypt},
	}
}

// Declare writes the declared features over f, as Run lays them over what
// it observes, and drops them from f.Unobserved; a cluster from Discover or
// DiscoverDatacenters then plans as Run with Config.Features would (ZoneKey
// aside: zones are read by Run and Discover only). It returns the config's
// problems (*ConfigErrors, joined) and changes nothing when there are any.
func (fc FeatureConfig) Declare(f *planner.Features) error {
	if errs := fc.validate(); len(errs) > 0 {
		return errors.Join(errs...)
	}
	fc.apply(f)
	return nil
}

// apply writes the declared features over f and drops them from
// f.Unobserved.
func (fc FeatureConfig) apply(f *planner.Features) {
	declared := map[string]bool{}
	setBool := func(name string, u planner.Usage, dst *bool) {
		if u.Known() {
			*dst = u == planner.Yes
			declared[name] = true
		}
	}
	setUsage := func(name string, u planner.Usage, dst *planner.Usage) {
		if u.Known() {
			*dst = u
			declared[name] = true
		}
	}
	setBool("ACLs", fc.ACLs, &f.ACLs)
	setBool("LegacyACLs", fc.LegacyACLs, &f.LegacyACLs)
	setBool("ACLReplication", fc.ACLReplication, &f.ACLReplication)
	setUsage("Connect", fc.Connect, &f.Connect)
	setUsage("Envoy", fc.Envoy, &f.Envoy)
	setUsage("AgentlessMesh", fc.AgentlessMesh, &f.AgentlessMesh)
	setUsage("TerminatingGateways", fc.TerminatingGateways, &f.TerminatingGateways)
	setBool("TLS.CertMaterial", fc.CertMaterial, &f.TLS.CertMaterial)
	setBool("TLS.HTTPSPort", fc.HTTPSPort, &f.TLS.HTTPSPort)
	setBool("TLS.GRPCTLS", fc.GRPCTLS, &f.TLS.GRPCTLS)
	setBool("TLS.AutoEncrypt", fc.AutoEncrypt, &f.TLS.AutoEncrypt)
	if fc.ACLDefaultPolicy != "" {
		f.ACLDefaultPolicy, declared["ACLDefaultPolicy"] = fc.ACLDefaultPolicy, true
	}
	if fc.RaftProtocol != 0 {
		f.RaftProtocol, declared["RaftProtocol"] = fc.RaftProtocol, true
	}
	if fc.RaftLogStore != "" {
		f.RaftLogStore, declared["RaftLogStore"] = fc.RaftLogStore, true
	}
	var gaps []planner.FeatureGap
	for _, g := range f.Unobserved {
		if !declared[g.Feature] {
			gaps = append(gaps, g)
		}
	}
	f.Unobserved = gaps
}

// applyFeatures lays the operator's FeatureConfig over an observed cluster:
// zones by Config.Features.ZoneKey (read in every observed datacenter),
// then the declared features.
func (r *runner) applyFeatures(ctx context.Context, c *planner.Cluster) error {
	fc := r.cfg.Features
	if fc.ZoneKey != "" {
		for _, dc := range r.datacenters() {
			gap, err := readZones(ctx, r.consul(dc), fc.ZoneKey, c)
			if err != nil {
				return err
			}
			if gap != nil {
				addGap(&c.Features, *gap)
			}
		}
	}
	fc.apply(&c.Features)
	return nil
}

// withFeatures returns cl with its Features (and the servers' and clients'
// zones) observed from the member tags and agent self document Discover
// already read, and from the optional FeatureReader calls. Only a context
// error fails it: a feature it cannot read is listed in
// Features.Unobserved.
func withFeatures(ctx context.Context, c Consul, cl planner.Cluster, members []*api.AgentMember, self map[string]map[string]any) (planner.Cluster, error) {
	err := observeFeatures(ctx, c, &cl, members, self)
	return cl, err
}

func observeFeatures(ctx context.Context, c Consul, cl *planner.Cluster, members []*api.AgentMember, self map[string]map[string]any) error {
	o := &observer{ctx: ctx, cl: cl, f: &cl.Features, self: self}
	o.fr, _ = c.(FeatureReader)
	o.readSelf(members)
	o.raftProtocol(members)
	o.acls(members)
	o.tls()
	o.connect(members)
	if key := o.str("DebugConfig", "AutopilotRedundancyZoneTag"); key != "" {
		if gap, err := readZones(ctx, c, key, cl); err != nil {
			return err
		} else if gap != nil {
			o.gap(gap.Feature, gap.Reason)
		}
	}
	return ctx.Err()
}

type observer struct {
	ctx  context.Context
	cl   *planner.Cluster
	f    *planner.Features
	fr   FeatureReader
	self map[string]map[string]any
	// agent is the version of the agent answering (nil if unknown);
	// server says whether it is a server.
	agent  *version.Version
	server bool
	// servers are the server members' versions (parsed, alive or failed).
	servers []*version.Version
}

func (o *observer) gap(feature, reason string) {
	addGap(o.f, planner.FeatureGap{Feature: feature, Reason: reason})
}

// addGap records a gap once per feature (the first reason wins).
func addGap(f *planner.Features, g planner.FeatureGap) {
	for _, have := range f.Unobserved {
		if have.Feature == g.Feature {
			return
		}
	}
	f.Unobserved = append(f.Unobserved, g)
}

// get walks the agent self document: section ("Config", "DebugConfig")
// then nested keys. Missing keys and other types give nil.
func (o *observer) get(section string, path ...string) any {
	if o.self[section] == nil {
		return nil
	}
	var cur any = map[string]any(o.self[section])
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func (o *observer) str(section string, path ...string) string {
	s, _ := o.get(section, path...).(string)
	return s
}

// num reads a JSON number; ok is false when the key is missing.
func (o *observer) num(section string, path ...string) (int, bool) {
	switch v := o.get(section, path...).(type) {
	case float64:
		return int(v), true
	case int:
		return v, true
	}
	return 0, false
}

// flag reads a JSON bool; ok is false when the key is missing.
func (o *observer) flag(section string, path ...string) (bool, bool) {
	b, ok := o.get(section, path...).(bool)
	return b, ok
}

// before reports whether the agent runs a version below v (false when its
// version is unknown).
func (o *observer) before(v string) bool {
	return o.agent != nil && o.agent.LessThan(version.Must(version.NewVersion(v)))
}

// serversBefore reports whether every server member runs below v (false
// when no server version is known).
func (o *observer) serversBefore(v string) bool {
	if len(o.servers) == 0 {
		return false
	}
	limit := version.Must(version.NewVersion(v))
	for _, s := range o.servers {
		if !s.LessThan(limit) {
			return false
		}
	}
	return true
}

func (o *observer) readSelf(members []*api.AgentMember) {
	if v, err := version.NewVersion(buildVersion(o.str("Config", "Version"))); err == nil {
		o.agent = v.Core()
	}
	o.server, _ = o.flag("Config", "Server")
	for _, m := range members {
		if m == nil || m.Tags["role"] != "consul" || m.Status == serfLeft {
			continue
		}
		if v, err := version.NewVersion(buildVersion(m.Tags["build"])); err == nil {
			o.servers = append(o.servers, v.Core())
		}
	}
}

// raftProtocol: the lowest raft_vsn tag of the servers (0.8+); before 0.8
// there is no tag and no setting to read (0 is the version default).
func (o *observer) raftProtocol(members []*api.AgentMember) {
	low := 0
	for _, m := range members {
		if m == nil || m.Tags["role"] != "consul" || m.Status == serfLeft {
			continue
		}
		if n, err := strconv.Atoi(m.Tags["raft_vsn"]); err == nil && n > 0 && (low == 0 || n < low) {
			low = n
		}
	}
	if low == 0 && o.server {
		// 1.0+ DebugConfig, 0.8/0.9 full Config.
		if n, ok := o.num("DebugConfig", "RaftProtocol"); ok && n > 0 {
			low = n
		} else if n, ok := o.num("Config", "RaftProtocol"); ok && n > 0 {
			low = n
		}
	}
	if low > 0 {
		o.f.RaftProtocol = low
	}
	if o.server {
		// 1.15+: raft_logstore.backend.
		switch b := strings.ToLower(o.str("DebugConfig", "RaftLogStoreConfig", "Backend")); b {
		case "wal", "boltdb":
			o.f.RaftLogStore = b
		}
	}
}

// acls fills ACLs, ACLDefaultPolicy, LegacyACLs and ACLReplication.
func (o *observer) acls(members []*api.AgentMember) {
	tagged := false
	for _, m := range members {
		if m != nil && m.Tags["role"] == "consul" && m.Tags["acls"] != "" {
			tagged = true // 1.4+: buildCluster read the tag
		}
	}
	if !tagged {
		// Before 1.4 ACLs are on when acl_datacenter is set: full
		// Config before 1.0, DebugConfig 1.0-1.3.
		if o.str("DebugConfig", "ACLDatacenter") != "" || o.str("Config", "ACLDatacenter") != "" {
			o.f.ACLs = true
		}
		if on, ok := o.flag("DebugConfig", "ACLsEnabled"); ok && on {
			o.f.ACLs = true
		}
	}
	if !o.f.ACLs {
		return
	}
	// Default policy: ACLResolverSettings (1.11+), DebugConfig (1.0-1.10),
	// Config (before 1.0).
	pol := o.str("DebugConfig", "ACLResolverSettings", "ACLDefaultPolicy")
	if pol == "" {
		pol = o.str("DebugConfig", "ACLDefaultPolicy")
	}
	if pol == "" {
		pol = o.str("Config", "ACLDefaultPolicy")
	}
	if pol != "" {
		o.f.ACLDefaultPolicy = pol
	} else {
		o.gap("ACLDefaultPolicy", "the agent self document names no ACL default policy; set Config.Features.ACLDefaultPolicy")
	}
	o.legacyTokens()
	o.replication()
}

// legacyTokens: legacy ACL tokens exist before 1.4 (every token is one),
// are flagged Legacy in /v1/acl/tokens on 1.4-1.10, and are gone from 1.11.
func (o *observer) legacyTokens() {
	switch {
	case o.f.LegacyACLs:
		return // a server still runs in legacy ACL mode (acls tag 2)
	case o.agent == nil:
		o.gap("LegacyACLs", "the agent did not say its version; set Config.Features.LegacyACLs")
		return
	case !o.before("1.11.0"):
		return // 1.11 removed the legacy ACL system
	case o.before("1.4.0"):
		o.f.LegacyACLs = true // before 1.4 every ACL token is a legacy token
		return
	case o.fr == nil:
		o.gap("LegacyACLs", "this Consul cannot list ACL tokens (no FeatureReader); set Config.Features.LegacyACLs")
		return
	}
	tokens, err := o.fr.ACLTokens(o.ctx)
	if err != nil {
		o.gap("LegacyACLs", "GET /v1/acl/tokens: "+why(err, "a token with acl:read")+"; or set Config.Features.LegacyACLs")
		return
	}
	for _, t := range tokens {
		if t.Legacy {
			o.f.LegacyACLs = true
			return
		}
	}
}

// replication: ACL replication runs in secondary datacenters; the primary
// forwards /v1/acl/replication?dc= to each (endpoint 0.9+... shape with
// ReplicationType from 1.4). One datacenter has nothing to replicate.
func (o *observer) replication() {
	if len(o.cl.Datacenters) <= 1 {
		return
	}
	if o.fr == nil {
		o.gap("ACLReplication", "this Consul cannot read /v1/acl/replication (no FeatureReader); set Config.Features.ACLReplication")
		return
	}
	for _, dc := range o.cl.Datacenters {
		st, err := o.fr.ACLReplication(o.ctx, dc.Name)
		switch {
		case statusCode(err) == http.StatusUnauthorized:
			continue // "ACL support disabled" in that datacenter
		case err != nil:
			// DebugConfig.ACLTokenReplication (1.4+) only speaks for
			// this agent's datacenter.
			if on, ok := o.flag("DebugConfig", "ACLTokenReplication"); ok && on {
				o.f.ACLReplication = true
				return
			}
			o.gap("ACLReplication", fmt.Sprintf("GET /v1/acl/replication?dc=%s: %s; or set Config.Features.ACLReplication", dc.Name, why(err, "a token with acl:read")))
			return
		case st != nil && st.Enabled:
			o.f.ACLReplication = true
			return
		}
	}
}

// tls fills Features.TLS from the agent's config, by era.
func (o *observer) tls() {
	t := &o.f.TLS
	httpsPort, ok := o.num("DebugConfig", "HTTPSPort") // 1.0+
	if !ok {
		httpsPort, ok = o.num("Config", "Ports", "HTTPS") // before 1.0
	}
	if !ok {
		o.gap("TLS.HTTPSPort", "the agent self document shows no HTTPS port; set Config.Features.HTTPSPort")
	}
	t.HTTPSPort = httpsPort > 0

	// Certificate material: the runtime TLS stanza from 1.12 (tls.defaults
	// are merged into each interface; GRPC is what 1.13 would serve TLS
	// with), the top-level keys before (DebugConfig 1.0-1.11, Config
	// before 1.0). KeyFile is sanitized ("hidden") and not read.
	material := func(section string, path ...string) (bool, bool) {
		found, any := false, false
		for _, k := range []string{"CertFile", "CAFile", "CAPath"} {
			if v, ok := o.get(section, append(path, k)...).(string); ok {
				found = true
				any = any || v != ""
			}
		}
		return any, found
	}
	certs, found := material("DebugConfig", "TLS", "GRPC")
	if !found {
		certs, found = material("DebugConfig")
	}
	if !found {
		certs, found = material("Config")
	}
	if !found {
		o.gap("TLS.CertMaterial", "the agent self document shows no TLS file settings; set Config.Features.CertMaterial")
	}
	t.CertMaterial = certs

	for _, k := range []string{"AutoEncryptTLS", "AutoEncryptAllowTLS"} { // 1.5+
		if on, _ := o.flag("DebugConfig", k); on {
			t.AutoEncrypt = true
		}
	}
	if on, _ := o.flag("DebugConfig", "AutoConfig", "Enabled"); on { // 1.8+
		t.AutoEncrypt = true
	}

	// gRPC over TLS, by the agent's era: 1.14+ serves it on grpc_tls_port;
	// 1.13 on the gRPC port when tls.grpc has certificates (or
	// use_auto_cert); before 1.13 on the gRPC port when HTTPS is on and
	// certificates are configured.
	grpcPort, _ := o.num("DebugConfig", "GRPCPort")
	switch {
	case o.agent == nil:
		o.gap("TLS.GRPCTLS", "the agent did not say its version; set Config.Features.GRPCTLS")
	case !o.before("1.14.0"):
		p, _ := o.num("DebugConfig", "GRPCTLSPort")
		auto, _ := o.flag("DebugConfig", "TLS", "GRPC", "UseAutoCert")
		t.GRPCTLS = p > 0 && (certs || auto)
	case !o.before("1.13.0"):
		auto, _ := o.flag("DebugConfig", "TLS", "GRPC", "UseAutoCert")
		t.GRPCTLS = grpcPort > 0 && (certs || auto || (t.AutoEncrypt && o.before("1.13.2")))
	default:
		t.GRPCTLS = grpcPort > 0 && t.HTTPSPort && certs
	}
}

// connect fills Connect, AgentlessMesh and TerminatingGateways; Envoy is
// never shown by the API and stays unknown unless the mesh is off.
func (o *observer) connect(members []*api.AgentMember) {
	f := o.f
	switch {
	case o.agent == nil:
		o.gap("Connect", "the agent did not say its version; set Config.Features.Connect")
		return
	case o.before("1.2.0"):
		f.Connect = planner.No // Connect arrived in 1.2.0
		return
	}
	if on, ok := o.flag("DebugConfig", "ConnectEnabled"); ok && !on && o.server {
		// connect.enabled is off on a server: no CA, no mesh.
		f.Connect = planner.No
		return
	}
	if o.fr != nil {
		if n, err := o.fr.IntentionCount(o.ctx); err == nil && n > 0 {
			f.Connect = planner.Yes
		}
		switch n, err := o.fr.ConfigEntryCount(o.ctx, "terminating-gateway"); {
		case err == nil && n > 0:
			f.TerminatingGateways, f.Connect = planner.Yes, planner.Yes
		case err == nil:
			f.TerminatingGateways = planner.No
		case statusCode(err) == http.StatusNotFound || o.before("1.8.0"):
			f.TerminatingGateways = planner.No // terminating gateways arrived in 1.8.0
		default:
			o.gap("TerminatingGateways", "GET /v1/config/terminating-gateway: "+why(err, "a token with operator:read")+"; or set Config.Features.TerminatingGateways")
		}
	} else {
		o.gap("TerminatingGateways", "this Consul cannot list config entries (no FeatureReader); set Config.Features.TerminatingGateways")
	}
	if f.Connect == planner.Unknown {
		o.gap("Connect", "the API does not show whether sidecars or gateways run (connect.enabled is on, or the agent is not a server); set Config.Features.Connect")
	}

	// Agentless workloads (consul-dataplane) need 1.14+ servers with a
	// gRPC port, which 1.14+ servers advertise as serf tags.
	switch {
	case o.serversBefore("1.14.0"):
		f.AgentlessMesh = planner.No
	case !serversAdvertiseGRPC(members):
		f.AgentlessMesh = planner.No
	default:
		o.gap("AgentlessMesh", "the API does not show whether consul-dataplane proxies take xDS from the servers; set Config.Features.AgentlessMesh")
	}
	o.gap("Envoy", "the API does not show whether Envoy proxies run; set Config.Features.Envoy")
}

// serversAdvertiseGRPC reports whether a server member carries a gRPC port
// tag (grpc_port 1.13+, grpc_tls_port 1.14+).
func serversAdvertiseGRPC(members []*api.AgentMember) bool {
	for _, m := range members {
		if m == nil || m.Tags["role"] != "consul" {
			continue
		}
		for _, k := range []string{"grpc_port", "grpc_tls_port"} {
			if p, err := strconv.Atoi(m.Tags[k]); err == nil && p > 0 {
				return true
			}
		}
	}
	return false
}

// readZones sets the zone of every server and client of cl found in the
// catalog of c's datacenter from node meta key. It returns a gap (not an
// error) when the catalog cannot be read, and an error only when ctx ended.
func readZones(ctx context.Context, c Consul, key string, cl *planner.Cluster) (*planner.FeatureGap, error) {
	fr, ok := c.(FeatureReader)
	if !ok {
		return &planner.FeatureGap{Feature: "Zones", Reason: "this Consul cannot list catalog nodes (no FeatureReader); zones stay empty"}, nil
	}
	nodes, err := fr.Nodes(ctx, "")
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return &planner.FeatureGap{Feature: "Zones", Reason: fmt.Sprintf("GET /v1/catalog/nodes (zone key %q): %s", key, why(err, "a token with node:read"))}, nil
	}
	zone := map[string]string{}
	for _, n := range nodes {
		if n != nil && n.Meta[key] != "" {
			zone[n.Node] = n.Meta[key]
		}
	}
	for i := range cl.Servers {
		if z, ok := zone[cl.Servers[i].Name]; ok {
			cl.Servers[i].Zone = z
		}
	}
	for i := range cl.Clients {
		if z, ok := zone[cl.Clients[i].Name]; ok {
			cl.Clients[i].Zone = z
		}
	}
	return nil, nil
}

// mergeFeatures folds the features observed in another datacenter into f:
// a feature used anywhere is used; a Usage is No only when No everywhere;
// the lowest raft protocol and the strictest ACL default policy win.
func mergeFeatures(f *planner.Features, o planner.Features) {
	f.ACLs = f.ACLs || o.ACLs
	f.LegacyACLs = f.LegacyACLs || o.LegacyACLs
	f.ACLReplication = f.ACLReplication || o.ACLReplication
	if o.ACLDefaultPolicy == "deny" || f.ACLDefaultPolicy == "" {
		f.ACLDefaultPolicy = o.ACLDefaultPolicy
	}
	for _, u := range []struct{ dst, src *planner.Usage }{
		{&f.Connect, &o.Connect}, {&f.Envoy, &o.Envoy}, {&f.AgentlessMesh, &o.AgentlessMesh}, {&f.TerminatingGateways, &o.TerminatingGateways},
	} {
		switch {
		case *u.dst == planner.Yes || *u.src == planner.Yes:
			*u.dst = planner.Yes
		case *u.dst == planner.No && *u.src == planner.No:
			*u.dst = planner.No
		default:
			*u.dst = planner.Unknown
		}
	}
	if o.RaftProtocol > 0 && (f.RaftProtocol == 0 || o.RaftProtocol < f.RaftProtocol) {
		f.RaftProtocol = o.RaftProtocol
	}
	if o.RaftLogStore == "wal" || f.RaftLogStore == "" {
		f.RaftLogStore = o.RaftLogStore
	}
	f.TLS.CertMaterial = f.TLS.CertMaterial || o.TLS.CertMaterial
	f.TLS.HTTPSPort = f.TLS.HTTPSPort || o.TLS.HTTPSPort
	f.TLS.GRPCTLS = f.TLS.GRPCTLS || o.TLS.GRPCTLS
	f.TLS.AutoEncrypt = f.TLS.AutoEncrypt || o.TLS.AutoEncrypt
	for _, g := range o.Unobserved {
		addGap(f, g)
	}
}

// statusCode is the HTTP status of an API error (0 when it has none).
func statusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	var sp *api.StatusError
	if errors.As(err, &sp) && sp != nil {
		return sp.Code
	}
	return 0
}

// why says in words why a read failed: the endpoint is missing in this
// era (404), the token lacks a permission (403), or the error itself.
func why(err error, needs string) string {
	switch statusCode(err) {
	case http.StatusNotFound:
		return "the endpoint does not exist on this Consul version"
	case http.StatusForbidden:
		return "permission denied (needs " + needs + ")"
	}
	return err.Error()
}

// The FeatureReader of NewConsul's Consul. Each decodes only the fields it
// reads, so the shapes of every era decode.

func (a *apiConsul) ACLReplication(ctx context.Context, dc string) (*api.ACLReplicationStatus, error) {
	qo := q(ctx)
	qo.Datacenter = dc
	var out api.ACLReplicationStatus
	if _, err := a.c.Raw().Query("/v1/acl/replication", &out, qo); err != nil {
		return nil, fmt.Errorf("read ACL replication status of %s: %w", dcName(dc), err)
	}
	return &out, nil
}

func (a *apiConsul) ACLTokens(ctx context.Context) ([]ACLTokenEntry, error) {
	var out []ACLTokenEntry
	if _, err := a.c.Raw().Query("/v1/acl/tokens", &out, q(ctx)); err != nil {
		return nil, fmt.Errorf("list ACL tokens: %w", err)
	}
	return out, nil
}

func (a *apiConsul) ConfigEntryCount(ctx context.Context, kind string) (int, error) {
	var out []map[string]any
	if _, err := a.c.Raw().Query("/v1/config/"+url.PathEscape(kind), &out, q(ctx)); err != nil {
		return 0, fmt.Errorf("list %s config entries: %w", kind, err)
	}
	return len(out), nil
}

func (a *apiConsul) IntentionCount(ctx context.Context) (int, error) {
	var out []map[string]any
	if _, err := a.c.Raw().Query("/v1/connect/intentions", &out, q(ctx)); err != nil {
		return 0, fmt.Errorf("list intentions: %w", err)
	}
	return len(out), nil
}

func (a *apiConsul) Nodes(ctx context.Context, dc string) ([]*api.Node, error) {
	qo := q(ctx)
	qo.Datacenter = dc
	var out []*api.Node
	if _, err := a.c.Raw().Query("/v1/catalog/nodes", &out, qo); err != nil {
		return nil, fmt.Errorf("list catalog nodes of %s: %w", dcName(dc), err)
	}
	return out, nil
}

func dcName(dc string) string {
	if dc == "" {
		return "the agent's datacenter"
	}
	return "datacenter " + dc
}
