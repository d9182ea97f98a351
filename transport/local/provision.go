package local

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// ProvisionTemplate says how Provision makes a new agent (for the replace
// strategy): its name, address, directories and arguments.
type ProvisionTemplate struct {
	// NamePrefix names new agents <NamePrefix><n>, n counting from 1 and
	// skipping names in use (e.g. "new-" gives new-1, new-2, ...).
	NamePrefix string
	// Addresses are the IPs new agents take, in order; an address used by an
	// agent of the transport (now or before) is skipped and none is given
	// out twice. When all are used, Provision fails.
	Addresses []string
	// HTTPPort is the new agents' HTTP port (0: DefaultHTTPPort).
	HTTPPort int
	// Dir holds the new agents' data directories (<Dir>/<name>) and logs
	// (<Dir>/<name>.log).
	Dir string
	// Args are the new agents' extra arguments, as Agent.Args (retry-join to
	// the cluster, log level and the like; no bootstrap-expect).
	Args []string
	// ArgsFor is the new agents' Agent.ArgsFor.
	ArgsFor func(version string) ([]string, error)
}

// SetProvisioning gives the transport the template Provision makes new
// agents from. Every problem is reported (joined), naming the field.
func (t *Transport) SetProvisioning(tpl ProvisionTemplate) error {
	var errs []error
	if err := transport.ValidateNode(tpl.NamePrefix + "1"); err != nil {
		errs = append(errs, fmt.Errorf("provision template: name prefix %q does not make valid node names: %w", tpl.NamePrefix, err))
	}
	if len(tpl.Addresses) == 0 {
		errs = append(errs, errors.New("provision template: no addresses; list the IPs new agents may take, e.g. 127.0.1.14"))
	}
	for _, a := range tpl.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("provision template: address %q is not an IP address", a))
		}
	}
	if tpl.HTTPPort < 0 || tpl.HTTPPort > 65535 {
		errs = append(errs, fmt.Errorf("provision template: http port %d is outside 0..65535 (0 means %d)", tpl.HTTPPort, DefaultHTTPPort))
	}
	if tpl.Dir == "" {
		errs = append(errs, errors.New("provision template: dir is empty; name a directory for the new agents' data and logs"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	tpl.Addresses = slices.Clone(tpl.Addresses)
	tpl.Args = slices.Clone(tpl.Args)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.provision = &tpl
	return nil
}

// next makes the spec of the next provisioned agent and registers it, under
// t.mu.
func (t *Transport) nextAgent(role transport.Role, version string) (*agent, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errors.New("local: transport is closed; create a new one with local.New")
	}
	tpl := t.provision
	if tpl == nil {
		return nil, errors.New("local: provisioning is not set up; call SetProvisioning with a template for new agents")
	}
	if t.usedAddrs == nil {
		t.usedAddrs = map[string]bool{}
	}
	for _, a := range t.agents {
		if addr, err := netip.ParseAddr(a.spec.Address); err == nil && a.spec.HTTPPort == tpl.HTTPPort {
			t.usedAddrs[addr.String()] = true
		}
	}
	addr := ""
	for _, a := range tpl.Addresses {
		if p, _ := netip.ParseAddr(a); !t.usedAddrs[p.String()] {
			addr = p.String()
			break
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("local: every provisioning address is used (%v); add addresses to the template", tpl.Addresses)
	}
	var name string
	for {
		t.provisioned++
		name = fmt.Sprintf("%s%d", tpl.NamePrefix, t.provisioned)
		if _, taken := t.agents[name]; !taken {
			break
		}
	}
	spec := Agent{Name: name, Role: role, Version: version, Address: addr, HTTPPort: tpl.HTTPPort,
		DataDir: filepath.Join(tpl.Dir, name), LogPath: filepath.Join(tpl.Dir, name+".log"), Args: slices.Clone(tpl.Args), ArgsFor: tpl.ArgsFor}
	t.usedAddrs[addr] = true
	a := &agent{spec: spec, version: version, sem: make(chan struct{}, 1)}
	t.agents[name] = a
	t.order = append(t.order, name)
	return a, nil
}

// forget drops node from the transport (its data dir stays on disk).
func (t *Transport) forget(node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.agents, node)
	t.order = slices.DeleteFunc(t.order, func(n string) bool { return n == node })
}

// Provision makes a new agent from the template of SetProvisioning, starts
// it on version and waits until its HTTP API answers with that version; it
// returns the new node's name. Joining the cluster is the template's
// retry-join; whether the new server became a healthy voter is the caller's
// gate. When the start fails, the half-started agent is stopped (a graceful
// leave, so a server that joined does not stay in the cluster as a failed
// member), forgotten (its data dir is kept) and the error names it.
func (t *Transport) Provision(ctx context.Context, role transport.Role, version string) (string, error) {
	if role != transport.RoleServer && role != transport.RoleClient {
		return "", fmt.Errorf("%w: role %q is not %q or %q", transport.ErrInvalidRequest, role, transport.RoleServer, transport.RoleClient)
	}
	if err := transport.ValidateVersion(version); err != nil {
		return "", fmt.Errorf("%w: %w", transport.ErrInvalidRequest, err)
	}
	binary, err := t.resolve(version)
	if err != nil {
		return "", err
	}
	a, err := t.nextAgent(role, version)
	if err != nil {
		return "", err
	}
	name := a.spec.Name
	if err := a.lock(ctx); err != nil {
		t.forget(name)
		return "", err
	}
	defer a.unlock()
	if err := t.start(ctx, a, version, binary); err != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultStopTimeout)
		defer cancel()
		if serr := t.stop(sctx, a, transport.StopLeave); serr != nil {
			serr = errors.Join(serr, killIfRunning(sctx, a))
			if a.running() != nil {
				return name, fmt.Errorf("provision %s on %s: %w; stopping it failed too (%v), it is still an agent of the transport", name, version, err, serr)
			}
		}
		t.forget(name)
		return "", fmt.Errorf("provision %s on %s: %w; the new agent was stopped and forgotten", name, version, err)
	}
	return name, nil
}

func killIfRunning(ctx context.Context, a *agent) error {
	if p := a.running(); p != nil {
		return killAndWait(ctx, a.spec.Name, p)
	}
	return nil
}

// Retire takes node out of the cluster for good: `consul leave` with its own
// binary (the server leaves the raft configuration and serf), waits until
// the process has exited (killing it after the stop timeout) and forgets the
// node; its data dir is kept. Retiring a node the transport does not know
// is an error wrapping transport.ErrUnknownNode.
func (t *Transport) Retire(ctx context.Context, node string) error {
	a, err := t.agent(node)
	if err != nil {
		return err
	}
	if err := a.lock(ctx); err != nil {
		return err
	}
	defer a.unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("node %s: not retired: %w", node, err)
	}
	if err := t.stop(ctx, a, transport.StopLeave); err != nil {
		return fmt.Errorf("retire %s: %w", node, err)
	}
	t.forget(node)
	return nil
}
