package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// NodeTouch is what one run did to one node, and how far it got. Run keeps
// one for every node it changed or may have changed, in the order it acted
// (Result.Touched); a *HaltError and an *AbortedError carry the same record
// (their Touched), so an error alone says what was touched. A run refused
// or halted before it acted has an empty record: it changed nothing in the
// cluster (a snapshot step reads the cluster and is not a touch; its
// record is Result.Steps).
//
// Per step kind:
//
//   - swap-server, swap-clients: Stopped once the old agent was stopped,
//     Started once the agent on To was started (from the transport's
//     SwapRequest.Progress, else from its *transport.SwapError's Phase);
//     Gated once the step's gate passed;
//   - transfer-leader: Node is the old leader and Target the server asked
//     to lead; nothing is stopped or started; Gated once the gate passed;
//   - add-server: Node is the new server, Started once it was provisioned;
//   - retire-server: Stopped once it was asked to leave and retire.
//
// A swap that failed where the transport cannot tell whether it stopped
// the node (an exec swap command, an error without a phase, a failed stop)
// counts as Stopped with StopUncertain set: the node may be down.
//
// It marshals to JSON (the CLI's -output json prints it).
type NodeTouch struct {
	Node       string           `json:"node"`
	Datacenter string           `json:"datacenter,omitempty"`
	Role       transport.Role   `json:"role"`
	Step       planner.StepKind `json:"step"`
	// Index is the step's 0-based place (StepInfo.Index): in the approved
	// plan when the run follows one.
	Index int    `json:"index"`
	From  string `json:"from,omitempty"`
	To    string `json:"to,omitempty"`
	// Target is the server leadership was handed to (transfer-leader).
	Target string `json:"target,omitempty"`

	// Resumed: the node's swap was an earlier run's (a swap record); this
	// run gated it and, the gate failing under Config.Rollback, rolled it
	// back. Stopped is set as the rollback stops it (uncertain when the
	// rollback failed); Started stays false: the rollback's outcome is in
	// Rollback.
	Resumed       bool `json:"resumed,omitempty"`
	Stopped       bool `json:"stopped"`
	StopUncertain bool `json:"stop_uncertain,omitempty"`
	Started       bool `json:"started"`
	Gated         bool `json:"gated"`
	// Rollback is set when the run tried to put the node back (or
	// decided it must not): Config.Rollback after a failed act or gate.
	Rollback *RollbackOutcome `json:"rollback,omitempty"`
	// Err says why the node's act or gate failed ("" when it did not).
	Err string `json:"error,omitempty"`
}

// RollbackResult is how a rollback of one node ended.
type RollbackResult string

const (
	// RollbackDone: the node is back on its old binary and the cluster
	// was seen healthy again.
	RollbackDone RollbackResult = "done"
	// RollbackUnhealthy: the transport put the node back, but the cluster
	// was not seen healthy around it in time.
	RollbackUnhealthy RollbackResult = "unhealthy"
	// RollbackFailed: the transport's rollback failed; the node is as the
	// error says.
	RollbackFailed RollbackResult = "failed"
	// RollbackRefused: not attempted, because stopping the node again
	// would leave the other voters without a quorum
	// (*QuorumError).
	RollbackRefused RollbackResult = "refused"
	// RollbackNotTried: not attempted, because the rollback of another
	// node of the step failed first.
	RollbackNotTried RollbackResult = "not-tried"
)

// RollbackOutcome is the outcome of a rollback of one node.
type RollbackOutcome struct {
	Result RollbackResult `json:"result"`
	Err    string         `json:"error,omitempty"`
}

// Down reports whether the node may be left down by the run: stopped (or
// maybe stopped) and neither started again nor rolled back.
func (t NodeTouch) Down() bool {
	if t.Rollback != nil && (t.Rollback.Result == RollbackDone || t.Rollback.Result == RollbackUnhealthy) {
		return false
	}
	return t.Stopped && !t.Started && t.Step != planner.StepRetireServer
}

// String says in words what happened to the node, e.g. "s2 (swap-server
// 1.12.9 -> 1.13.9): stopped, started on 1.13.9, failed: gate after ...;
// rolled back, and the cluster is healthy again".
func (t NodeTouch) String() string { return t.text(true) }

