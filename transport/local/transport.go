package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

var (
	_ transport.Transport       = (*Transport)(nil)
	_ transport.Rollbacker      = (*Transport)(nil)
	_ transport.VersionReporter = (*Transport)(nil)
	_ transport.Provisioner     = (*Transport)(nil)
)

// Start starts the node's agent on the version it is set to run (the
// Agent's Version until a swap changes it) and waits until its HTTP API
// answers with that version. Starting a running agent does nothing.
func (t *Transport) Start(ctx context.Context, node string) error {
	a, err := t.agent(node)
	if err != nil {
		return err
	}
	if err := a.lock(ctx); err != nil {
		return err
	}
	defer a.unlock()
	if a.running() != nil {
		return nil
	}
	a.mu.Lock()
	version, binary := a.version, a.binary
	a.mu.Unlock()
	if binary == "" {
		if binary, err = t.resolve(version); err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
	}
	return t.start(ctx, a, version, binary)
}

// Stop stops the node's agent as mode says and waits until the process is
// gone. Stopping a stopped agent does nothing. When ctx ends first the
// process is left as it is and the error wraps ctx.Err().
func (t *Transport) Stop(ctx context.Context, node string, mode transport.StopMode) error {
	a, err := t.agent(node)
	if err != nil {
		return err
	}
	if err := a.lock(ctx); err != nil {
		return err
	}
	defer a.unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("node %s: not stopped: %w", node, err)
	}
	return t.stop(ctx, a, mode)
}

// Swap moves a node to req.To, keeping its data and configuration (see the
// package documentation for the steps). Errors are *transport.SwapError.
func (t *Transport) Swap(ctx context.Context, req transport.SwapRequest) error {
	fail := func(phase transport.Phase, err error) error {
		return &transport.SwapError{Node: req.Node, Phase: phase, To: req.To, Err: err}
	}
	if err := transport.ValidateRequest(req); err != nil {
		return err // a *transport.SwapError in phase validate
	}
	a, err := t.agent(req.Node)
	if err != nil {
		return fail(transport.PhaseValidate, err)
	}
	if req.Role != "" && req.Role != a.spec.Role {
		return fail(transport.PhaseValidate, fmt.Errorf("%w: node %s is a %s here, the request says %s; discover the cluster again and re-plan",
			transport.ErrInvalidRequest, req.Node, a.spec.Role, req.Role))
	}
	binary, err := t.artifact(req)
	if err != nil {
		return fail(transport.PhaseStage, err)
	}
	if a.spec.ArgsFor != nil {
		// Refuse before the agent is stopped, not after.
		if _, err := a.spec.ArgsFor(req.To); err != nil {
			return fail(transport.PhaseStage, fmt.Errorf("node %s: arguments for consul %s: %w", req.Node, req.To, err))
		}
	}
	if err := a.lock(ctx); err != nil {
		return fail(transport.PhaseStage, err)
	}
	defer a.unlock()
	if err := ctx.Err(); err != nil {
		// Ended before anything was touched (lock may win a race with ctx).
		return fail(transport.PhaseStage, fmt.Errorf("node %s: not swapped: %w", req.Node, err))
	}

	a.mu.Lock()
	current, currentBinary := a.version, a.binary
	a.mu.Unlock()
	if req.From != "" && !planner.SameVersion(current, req.From) && !planner.SameVersion(current, req.To) {
		return fail(transport.PhaseValidate, fmt.Errorf("%w: node %s runs %s, the request expects %s (from); discover the cluster again and re-plan",
			transport.ErrInvalidRequest, req.Node, current, req.From))
	}
	if p := a.running(); p != nil && planner.SameVersion(p.version, req.To) {
		// Idempotent: already there. Make sure it answers, without a restart.
		if err := t.waitReady(ctx, a, p); err != nil {
			return fail(transport.PhaseVerify, err)
		}
		return nil
	}
	if err := t.stop(ctx, a, req.StopMode); err != nil {
		return fail(transport.PhaseStop, err)
	}
	req.Report(transport.PhaseStop)
	if !planner.SameVersion(current, req.To) {
		a.mu.Lock()
		a.prevVersion = current
		a.prevBinary = currentBinary
		a.mu.Unlock()
	}
	if err := t.start(ctx, a, req.To, binary); err != nil {
		return fail(transport.PhaseStart, err)
	}
	req.Report(transport.PhaseStart)
	return nil
}

