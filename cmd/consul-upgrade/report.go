package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// reporter prints apply's progress: lines for a person, or one JSON object
// per line for a machine.
type reporter struct {
	mu    sync.Mutex
	w     io.Writer
	json  bool
	total int
	index int  // plan index of the step under way (or about to be)
	known bool // index was told by the run (an event or BeforeStep)
	steps []planner.Step
	stab  time.Duration // the servers' stabilization time (0: unknown)

	start      time.Time
	paused     time.Duration // spent at the approval prompt
	pauseStart time.Time     // non-zero while at the prompt
	stepStart  time.Time     // zero when no step is under way
	started    int           // plan index of the last step started (-1: none)
	done       int           // plan index of the last step done (-1: none)
	doneCount  int
	waitCond   planner.GateCheck
	waitSince  time.Time
	gateSince  time.Time // with no step under way: when the gate being waited on began
	kindTimes  map[planner.StepKind][]time.Duration
}

// newReporter reports a run of plan's steps; stab is the servers'
// stabilization time (for the estimate; 0 when unknown).
func newReporter(w io.Writer, asJSON bool, steps []planner.Step, stab time.Duration) *reporter {
	return &reporter{w: w, json: asJSON, total: len(steps), steps: steps, stab: stab, start: time.Now(),
		started: -1, done: -1, kindTimes: map[planner.StepKind][]time.Duration{}}
}

// jsonEvent is one line of -output json.
type jsonEvent struct {
	Time      time.Time     `json:"time"`
	Event     string        `json:"event"`
	Index     int           `json:"step_index"` // 1-based, 0 when no step
	Total     int           `json:"steps"`
	Step      *planner.Step `json:"step,omitempty"`
	Node      string        `json:"node,omitempty"`
	Result    string        `json:"result,omitempty"`
	Condition string        `json:"condition,omitempty"`
	WaitedS   float64       `json:"waited_s,omitempty"`
	Detail    string        `json:"detail,omitempty"`
	Error     string        `json:"error,omitempty"`
	From      string        `json:"from,omitempty"`       // agent-switched: the agent given up
	To        string        `json:"to,omitempty"`         // agent-switched: the agent in use now
	DC        string        `json:"datacenter,omitempty"` // agent-switched: the -dc datacenter ("" for -http-addr's)
	ElapsedS  float64       `json:"elapsed_s"`            // since apply started, less the time at the approval prompt
	EstLeftS  float64       `json:"estimate_left_s,omitempty"`

	// The last event of a run (done, stopped, or how it failed):
	ErrorType string           `json:"error_type,omitempty"`
	CauseType string           `json:"cause_type,omitempty"`
	ExitCode  *int             `json:"exit_code,omitempty"`
	StepsDone *int             `json:"steps_done,omitempty"` // steps this run carried out
	Touched   *upgrade.Touched `json:"touched,omitempty"`    // what the run touched ([] for nothing)
	Next      []string         `json:"next_commands,omitempty"`
}

func (r *reporter) emit(ev jsonEvent) {
	ev.Total = r.total
	ev.ElapsedS = r.elapsed().Seconds()
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	data, _ := json.Marshal(ev)
	r.w.Write(append(data, '\n'))
}

// elapsed is the time since apply started, less the time spent at the
// approval prompt.
func (r *reporter) elapsed() time.Duration {
	d := time.Since(r.start) - r.paused
	if !r.pauseStart.IsZero() {
		d -= time.Since(r.pauseStart)
	}
	return d
}

// prompting marks the time at the approval prompt (on: it begins), which
// elapsed times leave out.
func (r *reporter) prompting(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case on && r.pauseStart.IsZero():
		r.pauseStart = time.Now()
	case !on && !r.pauseStart.IsZero():
		r.paused += time.Since(r.pauseStart)
		r.pauseStart = time.Time{}
	}
}

