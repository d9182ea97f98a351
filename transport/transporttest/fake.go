package transporttest

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// FakeNode is the state of one node of a Fake.
type FakeNode struct {
	Name    string
	Role    transport.Role
	Version string // the version the agent runs (or would run, when down)
	Running bool   // the agent process is up
	Healthy bool   // the agent reports healthy
	// Incarnation counts agent starts; it grows by one each time the fake
	// starts the agent.
	Incarnation int
}

// Server returns a running, healthy server node on version.
func Server(name, version string) FakeNode {
	return FakeNode{Name: name, Role: transport.RoleServer, Version: version, Running: true, Healthy: true}
}

// Client returns a running, healthy client node on version.
func Client(name, version string) FakeNode {
	return FakeNode{Name: name, Role: transport.RoleClient, Version: version, Running: true, Healthy: true}
}

// Op names what a recorded Call did.
type Op string

// The operations a Fake records. Only OpStop and OpStart change a node.
const (
	OpSwap           Op = "swap"            // Swap was called
	OpRollback       Op = "rollback"        // Rollback was called
	OpRunningVersion Op = "running-version" // RunningVersion was called
	OpStop           Op = "stop"            // the agent of Node was stopped
	OpStart          Op = "start"           // an agent of Node was started on To
	OpProvision      Op = "provision"       // Provision was called; Node is the new node ("" when it failed)
	OpRetire         Op = "retire"          // Retire was called
	OpCheckArtifact  Op = "check-artifact"  // CheckArtifact was called; To is the version checked
)

// Call is one recorded operation of a Fake. Calls are kept in the order they
// happened; Seq numbers them from 1.
type Call struct {
	Seq      int
	Op       Op
	Node     string
	To       string             // the target version (OpSwap, OpStart, OpRollback, OpCheckArtifact)
	StopMode transport.StopMode // OpSwap and OpStop
	// Err is what the operation returned (OpSwap, OpRollback,
	// OpRunningVersion, OpCheckArtifact) or why it failed (OpStart of a
	// broken version); it is filled in when the operation ends.
	Err error
}

// TouchesState reports whether the call changed a node (a stop or a start).
func (c Call) TouchesState() bool { return c.Op == OpStop || c.Op == OpStart }

// fault is what happens to the next swap of a node.
type fault struct {
	fail      error
	hang      bool
	old       bool
	unhealthy bool
}

// Fake is an in-memory cluster of nodes that implements transport.Transport,
// transport.Rollbacker, transport.VersionReporter, transport.Provisioner and
// transport.ArtifactChecker, with fault injection.
// It is safe for concurrent use. The zero value is not usable; call NewFake.
//
// A swap that gets past validation stops the agent (OpStop), records the
// version it ran for Rollback, and starts the agent on the new version
// (OpStart), which bumps the node's Incarnation. Both are reported to
// req.Progress (transport.PhaseStop, then PhaseStart; PhaseStop alone
// when the start fails), once the swap's state is final and before
// OnSwap. A swap of a node that
// already runs req.To on a healthy agent changes nothing. req.From is
// informational: the fake does not compare it with the node's version.
//
// Faults set with FailNext, HangNext, ComeBackOld and ComeBackUnhealthy are
// taken by the next Swap of that node that passes validation (whether or
// not it would otherwise have restarted the agent), and then cleared.
// Broken and MissingBinary stay in force.
type Fake struct {
	// OnSwap, when set, is called after every Swap or Rollback that passed
	// validation, whatever its outcome, once the node's state is final and
	// without the fake's lock held; read Node(req.Node) for the outcome. A
	// Rollback is reported as a request from the current version to the
	// restored one with StopKill. Set it before the first Swap.
	OnSwap func(req transport.SwapRequest)
	// OnProvision, when set, is called after every successful Provision
	// with the new node, its role and version, without the fake's lock
	// held. Set it before the first Provision.
	OnProvision func(node string, role transport.Role, version string)
	// OnRetire, when set, is called after every successful Retire, without
	// the fake's lock held. Set it before the first Retire.
	OnRetire func(node string)
	// ProvisionPrefix names provisioned nodes <ProvisionPrefix><n>, n from
	// 1 ("" means "new-"). Set it before the first Provision.
	ProvisionPrefix string

	mu     sync.Mutex
	nodes  map[string]*FakeNode
	prev   map[string]string // version before the last swap, for Rollback
	faults map[string]*fault
	broken map[string]bool
	// missing holds node+"\x00"+version (version "" for every version)
	// of the binaries MissingBinary took away.
	missing map[string]bool
	calls   []Call
	// provisioned counts Provision's new nodes; failProvision fails the
	// next Provision.
	provisioned   int
	failProvision error
}