// text is String, with the node's error or without it (a halt's message
// gives the error once).
func (t NodeTouch) text(withErr bool) string {
	var b strings.Builder
	b.WriteString(t.Node)
	b.WriteString(" (" + string(t.Step))
	switch {
	case t.Step == planner.StepTransferLeader:
		b.WriteString(" to " + orUnknown(t.Target))
	case t.From != "" || t.To != "":
		fmt.Fprintf(&b, " %s -> %s", orUnknown(t.From), t.To)
	}
	b.WriteString("): ")
	var did []string
	switch t.Step {
	case planner.StepTransferLeader:
		did = append(did, "leadership transfer asked for")
	case planner.StepAddServer:
		if t.Started {
			did = append(did, "provisioned on "+t.To)
		}
	case planner.StepRetireServer:
		did = append(did, "retired")
	case planner.StepSwapServer, planner.StepSwapClients:
		if t.Resumed {
			did = append(did, "swapped by an earlier run")
			if t.Stopped {
				did = append(did, "stopped by this run's rollback")
			}
			break
		}
		fallthrough
	default:
		switch {
		case t.Stopped && t.StopUncertain:
			did = append(did, "may have been stopped (the transport cannot tell)")
		case t.Stopped:
			did = append(did, "stopped")
		}
		switch {
		case t.Started:
			did = append(did, "started on "+t.To)
		case t.Stopped:
			did = append(did, "not started again")
		}
	}
	switch {
	case t.Gated:
		did = append(did, "gate passed")
	case t.Err != "" && withErr:
		did = append(did, "failed: "+t.Err)
	case t.Err != "":
		did = append(did, "failed")
	default:
		did = append(did, "gate not passed")
	}
	b.WriteString(strings.Join(did, ", "))
	if r := t.Rollback; r != nil {
		switch r.Result {
		case RollbackDone:
			b.WriteString("; rolled back, and the cluster is healthy again")
		case RollbackUnhealthy:
			b.WriteString("; rolled back, but the cluster was not seen healthy")
		case RollbackFailed:
			b.WriteString("; rollback failed")
		case RollbackRefused:
			b.WriteString("; not rolled back (it would cost the quorum)")
		case RollbackNotTried:
			b.WriteString("; not rolled back (another node's rollback failed first)")
		}
		if r.Err != "" && withErr {
			b.WriteString(": " + r.Err)
		}
	}
	return b.String()
}

// Touched is the record of the nodes a run touched (see NodeTouch).
type Touched []NodeTouch

// Nodes lists the names of the nodes touched, each once, in order.
func (ts Touched) Nodes() []string {
	var out []string
	for _, t := range ts {
		if !slices.Contains(out, t.Node) {
			out = append(out, t.Node)
		}
	}
	return out
}

// Down lists the nodes the run may have left down (NodeTouch.Down).
func (ts Touched) Down() []string {
	var out []string
	for _, t := range ts {
		if t.Down() && !slices.Contains(out, t.Node) {
			out = append(out, t.Node)
		}
	}
	return out
}

// String is "nothing was touched", or each touch in words, separated by
// "; ".
func (ts Touched) String() string {
	if len(ts) == 0 {
		return "nothing was touched"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, "; ")
}

// Summary is String without the errors: what happened to each node, the
// way a halt's message ends.
func (ts Touched) Summary() string {
	if len(ts) == 0 {
		return "nothing was touched"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.text(false)
	}
	return strings.Join(parts, "; ")
}

// TouchedBy returns the record an error of Run or a Session carries (the
// Touched of a *HaltError, a *StepRefusedError or an *AbortedError), and
// whether it carries one. Every other error of Run, Open, Next and Execute
// is returned before anything was touched.
func TouchedBy(err error) (Touched, bool) {
	var h *HaltError
	if errors.As(err, &h) {
		return h.Touched, true
	}
	var sr *StepRefusedError
	if errors.As(err, &sr) {
		return sr.Touched, true
	}
	var a *AbortedError
	if errors.As(err, &a) {
		return a.Touched, true
	}
	return nil, false
}

