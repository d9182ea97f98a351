package main

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// serfLeft is the serf status of a member that left (consul members: left).
const serfLeft = 3

// catalogNodes lists the nodes an ssh fleet resolves (ssh.Fleet.Resolve):
// every agent serf knows and has not seen leave, in the -http-addr agent's
// datacenter and in each -dc one's, with the catalog's address and node
// meta (the serf address when the catalog does not list the node yet), the
// role from the serf tag role (consul: a server) and the datacenter from
// the tag dc. Nodes the catalog lists without an agent (external services
// registered through the catalog API) are not hosts of the fleet.
func (l live) catalogNodes(ctx context.Context) ([]ssh.Node, error) {
	var out []ssh.Node
	add := func(dc string, c upgrade.Consul) error {
		where := "the -http-addr agent's datacenter"
		if dc != "" {
			where = "datacenter " + dc + " (-dc)"
		}
		fr, ok := c.(upgrade.FeatureReader)
		if !ok {
			return fmt.Errorf("%s: the Consul in use (%T) cannot list the catalog's nodes (it is not an upgrade.FeatureReader)", where, c)
		}
		members, err := c.Members(ctx)
		if err != nil {
			return fmt.Errorf("%s: list the serf members: %w", where, err)
		}
		nodes, err := fr.Nodes(ctx, "")
		if err != nil {
			return fmt.Errorf("%s: list the catalog's nodes (needs node:read): %w", where, err)
		}
		type entry struct {
			addr string
			meta map[string]string
		}
		catalog := map[string]entry{}
		for _, n := range nodes {
			if n != nil {
				catalog[n.Node] = entry{n.Address, n.Meta}
			}
		}
		for _, m := range members {
			if m == nil || m.Status == serfLeft {
				continue
			}
			var role transport.Role
			switch m.Tags["role"] {
			case "consul":
				role = transport.RoleServer
			case "node":
				role = transport.RoleClient
			default:
				continue // not a Consul agent (another serf pool member)
			}
			n := ssh.Node{Name: m.Name, Address: m.Addr, Role: role, Datacenter: m.Tags["dc"]}
			if e, ok := catalog[m.Name]; ok {
				if e.addr != "" {
					n.Address = e.addr
				}
				n.Meta = e.meta
			}
			out = append(out, n)
		}
		return nil
	}
	if err := add("", l.consul); err != nil {
		return nil, err
	}
	for _, dc := range slices.Sorted(maps.Keys(l.others)) {
		if err := add(dc, l.others[dc]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
