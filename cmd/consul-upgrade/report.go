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
	index int // plan index of the step under way

	start     time.Time
	stepStart time.Time
	waitCond  planner.GateCheck
	waitSince time.Time
	stepTimes []time.Duration
}

func newReporter(w io.Writer, asJSON bool, total int) *reporter {
	return &reporter{w: w, json: asJSON, total: total, start: time.Now()}
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
	ElapsedS  float64       `json:"elapsed_s"`
	EstLeftS  float64       `json:"estimate_left_s,omitempty"`
}

func (r *reporter) emit(ev jsonEvent) {
	ev.Total = r.total
	ev.ElapsedS = time.Since(r.start).Seconds()
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	data, _ := json.Marshal(ev)
	r.w.Write(append(data, '\n'))
}

func (r *reporter) line(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(jsonEvent{Event: "note", Detail: fmt.Sprintf(format, a...)})
		return
	}
	fmt.Fprintf(r.w, format+"\n", a...)
}

// estimate is the mean step time so far times the steps left after the
// current one ("" before any step finished).
func (r *reporter) estimate() time.Duration {
	if len(r.stepTimes) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range r.stepTimes {
		sum += d
	}
	return sum / time.Duration(len(r.stepTimes)) * time.Duration(r.total-r.index-1)
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
	r.index = i
}

func (r *reporter) event(ev upgrade.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Total > 0 {
		r.index, r.total = ev.Index, ev.Total
	}
	now := ev.Time
	if now.IsZero() {
		now = time.Now()
	}
	i := r.index + 1
	step := ev.Step
	switch ev.Kind {
	case upgrade.EventStepStarted:
		r.stepStart, r.waitCond = now, ""
		if r.json {
			r.emit(jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Step: &step, Node: step.Node, Detail: step.Reason})
			return
		}
		fmt.Fprintf(r.w, "[%s] step %d of %d: %s\n", durationText(time.Since(r.start)), i, r.total, stepText(step))
		if len(step.Gate) > 0 {
			fmt.Fprintf(r.w, "    gate: %s\n", joinGate(step.Gate))
		}
	case upgrade.EventGateWaiting:
		if ev.Condition != r.waitCond {
			r.waitCond, r.waitSince = ev.Condition, now
		}
		waited := now.Sub(r.stepStart)
		if r.json {
			r.emit(jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Node: gateNode(step), Condition: string(ev.Condition), WaitedS: waited.Seconds(), Detail: ev.Detail})
			return
		}
		fmt.Fprintf(r.w, "    waiting on %s for %s (%s into the step): %s\n", ev.Condition, gateNode(step), durationText(waited), ev.Detail)
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
		if ev.Err != nil {
			fmt.Fprintf(r.w, " (%v)", ev.Err)
		}
		fmt.Fprintln(r.w)
	case upgrade.EventStepDone:
		took := now.Sub(r.stepStart)
		r.stepTimes = append(r.stepTimes, took)
		left := r.estimate()
		if r.json {
			r.emit(jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Step: &step, Node: step.Node, WaitedS: took.Seconds(), Detail: ev.Detail, EstLeftS: left.Seconds()})
			return
		}
		est := ""
		if r.index+1 < r.total {
			est = fmt.Sprintf("; about %s left for %d step(s)", durationText(left), r.total-r.index-1)
		}
		fmt.Fprintf(r.w, "    done in %s (elapsed %s%s)\n", durationText(took), durationText(time.Since(r.start)), est)
	case upgrade.EventStopped:
		if r.json {
			r.emit(jsonEvent{Time: now, Event: string(ev.Kind), Index: i, Detail: ev.Detail})
		}
	case upgrade.EventDone, upgrade.EventRunStarted, upgrade.EventHalted:
		// apply reports how the run ended (finished, halted, diverged).
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

func (r *reporter) finished(target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(jsonEvent{Event: "done", Detail: "every agent runs " + target})
		return
	}
	fmt.Fprintf(r.w, "Done: every agent runs %s (elapsed %s).\n", target, durationText(time.Since(r.start)))
}

func (r *reporter) halted(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var he *upgrade.HaltError
	if r.json {
		jev := jsonEvent{Event: "halted", Index: r.index + 1, Error: err.Error()}
		if errors.As(err, &he) {
			s := he.Step
			jev.Step = &s
		}
		r.emit(jev)
		return
	}
	fmt.Fprintf(r.w, "Halted at step %d of %d (elapsed %s).\n", r.index+1, r.total, durationText(time.Since(r.start)))
}

func (r *reporter) diverged(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(jsonEvent{Event: "diverged", Error: err.Error()})
	}
}