// touchLog is the runner's record of touches, safe for the concurrent
// swaps of a client wave.
type touchLog struct {
	mu   sync.Mutex
	list Touched
	from int // the first entry of the step under way
}

// snapshot returns a copy of the record.
func (l *touchLog) snapshot() Touched {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(Touched, len(l.list))
	for i, t := range l.list {
		if t.Rollback != nil {
			rb := *t.Rollback
			t.Rollback = &rb
		}
		out[i] = t
	}
	return out
}

// beginStep marks the start of a step: later lookups by node find only
// this step's entries.
func (l *touchLog) beginStep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.from = len(l.list)
}

// update calls fn on node's entry of the step under way, if it has one.
func (l *touchLog) update(node string, fn func(t *NodeTouch)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.list) - 1; i >= l.from; i-- {
		if l.list[i].Node == node {
			fn(&l.list[i])
			return
		}
	}
}

// add appends t to the record.
func (l *touchLog) add(t NodeTouch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, t)
}

// has reports whether node was touched in the step under way.
func (l *touchLog) has(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.list) - 1; i >= l.from; i-- {
		if l.list[i].Node == node {
			return true
		}
	}
	return false
}

// stepTouched reports whether the step under way touched any node.
func (l *touchLog) stepTouched() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.list) > l.from
}

// eachOfStep calls fn on every entry of the step under way.
func (l *touchLog) eachOfStep(fn func(t *NodeTouch)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := l.from; i < len(l.list); i++ {
		fn(&l.list[i])
	}
}

// newTouch is the entry of node for step at index idx.
func newTouch(step planner.Step, idx int, node string, role transport.Role, from string) NodeTouch {
	return NodeTouch{Node: node, Datacenter: step.Datacenter, Role: role, Step: step.Kind, Index: idx, From: from, To: step.To, Target: step.Target}
}

// swapProgress is the SwapRequest.Progress of a swap of node in step: it
// records the phase (adding the node to the record at its stop) and
// reports it as a node-stopped or node-started event. mu, when not nil,
// serializes the events with the others of a client wave.
func (r *runner) swapProgress(ctx context.Context, step planner.Step, node string, role transport.Role, from string, mu sync.Locker) func(transport.Phase) {
	return func(p transport.Phase) {
		var ev Event
		switch p {
		case transport.PhaseStop:
			if !r.touch.has(node) {
				r.touch.add(newTouch(step, r.idx, node, role, from))
			}
			r.touch.update(node, func(t *NodeTouch) { t.Stopped, t.StopUncertain = true, false })
			ev = Event{Kind: EventNodeStopped, Step: step, Node: node, Detail: fmt.Sprintf("%s %s stopped (%s); its old agent on %s no longer runs", role, node, step.StopMode, orUnknown(from))}
		case transport.PhaseStart:
			if !r.touch.has(node) {
				r.touch.add(newTouch(step, r.idx, node, role, from))
			}
			r.touch.update(node, func(t *NodeTouch) { t.Started = true })
			ev = Event{Kind: EventNodeStarted, Step: step, Node: node, Detail: fmt.Sprintf("%s %s started on %s", role, node, step.To)}
		default:
			return
		}
		if mu != nil {
			mu.Lock()
			defer mu.Unlock()
		}
		r.emit(ctx, ev)
	}
}

// swapDone records what the transport's answer says about a swap of node:
// a nil error means the node runs the new version (stopped and started,
// whatever the transport reported); an error in phase validate or stage
// touched nothing; any other error may have stopped the node (uncertain
// unless the transport reported the stop).
func (r *runner) swapDone(step planner.Step, node string, role transport.Role, from string, err error) {
	var se *transport.SwapError
	untouched := errors.As(err, &se) && (se.Phase == transport.PhaseValidate || se.Phase == transport.PhaseStage)
	if !r.touch.has(node) {
		if err != nil && untouched {
			return
		}
		t := newTouch(step, r.idx, node, role, from)
		t.Stopped, t.StopUncertain = true, true
		r.touch.add(t)
	}
	r.touch.update(node, func(t *NodeTouch) {
		if err == nil {
			t.Stopped, t.Started = true, true
			return
		}
		t.Err = err.Error()
	})
}

