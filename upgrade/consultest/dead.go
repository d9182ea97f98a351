package consultest

import (
	"fmt"
	"slices"

	"github.com/hashicorp/consul/api"
)

// serfLeft is the serf status of a member that left (or was force-left).
const serfLeft = 3

// Kill stops node's agent for good, as kill -9 does: it is failed in serf
// and, if a server, unhealthy in autopilot while it stays in the raft
// configuration (a voter that does not answer), until Swap brings it back
// or RemoveDeadServer removes it. A killed leader hands leadership at once
// to the first other server that is a healthy voter. It fails for a node
// that is not in the cluster.
func (c *Cluster) Kill(node string) error {
	return c.restart(node, "", false, true)
}

// RemoveDeadServer does to a server what autopilot's dead-server cleanup
// does once it has been failed for a while: it leaves the raft
// configuration and autopilot, and serf lists it as left (force-left, not
// yet reaped) with the tags it had. The cluster has one voter fewer. It
// fails for a node that is not a server, or that is not down (Kill it
// first).
func (c *Cluster) RemoveDeadServer(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(name)
	if err != nil {
		return err
	}
	if !n.server() {
		return fmt.Errorf("consultest: node %q is a client; RemoveDeadServer removes servers", name)
	}
	if !n.down {
		return fmt.Errorf("consultest: server %q is not down, and autopilot removes only dead servers; Kill it first", name)
	}
	c.nodes = slices.DeleteFunc(c.nodes, func(o *node) bool { return o == n })
	delete(c.byName, name)
	c.left = append(c.left, n)
	return nil
}

// leftMembers are the serf members of the servers RemoveDeadServer
// removed, with status left. Callers hold c.mu.
func (c *Cluster) leftMembers() []api.AgentMember {
	out := make([]api.AgentMember, 0, len(c.left))
	for _, n := range c.left {
		out = append(out, api.AgentMember{Name: n.name, Addr: n.addr, Port: 8301, Tags: c.tags(n), Status: serfLeft})
	}
	return out
}