// estimate is what the steps after the current one should take: per step,
// the mean time of the steps of its kind done so far in this run, else
// what it is known to wait at least: a server swap or an added server, the
// servers' stabilization time, which its gate waits out (stabFloors
// counts those); a step of another kind not seen yet counts 0 (unknown
// counts those; a snapshot is taken as quick).
func (r *reporter) estimate() (left time.Duration, stabFloors, unknown int) {
	if r.index+1 >= len(r.steps) {
		return 0, 0, 0
	}
	for _, s := range r.steps[r.index+1:] {
		if ts := r.kindTimes[s.Kind]; len(ts) > 0 {
			var sum time.Duration
			for _, d := range ts {
				sum += d
			}
			left += sum / time.Duration(len(ts))
			continue
		}
		switch s.Kind {
		case planner.StepSwapServer, planner.StepAddServer:
			left += r.stab
			stabFloors++
		case planner.StepSnapshot:
		default:
			unknown++
		}
	}
	return left, stabFloors, unknown
}

// estimateText says what is left after the current step ("" when nothing).
func (r *reporter) estimateText() string {
	n := r.total - r.index - 1
	if n <= 0 || len(r.steps) == 0 {
		return ""
	}
	left, floors, unknown := r.estimate()
	if floors == 0 && unknown == 0 {
		return fmt.Sprintf("; about %s left for %d step(s)", durationText(left), n)
	}
	if left == 0 {
		return fmt.Sprintf("; %d step(s) left, of a kind not timed yet", n)
	}
	var why []string
	if floors > 0 {
		why = append(why, fmt.Sprintf("%d server swap(s) counted at their %s of stabilization", floors, durationText(r.stab)))
	}
	if unknown > 0 {
		why = append(why, fmt.Sprintf("%d step(s) of a kind not timed yet counted at 0", unknown))
	}
	return fmt.Sprintf("; at least %s left for %d step(s): %s", durationText(left), n, strings.Join(why, "; "))
}

// switched reports that a failover Consul moved to another agent (several
// addresses in -http-addr or -dc).
func (r *reporter) switched(s agentSwitch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(jsonEvent{Event: "agent-switched", From: s.From, To: s.To, DC: s.DC, Detail: s.text()})
		return
	}
	fmt.Fprintf(r.w, "    agent-switched: %s\n", s.text())
}

func (r *reporter) setIndex(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index, r.known = i, true
}

// intoStep says how far into the step under way now is: from its start,
// or, for a gate no step-started event opened (a swap an earlier run left
// unfinished, gated before the plan), from the gate's own start.
func (r *reporter) intoStep(now time.Time, ev upgrade.Event) string {
	if !r.stepStart.IsZero() {
		return durationText(now.Sub(r.stepStart)) + " into the step"
	}
	return durationText(ev.Waited) + " into its gate"
}

