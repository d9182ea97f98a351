package upgrade

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// Serf member states as reported in api.AgentMember.Status.
const (
	serfAlive   = 1
	serfLeaving = 2
	serfLeft    = 3
	serfFailed  = 4
)

// Discover observes a live cluster and returns it as a planner.Cluster:
// servers are the serf members tagged role=consul and clients those tagged
// role=node; versions come from the serf build tag, the leader from
// /v1/status/leader. Clients that left are omitted; failed servers appear
// as unhealthy. A server that serf lists as failed or left (not yet
// reaped) and that is not in the Raft configuration (or, before 0.7, the
// peer set) is not a server of the cluster but one missing from it
// (Cluster.Missing): one that died and that autopilot's dead-server
// cleanup removed, one removed by hand, or one retired. Servers, missing
// servers and clients are sorted by name.
//
// How voters and health are read depends on the cluster's API era (see
// Era): voters from the Raft configuration (0.7 and later) or
// /v1/status/peers (before 0.7, where every peer votes); health from
// autopilot where it answers (0.8+ with raft protocol 3 on every server),
// and otherwise a server is healthy when it is alive in serf, in the peer
// set and a leader is known.
//
// Discover does not set Cluster.SnapshotVersion: that is the run's record.
func Discover(ctx context.Context, c Consul) (planner.Cluster, error) {
	cl, _, err := discover(ctx, c)
	return cl, err
}

