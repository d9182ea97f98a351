package consultest

import (
	"fmt"
	"slices"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// AddServer adds a new server to the cluster on version, as a provisioned
// host whose agent joins: it is a voter in the raft configuration at once
// and, like a restarted agent, down (failed in serf, unhealthy in autopilot)
// for the restart delay, then healthy. It fails for a name in use.
func (c *Cluster) AddServer(name, version string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.find(name) != nil {
		return fmt.Errorf("consultest: node %q is already in the simulated cluster; add a server under a new name", name)
	}
	servers := 0 // the new server goes after the servers, before the clients
	for _, n := range c.nodes {
		if n.server() {
			servers++
		}
	}
	addr := address(2, c.added+1)
	c.added++
	n := &node{name: name, addr: addr, version: version, role: transport.RoleServer, voter: true,
		upAt: time.Now().Add(c.restartDelay), lastIndex: DefaultLastIndex}
	c.nodes = slices.Insert(c.nodes, servers, n)
	c.byName[name] = n
	return nil
}

// RemoveServer takes a server out of the cluster as a graceful leave does:
// it is gone from serf, the raft configuration and autopilot. A leader that
// leaves hands leadership at once to the first other server that is a
// healthy voter. It fails for a node that is not a server of the cluster.
func (c *Cluster) RemoveServer(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(name)
	if err != nil {
		return err
	}
	if !n.server() {
		return fmt.Errorf("consultest: node %q is a client; RemoveServer removes servers", name)
	}
	c.nodes = slices.DeleteFunc(c.nodes, func(o *node) bool { return o == n })
	delete(c.byName, name)
	c.agentFailed(name)
	if c.leader == name {
		c.leader, c.pinned = "", false
		c.elect(time.Now(), name)
	}
	c.removed = append(c.removed, name)
	return nil
}

// Removed returns the servers RemoveServer took out, in order.
func (c *Cluster) Removed() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.removed)
}