var (
	_ transport.Transport       = (*Fake)(nil)
	_ transport.Rollbacker      = (*Fake)(nil)
	_ transport.VersionReporter = (*Fake)(nil)
	_ transport.Provisioner     = (*Fake)(nil)
	_ transport.ArtifactChecker = (*Fake)(nil)
)

// NewFake returns a Fake holding nodes, taken as given (use Server and
// Client for running, healthy nodes). If two nodes share a name, the last
// one wins.
func NewFake(nodes ...FakeNode) *Fake {
	f := &Fake{
		nodes:   make(map[string]*FakeNode, len(nodes)),
		prev:    make(map[string]string),
		faults:  make(map[string]*fault),
		broken:  make(map[string]bool),
		missing: make(map[string]bool),
	}
	for _, n := range nodes {
		f.nodes[n.Name] = &n
	}
	return f
}

// Node returns the state of the named node.
func (f *Fake) Node(name string) (FakeNode, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[name]
	if !ok {
		return FakeNode{}, false
	}
	return *n, true
}

// Calls returns a copy of every recorded call, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// FailNext makes the next swap of node return an error wrapping err without
// touching the node. If err is not already a *transport.SwapError it is
// wrapped in one with Phase PhaseStage.
func (f *Fake) FailNext(node string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault(node).fail = err
}

// HangNext makes the next swap of node block until its ctx ends and then
// return a *transport.SwapError (Phase PhaseStop) wrapping ctx.Err(),
// without touching the node.
func (f *Fake) HangNext(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault(node).hang = true
}

// ComeBackOld makes the next swap of node succeed while the restarted agent
// still runs the version it ran before (a binary that was not replaced).
func (f *Fake) ComeBackOld(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault(node).old = true
}

// ComeBackUnhealthy makes the next swap of node succeed with the agent on
// the new version but not healthy.
func (f *Fake) ComeBackUnhealthy(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault(node).unhealthy = true
}

// Broken marks version as one that never comes up: every later swap (or
// rollback) to it stops the agent, fails to start it, leaves the node down
// and returns a *transport.SwapError with Phase PhaseStart (PhaseRollback
// for a rollback) wrapping transport.ErrNotRunning.
func (f *Fake) Broken(version string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.broken[version] = true
}

func (f *Fake) fault(node string) *fault {
	ft, ok := f.faults[node]
	if !ok {
		ft = &fault{}
		f.faults[node] = ft
	}
	return ft
}

// record appends a call and returns its index. Callers hold f.mu.
func (f *Fake) record(c Call) int {
	c.Seq = len(f.calls) + 1
	f.calls = append(f.calls, c)
	return len(f.calls) - 1
}