// Rollback puts the node back on the version and binary it ran before its
// last swap: it kills the current process (if any; the agent does not
// leave), starts the earlier binary and waits until it answers. A node that
// was never swapped (or was rolled back already) is an error that touches
// nothing. Errors are *transport.SwapError in phase rollback.
func (t *Transport) Rollback(ctx context.Context, node string) error {
	a, err := t.agent(node)
	if err != nil {
		return &transport.SwapError{Node: node, Phase: transport.PhaseRollback, Err: err}
	}
	if err := a.lock(ctx); err != nil {
		return &transport.SwapError{Node: node, Phase: transport.PhaseRollback, Err: err}
	}
	defer a.unlock()
	if err := ctx.Err(); err != nil {
		return &transport.SwapError{Node: node, Phase: transport.PhaseRollback, Err: fmt.Errorf("node %s: not rolled back: %w", node, err)}
	}
	a.mu.Lock()
	prev, prevBinary, current := a.prevVersion, a.prevBinary, a.version
	a.mu.Unlock()
	fail := func(err error) error {
		return &transport.SwapError{Node: node, Phase: transport.PhaseRollback, To: prev, Err: err}
	}
	if prev == "" {
		return fail(fmt.Errorf("%w: node %s (on %s) has no earlier swap to roll back", transport.ErrInvalidRequest, node, current))
	}
	if prevBinary == "" {
		if prevBinary, err = t.resolve(prev); err != nil {
			return fail(err)
		}
	}
	if err := t.stop(ctx, a, transport.StopKill); err != nil {
		return fail(err)
	}
	if err := t.start(ctx, a, prev, prevBinary); err != nil {
		return fail(err)
	}
	a.mu.Lock()
	a.prevVersion, a.prevBinary = "", ""
	a.mu.Unlock()
	return nil
}

// RunningVersion returns the version of the binary the node's live agent
// process was started from. A node without a live process is an error
// wrapping transport.ErrNotRunning.
func (t *Transport) RunningVersion(ctx context.Context, node string) (string, error) {
	a, err := t.agent(node)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	p := a.running()
	if p == nil {
		return "", fmt.Errorf("%w: node %s has no live agent process; start it with Start", transport.ErrNotRunning, node)
	}
	return p.version, nil
}

// PID returns the process id of the node's live agent, or 0.
func (t *Transport) PID(node string) int {
	a, ok := t.lookup(node)
	if !ok {
		return 0
	}
	if p := a.running(); p != nil {
		return p.pid
	}
	return 0
}

// Incarnation identifies the node's latest process start; it changes every
// time the agent is (re)started and is "" before the first start.
func (t *Transport) Incarnation(node string) string {
	a, ok := t.lookup(node)
	if !ok {
		return ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.incarnation
}

// closeWait bounds how long Close waits for killed processes to be reaped.
const closeWait = 10 * time.Second

// Close kills every agent process the transport started (SIGKILL to its
// process group) and waits until they are gone. Later starts fail. Close is
// safe to call more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	var errs []error
	for _, name := range t.Nodes() {
		a, ok := t.lookup(name)
		if !ok {
			continue
		}
		if p := a.running(); p != nil {
			if err := killAndWait(ctx, name, p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// resolve asks the resolver for a version's binary; errors wrap
// transport.ErrArtifact.
func (t *Transport) resolve(version string) (string, error) {
	path, err := t.bin(version)
	if err != nil {
		return "", fmt.Errorf("%w: %w", transport.ErrArtifact, err)
	}
	if path == "" {
		return "", fmt.Errorf("%w: resolver returned no path for consul %s", transport.ErrArtifact, version)
	}
	return path, nil
}

// artifact finds the binary for a swap: req.Artifact as a local file path
// when set, else the resolver's answer.
func (t *Transport) artifact(req transport.SwapRequest) (string, error) {
	if req.Artifact == "" {
		return t.resolve(req.To)
	}
	fi, err := os.Stat(req.Artifact)
	if err != nil {
		return "", fmt.Errorf("%w: artifact %s for consul %s: %w; transport/local takes a local file path", transport.ErrArtifact, req.Artifact, req.To, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%w: artifact %s for consul %s is not an executable file (mode %s)", transport.ErrArtifact, req.Artifact, req.To, fi.Mode())
	}
	return req.Artifact, nil
}
