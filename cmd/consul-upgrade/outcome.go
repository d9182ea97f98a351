package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// How a command ended (the event of its JSON error object).
const (
	endDone        = "done"
	endHalted      = "halted"      // exit 1
	endInterrupted = "interrupted" // exit 1: Ctrl-C, or BeforeStep gave up
	endUsage       = "usage"       // exit 2
	endRefused     = "refused"     // exit 2
	endDiverged    = "diverged"    // exit 3
)

// judge derives how a command ended, and its exit code, from its error and
// the record of what its run touched (nil for a command that touches
// nothing). The record decides first: a run that touched the cluster and
// then stopped on an error halted (1), whatever the error. With nothing
// touched: bad input is usage and a refusal refused (2), a cluster that no
// longer matches the saved plan diverged (3), anything else (Consul
// unreachable, a failed step that stopped nothing, a lost lock) halted (1).
func judge(err error, touched upgrade.Touched) (end string, code int) {
	if err == nil {
		return endDone, exitOK
	}
	if len(touched) > 0 {
		return endHalted, exitHalted
	}
	var (
		ue *usageError
		ce *upgrade.ConfigError
		le *upgrade.LockedError
		re *planner.RefusedError
		ve *planner.VersionError
		pe *planner.PolicyError
		de *planner.DowngradeError
		sr *upgrade.SwapRecordError
		st *upgrade.QuorumError
		pd *upgrade.PlanDivergedError
		dv *divergedError
		ab *upgrade.AbortedError
		sp *planner.StalePlanError
		pf *upgrade.PreflightError
	)
	switch {
	case errors.As(err, &pd), errors.As(err, &dv), errors.As(err, &sp):
		return endDiverged, exitDiverged
	case errors.As(err, &ue):
		return endUsage, exitUsage
	case errors.As(err, &ce), errors.As(err, &le), errors.As(err, &re), errors.As(err, &ve),
		errors.As(err, &pe), errors.As(err, &de), errors.As(err, &sr), errors.As(err, &st), errors.As(err, &pf):
		return endRefused, exitUsage
	case errors.As(err, &ab), errors.Is(err, context.Canceled):
		return endInterrupted, exitHalted
	}
	return endHalted, exitHalted
}

// judgeCode is the exit code of an error of a command that touched
// nothing.
func judgeCode(err error) int {
	_, code := judge(err, nil)
	return code
}

// errorType names err's type for machines: the outermost error in its
// chain that is not a plain wrapper (fmt.Errorf's, errors.Join's, an
// errors.New), e.g. "*upgrade.HaltError"; "" for a plain error.
func errorType(err error) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch t := fmt.Sprintf("%T", e); t {
		case "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError", "*errors.errorString":
			if j, ok := e.(interface{ Unwrap() []error }); ok {
				for _, inner := range j.Unwrap() {
					if t := errorType(inner); t != "" {
						return t
					}
				}
				return ""
			}
		default:
			return t
		}
	}
	return ""
}

// causeType names the type of what a halt, a refused step or an abort
// wrapped (a *upgrade.GateError, a *transport.SwapError, a
// *upgrade.QuorumError, ...), "" otherwise.
func causeType(err error) string {
	var h *upgrade.HaltError
	if errors.As(err, &h) {
		return errorType(h.Err)
	}
	var sr *upgrade.StepRefusedError
	if errors.As(err, &sr) {
		return errorType(sr.Err)
	}
	var a *upgrade.AbortedError
	if errors.As(err, &a) && a.Err != nil {
		return errorType(a.Err)
	}
	return ""
}

// jsonError is the one JSON object a command prints on stdout for its
// error under -output json (apply prints it as its last event).
type jsonError struct {
	Time      time.Time       `json:"time"`
	Event     string          `json:"event"` // halted, interrupted, usage, refused, diverged
	Command   string          `json:"command"`
	ErrorType string          `json:"error_type,omitempty"`
	CauseType string          `json:"cause_type,omitempty"`
	Error     string          `json:"error"`
	ExitCode  int             `json:"exit_code"`
	Touched   upgrade.Touched `json:"touched"` // [] when the command touched nothing
}

func newJSONError(command string, err error, touched upgrade.Touched) jsonError {
	end, code := judge(err, touched)
	if touched == nil {
		touched = upgrade.Touched{}
	}
	return jsonError{Time: time.Now().UTC(), Event: end, Command: command, ErrorType: errorType(err), CauseType: causeType(err),
		Error: err.Error(), ExitCode: code, Touched: touched}
}

// output is where a command writes: text for people, or JSON for machines
// (-output json), with its errors in the same form.
type cmdOutput struct {
	name           string
	stdout, stderr io.Writer
	json           bool
}

// fail prints err (on stderr; under -output json also as one JSON object
// on stdout) and returns its exit code. Nothing was touched.
func (o cmdOutput) fail(err error) int {
	fmt.Fprintf(o.stderr, "consul-upgrade %s: %v\n", o.name, err)
	if o.json {
		data, _ := json.Marshal(newJSONError(o.name, err, nil))
		o.stdout.Write(append(data, '\n'))
	}
	_, code := judge(err, nil)
	return code
}