// Swap implements transport.Transport.
func (f *Fake) Swap(ctx context.Context, req transport.SwapRequest) (err error) {
	f.mu.Lock()
	i := f.record(Call{Op: OpSwap, Node: req.Node, To: req.To, StopMode: req.StopMode})
	reached := false             // the request got past validation
	var phases []transport.Phase // what the swap did, for req.Progress
	defer func() {
		f.mu.Lock()
		f.calls[i].Err = err
		f.mu.Unlock()
		for _, p := range phases {
			req.Report(p) // without the lock held: the callback may look at the fake
		}
		if reached && f.OnSwap != nil {
			f.OnSwap(req)
		}
	}()

	if err := transport.ValidateRequest(req); err != nil {
		f.mu.Unlock()
		return err
	}
	n, ok := f.nodes[req.Node]
	if !ok {
		f.mu.Unlock()
		return &transport.SwapError{Node: req.Node, Phase: transport.PhaseValidate, To: req.To,
			Err: fmt.Errorf("node %q is not in the fake cluster: %w", req.Node, transport.ErrUnknownNode)}
	}
	if err := ctx.Err(); err != nil {
		f.mu.Unlock()
		return &transport.SwapError{Node: req.Node, Phase: transport.PhaseValidate, To: req.To, Err: err}
	}
	if f.binaryMissing(req.Node, req.To) {
		f.mu.Unlock()
		return &transport.SwapError{Node: req.Node, Phase: transport.PhaseStage, To: req.To, Err: f.missingErr(req.Node, req.To)}
	}
	reached = true
	ft := f.faults[req.Node]
	delete(f.faults, req.Node)
	if ft == nil {
		ft = &fault{}
	}

	switch {
	case ft.hang:
		f.mu.Unlock()
		<-ctx.Done()
		return &transport.SwapError{Node: req.Node, Phase: transport.PhaseStop, To: req.To,
			Err: fmt.Errorf("fake: swap hung until the context ended: %w", ctx.Err())}
	case ft.fail != nil:
		f.mu.Unlock()
		if se, ok := ft.fail.(*transport.SwapError); ok {
			return se
		}
		return &transport.SwapError{Node: req.Node, Phase: transport.PhaseStage, To: req.To, Err: ft.fail}
	}
	defer f.mu.Unlock()

	if planner.SameVersion(n.Version, req.To) && n.Running && n.Healthy && !ft.old && !ft.unhealthy {
		return nil // idempotent: already there
	}
	old := n.Version
	f.stop(n, req.StopMode)
	phases = append(phases, transport.PhaseStop)
	f.prev[n.Name] = old
	to := req.To
	if ft.old {
		to = old
	}
	if err := f.start(n, to); err != nil {
		return err
	}
	phases = append(phases, transport.PhaseStart)
	if ft.unhealthy {
		n.Healthy = false
	}
	return nil
}

// stop stops n's agent. Callers hold f.mu.
func (f *Fake) stop(n *FakeNode, mode transport.StopMode) {
	f.record(Call{Op: OpStop, Node: n.Name, StopMode: mode})
	n.Running, n.Healthy = false, false
}

// start starts n's agent on version. Callers hold f.mu.
func (f *Fake) start(n *FakeNode, version string) error {
	n.Version = version
	if f.broken[version] {
		err := &transport.SwapError{Node: n.Name, Phase: transport.PhaseStart, To: version,
			Err: fmt.Errorf("fake: version %s is marked broken: %w", version, transport.ErrNotRunning)}
		f.record(Call{Op: OpStart, Node: n.Name, To: version, Err: err})
		return err
	}
	f.record(Call{Op: OpStart, Node: n.Name, To: version})
	n.Running, n.Healthy = true, true
	n.Incarnation++
	return nil
}