func (r *reporter) event(ev upgrade.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Total > 0 {
		r.index, r.total, r.known = ev.Index, ev.Total, true
	}
	now := ev.Time
	if now.IsZero() {
		now = time.Now()
	}
	i := 0 // no step known yet
	if r.known {
		i = r.index + 1
	}
	step := ev.Step
	switch ev.Kind {
	case upgrade.EventStepStarted:
		r.stepStart, r.waitCond, r.started = now, "", r.index
		if r.json {
			r.emit(jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Step: &step, Node: step.Node, Detail: step.Reason})
			return
		}
		fmt.Fprintf(r.w, "[%s] step %d of %d: %s\n", durationText(r.elapsed()), i, r.total, stepText(step))
		if len(step.Gate) > 0 {
			fmt.Fprintf(r.w, "    gate: %s\n", joinGate(step.Gate))
		}
	case upgrade.EventNodeStopped, upgrade.EventNodeStarted:
		if r.json {
			r.emit(jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Node: ev.Node, Detail: ev.Detail})
			return
		}
		what := "stopped (" + string(step.StopMode) + ")"
		if ev.Kind == upgrade.EventNodeStarted {
			what = "started on " + step.To
		}
		fmt.Fprintf(r.w, "    %s %s, %s\n", ev.Node, what, r.intoStep(now, ev))
	case upgrade.EventGateWaiting:
		if ev.Condition != r.waitCond {
			r.waitCond, r.waitSince = ev.Condition, now
		}
		if r.stepStart.IsZero() && r.gateSince.IsZero() && ev.Waited > 0 {
			r.gateSince = now.Add(-ev.Waited)
		}
		if r.json {
			waited := ev.Waited
			if !r.stepStart.IsZero() {
				waited = now.Sub(r.stepStart)
			}
			r.emit(jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Node: gateNode(step), Condition: string(ev.Condition), WaitedS: waited.Seconds(), Detail: ev.Detail})
			return
		}
		if ev.Condition == "" { // not a gate: the run looks at the cluster again after a step
			fmt.Fprintf(r.w, "    waiting after %s: %s\n", stepText(step), ev.Detail)
			return
		}
		fmt.Fprintf(r.w, "    waiting on %s for %s (%s): %s\n", ev.Condition, gateNode(step), r.intoStep(now, ev), ev.Detail)
	case upgrade.EventNodeSwapped:
		if r.json {
			jev := jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Node: ev.Node, Result: "swapped to " + step.To, Detail: ev.Detail}
			if ev.Err != nil {
				jev.Result, jev.Error = "failed", ev.Err.Error()
			}
			r.emit(jev)
			return
		}
		if ev.Err != nil {
			fmt.Fprintf(r.w, "    %-20s FAILED: %v\n", ev.Node, ev.Err)
		} else {
			fmt.Fprintf(r.w, "    %-20s swapped to %s (%s into the wave)\n", ev.Node, step.To, durationText(now.Sub(r.stepStart)))
		}
	case upgrade.EventSnapshotSaved, upgrade.EventProvisioned, upgrade.EventRolledBack, upgrade.EventLocked, upgrade.EventUnlocked, upgrade.EventBackupRecord, upgrade.EventSwapRecord, upgrade.EventLockMoved, upgrade.EventPlannedOutage, upgrade.EventPreflight:
		if r.json {
			jev := jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Detail: ev.Detail}
			if ev.Err != nil {
				jev.Error = ev.Err.Error()
			}
			r.emit(jev)
			return
		}
		if ev.Kind == upgrade.EventUnlocked && ev.Err == nil {
			return // the end of the run says it
		}
		fmt.Fprintf(r.w, "    %s: %s", ev.Kind, ev.Detail)
		if ev.Err != nil && !strings.Contains(ev.Detail, ev.Err.Error()) { // a detail may quote its error already
			fmt.Fprintf(r.w, " (%v)", ev.Err)
		}
		fmt.Fprintln(r.w)
	case upgrade.EventStepDone:
		if r.stepStart.IsZero() {
			// A gate no step opened: the swap an earlier run left
			// unfinished, gated before this run plans. Not a step of
			// the plan carried out here.
			took := time.Duration(0)
			if !r.gateSince.IsZero() {
				took = now.Sub(r.gateSince)
			}
			r.gateSince = time.Time{}
			if r.json {
				r.emit(jsonEvent{Time: now, Event: string(ev.Kind), Step: &step, Node: step.Node, WaitedS: took.Seconds(), Detail: ev.Detail})
				return
			}
			fmt.Fprintf(r.w, "    the gate of %s passed in %s: the swap an earlier run left unfinished is done\n", stepText(step), durationText(took))
			return
		}
		took := now.Sub(r.stepStart)
		r.kindTimes[step.Kind] = append(r.kindTimes[step.Kind], took)
		r.stepStart, r.done = time.Time{}, r.index
		r.doneCount++
		if r.json {
			left, _, _ := r.estimate()
			r.emit(jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Step: &step, Node: step.Node, WaitedS: took.Seconds(), Detail: ev.Detail, EstLeftS: left.Seconds()})
			return
		}
		fmt.Fprintf(r.w, "    done in %s (elapsed %s%s)\n", durationText(took), durationText(r.elapsed()), r.estimateText())
	case upgrade.EventDone, upgrade.EventStopped, upgrade.EventRunStarted, upgrade.EventHalted:
		// apply reports how the run ended (finished, stopped, halted,
		// diverged), with the record, in one last line or object.
	}
}

