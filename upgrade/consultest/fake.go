package consultest

import (
	"sync"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

// OnSwap returns a hook for f.OnSwap that mirrors what each of f's swaps and
// rollbacks did to a node into the cluster:
//
//   - the agent was started (its Incarnation grew) and is healthy: Swap to
//     the version it now runs (ComeBackOld: the old one);
//   - started but not healthy (ComeBackUnhealthy): restarted on that
//     version, and never healthy in autopilot until its next restart;
//   - left down (Broken): Swap with ok false;
//   - not touched (FailNext, HangNext, an idempotent swap): nothing.
//
// Use it as f.OnSwap = cluster.OnSwap(f), before the first swap; NewFake does
// that for you. Nodes of f that the cluster does not have are ignored.
func (c *Cluster) OnSwap(f *transporttest.Fake) func(transport.SwapRequest) {
	var mu sync.Mutex
	seen := map[string]int{} // node -> the Incarnation last mirrored
	for _, n := range c.Nodes() {
		if fn, ok := f.Node(n.Name); ok {
			seen[n.Name] = fn.Incarnation
		}
	}
	return func(req transport.SwapRequest) {
		n, ok := f.Node(req.Node)
		if !ok {
			return
		}
		mu.Lock()
		started := n.Incarnation != seen[n.Name]
		seen[n.Name] = n.Incarnation
		mu.Unlock()
		switch {
		case !n.Running:
			_ = c.restart(n.Name, n.Version, false, false)
		case started:
			_ = c.restart(n.Name, n.Version, true, n.Healthy)
		}
	}
}

// NewFake returns a transporttest.Fake holding the cluster's nodes (each on
// its version, running if up) whose OnSwap mirrors every swap into the
// cluster (see OnSwap), whose OnProvision adds a provisioned server
// (AddServer) and whose OnRetire removes a retired one (RemoveServer). Pass it to your orchestration as its transport.
func (c *Cluster) NewFake() *transporttest.Fake {
	var nodes []transporttest.FakeNode
	for _, n := range c.Nodes() {
		fn := transporttest.FakeNode{Name: n.Name, Role: n.Role, Version: n.Version, Running: n.Up, Healthy: n.Up}
		nodes = append(nodes, fn)
	}
	f := transporttest.NewFake(nodes...)
	f.OnSwap = c.OnSwap(f)
	f.OnProvision = func(node string, role transport.Role, version string) {
		if role == transport.RoleServer {
			_ = c.AddServer(node, version)
		}
	}
	f.OnRetire = func(node string) { _ = c.RemoveServer(node) }
	return f
}
