package transporttest

import (
	"context"
	"fmt"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// FailNextProvision makes the next Provision return an error wrapping err
// without adding a node.
func (f *Fake) FailNextProvision(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failProvision = err
}

// Provision implements transport.Provisioner: it adds a running, healthy
// node named <ProvisionPrefix><n> on version (recorded as OpProvision, then
// OpStart) and calls OnProvision. A version marked Broken leaves no node
// behind and returns an error wrapping transport.ErrNotRunning.
func (f *Fake) Provision(ctx context.Context, role transport.Role, version string) (node string, err error) {
	f.mu.Lock()
	i := f.record(Call{Op: OpProvision, To: version})
	defer func() {
		f.mu.Lock()
		f.calls[i].Err = err
		f.calls[i].Node = node
		hook := f.OnProvision
		f.mu.Unlock()
		if err == nil && hook != nil {
			hook(node, role, version)
		}
	}()
	defer f.mu.Unlock()
	if role != transport.RoleServer && role != transport.RoleClient {
		return "", fmt.Errorf("fake: provision: %w: role %q is not %q or %q", transport.ErrInvalidRequest, role, transport.RoleServer, transport.RoleClient)
	}
	if err := transport.ValidateVersion(version); err != nil {
		return "", fmt.Errorf("fake: provision: %w: %w", transport.ErrInvalidRequest, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("fake: provision on %s: %w", version, err)
	}
	if e := f.failProvision; e != nil {
		f.failProvision = nil
		return "", fmt.Errorf("fake: provision on %s: %w", version, e)
	}
	prefix := f.ProvisionPrefix
	if prefix == "" {
		prefix = "new-"
	}
	for {
		f.provisioned++
		node = fmt.Sprintf("%s%d", prefix, f.provisioned)
		if _, taken := f.nodes[node]; !taken {
			break
		}
	}
	n := &FakeNode{Name: node, Role: role}
	if err := f.start(n, version); err != nil {
		return "", fmt.Errorf("fake: provision %s: %w", node, err)
	}
	f.nodes[node] = n
	return node, nil
}

// Retire implements transport.Provisioner: it stops the node's agent with a
// leave (OpRetire, then OpStop), removes the node and calls OnRetire. An
// unknown node is an error wrapping transport.ErrUnknownNode.
func (f *Fake) Retire(ctx context.Context, node string) (err error) {
	f.mu.Lock()
	i := f.record(Call{Op: OpRetire, Node: node})
	defer func() {
		f.mu.Lock()
		f.calls[i].Err = err
		hook := f.OnRetire
		f.mu.Unlock()
		if err == nil && hook != nil {
			hook(node)
		}
	}()
	defer f.mu.Unlock()
	n, ok := f.nodes[node]
	if !ok {
		return fmt.Errorf("fake: retire: node %q is not in the fake cluster: %w", node, transport.ErrUnknownNode)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake: retire %s: %w", node, err)
	}
	f.stop(n, transport.StopLeave)
	delete(f.nodes, node)
	delete(f.prev, node)
	delete(f.faults, node)
	return nil
}
