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
	EventGateWaiting   EventKind = "gate-waiting"   // a gate condition does not hold yet (once per change of reason)
	EventStepDone      EventKind = "step-done"      // a step acted and its gate passed
	EventSnapshotSaved EventKind = "snapshot-saved" // a snapshot was saved and verified
	EventProvisioned   EventKind = "provisioned"    // a new server was provisioned (add-server); Step.Node names it
	EventRolledBack    EventKind = "rolled-back"    // a failed node was rolled back and the cluster is healthy again
	EventHalted        EventKind = "halted"         // the run stopped on an error
	EventBackupRecord  EventKind = "backup-record"  // a backup record was found, written or could not be (Err); see BackupRecord
	EventStopped       EventKind = "stopped"        // the run ended cleanly before a step (BeforeStep said skip, or MaxSteps)
	EventDone          EventKind = "done"           // the cluster reached the target
	EventLocked        EventKind = "locked"         // the run took the cluster-wide upgrade lock
	EventUnlocked      EventKind = "unlocked"       // the run gave the lock back (Err set if it could not)
)

// Event is one thing the runner reports, delivered synchronously through
// Config.OnEvent in the order it happened.
type Event struct {
	Kind EventKind
	Time time.Time
	// Step is the step concerned (zero for run-started and done).
	Step planner.Step
	// Index and Total place Step in the run (see StepInfo); Total is 0
	// when the event is not about a step.
	Index, Total int
	// Condition is the gate condition concerned (gate-waiting, and halted
	// on a gate error).
	Condition planner.GateCheck
	// Era is the API era whose checks a gate applied (gate-waiting,
	// step-done).
	Era Era
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

func (e emitter) emit(ctx context.Context, ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if e.on != nil {
		e.on(ev)
	}
	if e.log != nil {
		attrs := []slog.Attr{slog.String("event", string(ev.Kind))}
		if ev.Step.Kind != "" {
			attrs = append(attrs, slog.String("step", stepString(ev.Step)))
		}
		if ev.Condition != "" {
			attrs = append(attrs, slog.String("condition", string(ev.Condition)))
		}
		if ev.Era != "" {
			attrs = append(attrs, slog.String("era", string(ev.Era)))
		}
		if ev.Detail != "" {
			attrs = append(attrs, slog.String("detail", ev.Detail))
		}
		level := slog.LevelInfo
		if ev.Err != nil {
			attrs = append(attrs, slog.String("err", ev.Err.Error()))
			level = slog.LevelError
		}
		e.log.LogAttrs(ctx, level, "consul upgrade", attrs...)
	}
}