// Rollback implements transport.Rollbacker: it stops the node's agent and
// starts it on the version it ran before its last swap that stopped it.
func (f *Fake) Rollback(ctx context.Context, node string) (err error) {
	f.mu.Lock()
	i := f.record(Call{Op: OpRollback, Node: node})
	var req *transport.SwapRequest
	defer func() {
		f.mu.Lock()
		f.calls[i].Err = err
		f.mu.Unlock()
		if req != nil && f.OnSwap != nil {
			f.OnSwap(*req)
		}
	}()
	defer f.mu.Unlock()

	fail := func(err error) error {
		return &transport.SwapError{Node: node, Phase: transport.PhaseRollback, Err: err}
	}
	if err := transport.ValidateNode(node); err != nil {
		return fail(err)
	}
	n, ok := f.nodes[node]
	if !ok {
		return fail(fmt.Errorf("node %q is not in the fake cluster: %w", node, transport.ErrUnknownNode))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	prev, ok := f.prev[node]
	if !ok {
		return fail(fmt.Errorf("node %s has not been swapped, so there is no earlier version to return to; swap it instead: %w", node, transport.ErrInvalidRequest))
	}
	f.calls[i].To = prev
	req = &transport.SwapRequest{Node: node, Role: n.Role, From: n.Version, To: prev, StopMode: transport.StopKill}
	cur := n.Version
	f.stop(n, transport.StopKill)
	f.prev[node] = cur
	if err := f.start(n, prev); err != nil {
		if se, ok := err.(*transport.SwapError); ok {
			se.Phase = transport.PhaseRollback
		}
		return err
	}
	return nil
}

// RunningVersion implements transport.VersionReporter. It fails with an
// error wrapping transport.ErrNotRunning when the node's agent is down.
func (f *Fake) RunningVersion(ctx context.Context, node string) (v string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.record(Call{Op: OpRunningVersion, Node: node})
	defer func() { f.calls[i].Err = err }()
	if err := transport.ValidateNode(node); err != nil {
		return "", fmt.Errorf("running version of %q: %w", node, err)
	}
	n, ok := f.nodes[node]
	if !ok {
		return "", fmt.Errorf("running version of %s: node is not in the fake cluster: %w", node, transport.ErrUnknownNode)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("running version of %s: %w", node, err)
	}
	if !n.Running {
		return "", fmt.Errorf("running version of %s: agent is down (last version %s): %w", node, n.Version, transport.ErrNotRunning)
	}
	return n.Version, nil
}

// MissingBinary takes away the binary of version on node (every version
// when version is ""): CheckArtifact of it returns a
// *transport.ArtifactError, and a Swap of node to it fails in phase stage
// with that error, touching nothing. It stays in force.
func (f *Fake) MissingBinary(node, version string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.missing[node+"\x00"+version] = true
}

// binaryMissing reports whether MissingBinary took version away from node.
// Callers hold f.mu.
func (f *Fake) binaryMissing(node, version string) bool {
	if f.missing[node+"\x00"] {
		return true
	}
	for k := range f.missing {
		n, v, _ := strings.Cut(k, "\x00")
		if n == node && v != "" && planner.SameVersion(v, version) {
			return true
		}
	}
	return false
}

func (f *Fake) missingErr(node, version string) error {
	return &transport.ArtifactError{Node: node, Version: version, Checked: "the fake's binaries of node " + node,
		Problem: "the binary is missing (MissingBinary)", Fix: "install consul " + version + " on " + node}
}

// CheckArtifact implements transport.ArtifactChecker: it touches nothing
// and returns a *transport.ArtifactError for a binary MissingBinary took
// away, nil otherwise.
func (f *Fake) CheckArtifact(ctx context.Context, node string, role transport.Role, version string) (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.record(Call{Op: OpCheckArtifact, Node: node, To: version})
	defer func() { f.calls[i].Err = err }()
	if err := transport.ValidateCheck(node, role, version); err != nil {
		return err
	}
	n, ok := f.nodes[node]
	if !ok {
		return fmt.Errorf("check consul %s on %s: node is not in the fake cluster: %w", version, node, transport.ErrUnknownNode)
	}
	if role != "" && role != n.Role {
		return fmt.Errorf("check consul %s on %s: the node is a %s, the check says %s: %w", version, node, n.Role, role, transport.ErrInvalidRequest)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("check consul %s on %s: %w", version, node, err)
	}
	if f.binaryMissing(node, version) {
		return f.missingErr(node, version)
	}
	return nil
}