// DiscoverDatacenters observes a WAN federation as Run does with
// Config.Datacenters: the datacenter of c's agent and each datacenter of
// others (keyed by its name, a Consul talking to an agent of it), merged
// into one planner.Cluster (see the package doc's Datacenters section). So
// a plan made from it is the plan a Run with the same Consul and
// Datacenters carries out. With no others it is Discover.
//
// A key that is empty, maps to a nil Consul, names c's own datacenter or
// maps to an agent of another datacenter is refused with a *ConfigError,
// as Run refuses it.
func DiscoverDatacenters(ctx context.Context, c Consul, others map[string]Consul) (planner.Cluster, error) {
	cfg := Config{Consul: c, Datacenters: others}
	var errs []error
	if c == nil {
		errs = append(errs, &ConfigError{Field: "Consul", Problem: "is nil; pass upgrade.NewConsul(client) for an agent of the run's own datacenter"})
	}
	for _, dc := range slices.Sorted(maps.Keys(others)) {
		switch {
		case dc == "":
			errs = append(errs, &ConfigError{Field: "Datacenters", Value: `""`, Problem: "has an empty datacenter name; key each Consul by the name of its datacenter"})
		case others[dc] == nil:
			errs = append(errs, &ConfigError{Field: "Datacenters", Value: strconv.Quote(dc), Problem: "maps to a nil Consul; pass upgrade.NewConsul(client) for an agent of that datacenter"})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return planner.Cluster{}, err
	}
	r := &runner{cfg: cfg, res: &Result{}}
	return r.observe(ctx)
}

// views is what one look at the cluster reads beyond members and leader,
// per era.
type views struct {
	era    Era
	raft   *api.RaftConfiguration // read (0.7+) or built from /v1/status/peers (before 0.7)
	health *api.OperatorHealthReply
}

// observeViews reads the peer set and autopilot health as far as the era
// has them.
func observeViews(ctx context.Context, c Consul, members []*api.AgentMember) (views, error) {
	v := views{era: eraOfMembers(members)}
	var err error
	if v.era.RaftConfig() {
		if v.raft, err = c.RaftConfiguration(ctx); errors.Is(err, ErrEndpointMissing) {
			v.era, err = EraPeers, nil
		}
		if err != nil {
			return v, err
		}
	}
	if !v.era.RaftConfig() {
		er, err := eraReader(c, "read the peer set (before 0.7)")
		if err != nil {
			return v, err
		}
		peers, err := er.Peers(ctx)
		if err != nil {
			return v, err
		}
		v.raft = raftFromPeers(members, peers)
	}
	if v.era.Autopilot() {
		if v.health, err = c.AutopilotHealth(ctx); errors.Is(err, ErrEndpointMissing) {
			v.era, v.health, err = EraRaftConfig, nil, nil
		}
		if err != nil {
			return v, err
		}
	}
	return v, nil
}

// raftFromPeers builds the Raft configuration of a cluster before 0.7 from
// /v1/status/peers: every peer is a voter, named after the serf member whose
// Raft address it is (the address itself when no member has it), its ID
// its address as in raft protocol 2.
func raftFromPeers(members []*api.AgentMember, peers []string) *api.RaftConfiguration {
	rc := &api.RaftConfiguration{}
	for _, p := range peers {
		rs := &api.RaftServer{ID: p, Node: p, Address: p, Voter: true}
		for _, m := range members {
			if m != nil && m.Tags["role"] == "consul" && raftAddr(m) == p {
				rs.Node = m.Name
			}
		}
		rc.Servers = append(rc.Servers, rs)
	}
	return rc
}

// discover is Discover that also returns the datacenter of the agent c talks
// to.
func discover(ctx context.Context, c Consul) (planner.Cluster, string, error) {
	var cl planner.Cluster
	members, err := c.Members(ctx)
	if err != nil {
		return cl, "", fmt.Errorf("discover: %w", err)
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		return cl, "", fmt.Errorf("discover: %w", err)
	}
	v, err := observeViews(ctx, c, members)
	if err != nil {
		return cl, "", fmt.Errorf("discover: %w (reading the %s era's endpoints)", err, v.era)
	}
	self, err := c.AgentSelf(ctx)
	if err != nil {
		return cl, "", fmt.Errorf("discover: %w", err)
	}
	dcs, err := c.Datacenters(ctx)
	if err != nil {
		return cl, "", fmt.Errorf("discover: %w", err)
	}
	cl, err = withFeatures(ctx, c, buildCluster(members, leader, v.raft, v.health, self, dcs), members, self) // features.go
	return cl, selfString(self, "Datacenter"), err
}

// buildCluster is the pure half of Discover. A nil health (an era without
// autopilot health) makes a server healthy when it is alive in serf, in the
// Raft configuration and a leader is known.
func buildCluster(members []*api.AgentMember, leader string, raft *api.RaftConfiguration, health *api.OperatorHealthReply, self map[string]map[string]any, dcs []string) planner.Cluster {
	var cl planner.Cluster
	leaderNode := leaderName(members, raft, leader)
	for _, m := range members {
		if m == nil || (m.Status == serfLeft && m.Tags["role"] != "consul") {
			continue
		}
		switch m.Tags["role"] {
		case "consul":
			if raft != nil && raftServer(raft, m) == nil && (m.Status == serfFailed || m.Status == serfLeft) {
				cl.Missing = append(cl.Missing, planner.MissingServer{Name: m.Name, Address: m.Addr, Datacenter: m.Tags["dc"],
					Version: buildVersion(m.Tags["build"]), Status: serfStatus(m.Status)})
				continue
			}
			if m.Status == serfLeft {
				continue // left, yet still in the Raft configuration: on its way out
			}
			s := planner.Server{
				Name:       m.Name,
				Address:    m.Addr,
				Datacenter: m.Tags["dc"],
				Version:    buildVersion(m.Tags["build"]),
				Leader:     leaderNode != "" && m.Name == leaderNode,
			}
			rs := raftServer(raft, m)
			if rs != nil {
				s.Voter = rs.Voter
			}
			if health == nil {
				s.Healthy = rs != nil && m.Status == serfAlive && leader != ""
			} else if hs := healthServer(health, m); hs != nil {
				s.Healthy = hs.Healthy && m.Status == serfAlive
			}
			switch m.Tags["acls"] {
			case "1":
				cl.Features.ACLs = true
			case "2":
				cl.Features.ACLs = true
				cl.Features.LegacyACLs = true
			}
			cl.Servers = append(cl.Servers, s)
		case "node":
			cl.Clients = append(cl.Clients, planner.Client{
				Name:       m.Name,
				Address:    m.Addr,
				Datacenter: m.Tags["dc"],
				Version:    buildVersion(m.Tags["build"]),
			})
		}
	}
	sort.Slice(cl.Servers, func(i, j int) bool { return cl.Servers[i].Name < cl.Servers[j].Name })
	sort.Slice(cl.Missing, func(i, j int) bool { return cl.Missing[i].Name < cl.Missing[j].Name })
	sort.Slice(cl.Clients, func(i, j int) bool { return cl.Clients[i].Name < cl.Clients[j].Name })

	primary := selfString(self, "PrimaryDatacenter")
	if primary == "" {
		primary = selfString(self, "Datacenter")
	}
	sorted := append([]string(nil), dcs...)
	sort.Strings(sorted)
	for _, dc := range sorted {
		cl.Datacenters = append(cl.Datacenters, planner.Datacenter{Name: dc, Primary: dc == primary})
	}
	return cl
}

// buildVersion turns a serf build tag ("1.12.9:abcdef", "1.13.9+ent:abc")
// into a version ("1.12.9", "1.13.9+ent").
func buildVersion(tag string) string {
	v, _, _ := strings.Cut(tag, ":")
	return v
}

// raftAddr is the member's Raft address: its serf IP with the port from the
// "port" tag (the server RPC port, 8300 by default).
func raftAddr(m *api.AgentMember) string {
	port := m.Tags["port"]
	if port == "" {
		port = "8300"
	}
	return net.JoinHostPort(m.Addr, port)
}

// leaderName maps the leader's Raft address to a member name, falling back to
// the Raft configuration's node name.
func leaderName(members []*api.AgentMember, raft *api.RaftConfiguration, leader string) string {
	if leader == "" {
		return ""
	}
	for _, m := range members {
		if m != nil && m.Tags["role"] == "consul" && raftAddr(m) == leader {
			return m.Name
		}
	}
	if raft != nil {
		for _, rs := range raft.Servers {
			if rs != nil && rs.Address == leader {
				return rs.Node
			}
		}
	}
	return ""
}

// raftServer finds the member's entry in the Raft configuration by node
// name, Raft ID (the "id" tag) or address.
func raftServer(raft *api.RaftConfiguration, m *api.AgentMember) *api.RaftServer {
	if raft == nil {
		return nil
	}
	id, addr := m.Tags["id"], raftAddr(m)
	for _, rs := range raft.Servers {
		if rs != nil && (rs.Node == m.Name || (id != "" && rs.ID == id) || rs.Address == addr) {
			return rs
		}
	}
	return nil
}

// healthServer finds the member's entry in autopilot's health reply by name
// or Raft ID.
func healthServer(h *api.OperatorHealthReply, m *api.AgentMember) *api.ServerHealth {
	if h == nil {
		return nil
	}
	id := m.Tags["id"]
	for i := range h.Servers {
		s := &h.Servers[i]
		if s.Name == m.Name || (id != "" && s.ID == id) {
			return s
		}
	}
	return nil
}

// mergeDatacenter adds the servers, clients and ACL features observed in
// another datacenter to c, and lists that datacenter if c's catalog did not.
// Servers and clients stay sorted by name.
func mergeDatacenter(c *planner.Cluster, name string, o planner.Cluster) {
	c.Servers = append(c.Servers, o.Servers...)
	c.Missing = append(c.Missing, o.Missing...)
	c.Clients = append(c.Clients, o.Clients...)
	sort.SliceStable(c.Servers, func(i, j int) bool { return c.Servers[i].Name < c.Servers[j].Name })
	sort.SliceStable(c.Missing, func(i, j int) bool { return c.Missing[i].Name < c.Missing[j].Name })
	sort.SliceStable(c.Clients, func(i, j int) bool { return c.Clients[i].Name < c.Clients[j].Name })
	mergeFeatures(&c.Features, o.Features) // features.go
	for _, d := range c.Datacenters {
		if d.Name == name {
			return
		}
	}
	c.Datacenters = append(c.Datacenters, planner.Datacenter{Name: name})
	sort.Slice(c.Datacenters, func(i, j int) bool { return c.Datacenters[i].Name < c.Datacenters[j].Name })
}

func selfString(self map[string]map[string]any, key string) string {
	if self == nil {
		return ""
	}
	if v, ok := self["Config"][key].(string); ok {
		return v
	}
	return ""
}

func findMember(members []*api.AgentMember, name string) *api.AgentMember {
	for _, m := range members {
		if m != nil && m.Name == name {
			return m
		}
	}
	return nil
}