func gateNode(s planner.Step) string {
	switch {
	case s.Kind == planner.StepTransferLeader:
		return s.Target
	case s.Node != "":
		return s.Node
	case len(s.Nodes) > 0:
		return preview(s.Nodes, 3)
	}
	return "the cluster"
}

func joinGate(g []planner.GateCheck) string {
	s := make([]string, len(g))
	for i, c := range g {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// place says where in the plan the run stopped: at the step under way,
// after the last step it carried out, or before the step it was about to
// take.
func (r *reporter) place() string {
	switch {
	case r.started >= 0 && r.started != r.done:
		return fmt.Sprintf("at step %d of %d", r.started+1, r.total)
	case r.known && r.index > r.done:
		return fmt.Sprintf("before step %d of %d", r.index+1, r.total)
	case r.done >= 0:
		return fmt.Sprintf("after step %d of %d", r.done+1, r.total)
	}
	return "before its first step"
}

// finished reports a run that reached the target.
func (r *reporter) finished(target string, res *upgrade.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(r.last(jsonEvent{Event: "done", Detail: "every agent runs " + target}, exitOK, res))
		return
	}
	fmt.Fprintf(r.w, "Done: every agent runs %s (elapsed %s; %d step(s) carried out by this run).\n", target, durationText(r.elapsed()), r.doneCount)
}

// stopped reports a run that ended cleanly before the target (apply -step,
// or an answer no): what is next, and the command that goes on.
func (r *reporter) stopped(res *upgrade.Result, code int, why string, next []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		ev := r.last(jsonEvent{Event: "stopped", Detail: why}, code, res)
		ev.Next = next
		if len(res.Remaining) > 0 {
			s := res.Remaining[0]
			ev.Step, ev.Index = &s, r.total-len(res.Remaining)+1
		}
		r.emit(ev)
		return
	}
	fmt.Fprintln(r.w, why)
	for _, c := range next {
		fmt.Fprintf(r.w, "  %s\n", c)
	}
}

// ended reports a run that stopped on err: where, what it touched (the
// record decides what is said and the exit code), and what to run next.
func (r *reporter) ended(err error, res *upgrade.Result, next []string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	end, code := judge(err, res.Touched)
	if r.json {
		ev := r.last(jsonEvent{Event: end, Error: err.Error(), ErrorType: errorType(err), CauseType: causeType(err)}, code, res)
		ev.Next = next
		var he *upgrade.HaltError
		var sr *upgrade.StepRefusedError
		switch {
		case errors.As(err, &he):
			s := he.Step
			ev.Step = &s
		case errors.As(err, &sr) && sr.Step.Kind != "":
			s := sr.Step
			ev.Step = &s
		}
		r.emit(ev)
		return code
	}
	verb := map[string]string{endHalted: "Halted", endInterrupted: "Interrupted", endUsage: "Refused", endRefused: "Refused", endDiverged: "Diverged"}[end]
	fmt.Fprintf(r.w, "%s %s (elapsed %s; %d step(s) carried out by this run).\n", verb, r.place(), durationText(r.elapsed()), r.doneCount)
	if len(res.Touched) == 0 {
		fmt.Fprintln(r.w, "Nothing in the cluster was touched by this run.")
	} else {
		fmt.Fprintln(r.w, "This run touched:")
		for _, t := range res.Touched {
			fmt.Fprintf(r.w, "  %s\n", t)
		}
		if down := res.Touched.Down(); len(down) > 0 {
			fmt.Fprintf(r.w, "Left down: %s. Look at it first; the next apply finishes the swap its swap record holds (consul-upgrade status shows it).\n", strings.Join(down, ", "))
		}
	}
	for _, c := range next {
		fmt.Fprintf(r.w, "  %s\n", c)
	}
	return code
}

// last fills the fields of a run's last JSON event.
func (r *reporter) last(ev jsonEvent, code int, res *upgrade.Result) jsonEvent {
	touched := res.Touched
	if touched == nil {
		touched = upgrade.Touched{}
	}
	n := r.doneCount
	ev.ExitCode, ev.StepsDone, ev.Touched = &code, &n, &touched
	if ev.Index == 0 && r.known {
		ev.Index = r.index + 1
	}
	return ev
}