// touchedBySwap reports whether the failed swap of node may have changed
// it (so a rollback is due).
func (r *runner) touchedBySwap(node string) bool { return r.touch.has(node) }

// gated records that the step under way passed its gate, or (err) that it
// did not: the node the gate failed on (every node of the step, for a
// cluster-wide condition) gets the error.
func (r *runner) gated(err error) {
	node := ""
	var ge *GateError
	if errors.As(err, &ge) {
		node = ge.Node
	}
	if err == nil {
		r.touch.eachOfStep(func(t *NodeTouch) {
			if t.Step != planner.StepRetireServer || t.Stopped {
				t.Gated = true
			}
		})
		return
	}
	r.touch.eachOfStep(func(t *NodeTouch) {
		if t.Err == "" && (node == "" || t.Node == node) {
			t.Err = err.Error()
		}
	})
}

// rollbackNode asks the transport to roll node back and records the
// transport's answer (the outcome is settled by rolledBack). A node this
// run did not swap (the swap an earlier run left, whose gate failed here:
// cause) enters the record now, as Resumed: the rollback stops it.
func (r *runner) rollbackNode(ctx context.Context, rb transport.Rollbacker, step planner.Step, node string, cause error) error {
	if !r.touch.has(node) {
		role := transport.RoleClient
		if step.Kind == planner.StepSwapServer {
			role = transport.RoleServer
		}
		t := newTouch(step, r.idx, node, role, step.From)
		t.Resumed = true
		if cause != nil {
			t.Err = cause.Error()
		}
		r.touch.add(t)
	}
	err := rb.Rollback(ctx, node)
	r.touch.update(node, func(t *NodeTouch) {
		if t.Resumed {
			t.Stopped, t.StopUncertain = true, err != nil
		}
	})
	out := &RollbackOutcome{Result: RollbackUnhealthy} // until the cluster is seen healthy
	if err != nil {
		out = &RollbackOutcome{Result: RollbackFailed, Err: err.Error()}
	}
	r.touch.update(node, func(t *NodeTouch) { t.Rollback = out })
	return err
}

// rolledBack settles the rollback outcomes of the step under way from the
// halt fail built: every node rolled back and gated is done; a refused
// rollback is recorded on its node; a node the rollback never reached
// (another failed first) is not-tried. A new server of an add-server step
// is rolled back by retiring it again (failAdd).
func (r *runner) rolledBack(h *HaltError, failed []string) {
	if h == nil || !r.cfg.Rollback {
		return
	}
	if h.Step.Kind == planner.StepAddServer && h.Step.Node != "" {
		r.touch.update(h.Step.Node, func(t *NodeTouch) {
			switch {
			case h.RolledBack:
				t.Rollback = &RollbackOutcome{Result: RollbackDone}
			case h.RollbackErr != nil:
				t.Rollback = &RollbackOutcome{Result: RollbackFailed, Err: h.RollbackErr.Error()}
			}
		})
		return
	}
	var refused *QuorumError
	isRefused := errors.As(h.RollbackErr, &refused)
	for _, node := range failed {
		r.touch.update(node, func(t *NodeTouch) {
			switch {
			case h.RolledBack && slices.Contains(h.RolledBackNodes, node):
				t.Rollback = &RollbackOutcome{Result: RollbackDone}
			case t.Rollback != nil && t.Rollback.Result == RollbackUnhealthy && h.RollbackErr != nil:
				t.Rollback.Err = h.RollbackErr.Error()
			case t.Rollback != nil:
			case isRefused:
				t.Rollback = &RollbackOutcome{Result: RollbackRefused, Err: h.RollbackErr.Error()}
			case h.RollbackErr != nil:
				t.Rollback = &RollbackOutcome{Result: RollbackNotTried}
			}
		})
	}
}

// fillTouched puts the record into a halt, a refused step or an abort.
func (r *runner) fillTouched(err error) {
	var h *HaltError
	if errors.As(err, &h) {
		h.Touched = r.touch.snapshot()
	}
	var sr *StepRefusedError
	if errors.As(err, &sr) {
		sr.Touched = r.touch.snapshot()
	}
	var a *AbortedError
	if errors.As(err, &a) {
		a.Touched = r.touch.snapshot()
	}
}
