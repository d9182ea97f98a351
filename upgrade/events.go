package upgrade

import (
	"context"
	"log/slog"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// EventKind names what happened.
type EventKind string

const (
	EventRunStarted    EventKind = "run-started"    // Run validated its config and starts
	EventStepStarted   EventKind = "step-started"   // a step is about to act
	EventGateWaiting   EventKind = "gate-waiting"   // a gate condition does not hold yet (on each change of reason, and every GateWaitingRepeat while it lasts)
	EventStepDone      EventKind = "step-done"      // a step acted and its gate passed
	EventSnapshotSaved EventKind = "snapshot-saved" // a snapshot was saved and verified
	EventNodeSwapped   EventKind = "node-swapped"   // one client of a wave was swapped (Err set if its swap failed); Node names it
	EventNodeStopped   EventKind = "node-stopped"   // a swap stopped Node's old agent (the transport said so, SwapRequest.Progress)
	EventNodeStarted   EventKind = "node-started"   // a swap started Node's agent on the step's To (the transport said so)
	EventProvisioned   EventKind = "provisioned"    // a new server was provisioned (add-server); Step.Node names it
	EventRolledBack    EventKind = "rolled-back"    // a failed node was rolled back and the cluster is healthy again
	EventHalted        EventKind = "halted"         // the run stopped on an error
	EventBackupRecord  EventKind = "backup-record"  // a backup record was found, written or could not be (Err); see BackupRecord
	EventSwapRecord    EventKind = "swap-record"    // a run found the swap record of a run that died and finished that swap (see SwapRecord), or could not delete one (Err)
	EventStopped       EventKind = "stopped"        // the run ended cleanly before a step (BeforeStep said StopHere, or MaxSteps)
	EventDone          EventKind = "done"           // the cluster reached the target
	EventLocked        EventKind = "locked"         // the run took the cluster-wide upgrade lock
	EventUnlocked      EventKind = "unlocked"       // the run gave the lock back (Err set if it could not)
	EventLockMoved     EventKind = "lock-moved"     // the lock moved to a session on Node before a step stopped its node (Err set if it could not)
	EventPlannedOutage EventKind = "planned-outage" // a server is stopped although the voters left up make no quorum: its datacenter's planned outage (its only voter, or no-spare-voter waived); Detail says until when it has no leader
)

// EventAbilityMissing reports, at the start of a run, a Consul of the run
// that lacks an optional interface the run would use: Detail says which,
// what the run does without it, and how to keep it (Intercept).
const EventAbilityMissing EventKind = "ability-missing"

// Event is one thing a run reports, delivered synchronously through
// Config.OnEvent in the order it happened.
type Event struct {
	Kind EventKind
	Time time.Time
	// Step is the step concerned (zero for run-started and done).
	Step planner.Step
	// Index and Total place Step in the run (see StepInfo); Total is 0
	// when the event is not about a step.
	Index, Total int
	// Node is the node concerned when it is not the step's own: a client
	// of a wave (node-swapped), or the node a gate waits on.
	Node string
	// Condition is the gate condition concerned (gate-waiting, and halted
	// on a gate error).
	Condition planner.GateCheck
	// Era is the API era whose checks a gate applied (gate-waiting,
	// step-done).
	Era Era
	// Waited is how long the step's gate has waited so far (gate-waiting).
	Waited time.Duration
	// Detail says what was observed, in words.
	Detail string
	// Err is the error (halted, and rolled-back when the rollback failed).
	Err error
}

// emitter delivers events to the callback and the logger.
type emitter struct {
	on  func(Event)
	log *slog.Logger
}

// emit delivers ev to the callback, then logs it with the caller's ctx:
// the message is the event kind and its detail; the attributes are event,
// step (the step's one-line form), step_index and step_total (1-based
// index, when the event is about a step), node, condition, era and err
// (the error value itself, at level error).
func (e emitter) emit(ctx context.Context, ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if e.on != nil {
		e.on(ev)
	}
	if e.log == nil {
		return
	}
	level := slog.LevelInfo
	if ev.Err != nil {
		level = slog.LevelError
	}
	if !e.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{slog.String("event", string(ev.Kind))}
	if ev.Step.Kind != "" {
		attrs = append(attrs, slog.String("step", ev.Step.String()))
	}
	if ev.Total > 0 {
		attrs = append(attrs, slog.Int("step_index", ev.Index+1), slog.Int("step_total", ev.Total))
	}
	node := ev.Node
	if node == "" {
		node = ev.Step.Node
	}
	if node != "" {
		attrs = append(attrs, slog.String("node", node))
	}
	if ev.Condition != "" {
		attrs = append(attrs, slog.String("condition", string(ev.Condition)))
	}
	if ev.Era != "" {
		attrs = append(attrs, slog.String("era", string(ev.Era)))
	}
	if ev.Waited > 0 {
		attrs = append(attrs, slog.Duration("waited", ev.Waited))
	}
	if ev.Err != nil {
		attrs = append(attrs, slog.Any("err", ev.Err))
	}
	msg := string(ev.Kind)
	if ev.Detail != "" {
		msg += ": " + ev.Detail
	}
	e.log.LogAttrs(ctx, level, msg, attrs...)
}
