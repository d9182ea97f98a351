package ssh

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// This file drives an agent that runs as a systemd unit (ServiceSystemd).
// Every call is systemctl or journalctl as an argv, quoted like any other
// remote command; systemctl show is read whole (KEY=VALUE lines), which
// every systemd prints, rather than with --value, which systemd before 230
// lacks.

// UnitError reports a systemd unit that did not do what a swap needed: it
// did not come up after systemctl start (it ended failed, or was not
// active within StartTimeout), or its old main process did not go away
// after the stop signal (StopTimeout). It carries the unit's state and the
// tail of its journal, which usually says why (a config the new version
// refuses, a missing data dir). A unit that did not come up (including
// one whose systemctl start failed and that is not running) wraps
// transport.ErrNotRunning.
type UnitError struct {
	Node string
	Unit string
	// Step is what was waited for: "start" (the unit to be active) or
	// "stop" (the old main process to be gone).
	Step string
	// ActiveState, SubState and Result are what systemctl show said last
	// (e.g. failed, failed, exit-code); MainPID its main process (0:
	// none).
	ActiveState, SubState, Result string
	MainPID                       int
	// Waited is how long the swap waited (0 when systemctl itself failed).
	Waited time.Duration
	// Journal is the tail of journalctl -u Unit (JournalLines lines), or
	// why it could not be read.
	Journal string
	// Err is the cause: transport.ErrNotRunning for a unit that did not
	// come up, the *CommandError of a systemctl start that failed, or the
	// context's error.
	Err error
}

func (e *UnitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: unit %s is %s", e.Node, e.Unit, stateText(e.ActiveState, e.SubState, e.Result))
	switch {
	case e.Step == "stop":
		fmt.Fprintf(&b, " and its main process %d still runs %v after the stop signal (StopTimeout); check KillMode and the agent's log", e.MainPID, e.Waited.Round(time.Millisecond))
	case e.Waited == 0 && e.Err != nil:
		fmt.Fprintf(&b, " after systemctl start failed: %v", e.Err)
	case e.ActiveState == "failed":
		b.WriteString(" after systemctl start; the agent exited, see its journal")
	default:
		fmt.Fprintf(&b, ", not active %v after systemctl start (StartTimeout)", e.Waited.Round(time.Millisecond))
		if e.Err != nil && !errors.Is(e.Err, transport.ErrNotRunning) {
			fmt.Fprintf(&b, ": %v", e.Err)
		}
	}
	if j := strings.TrimSpace(e.Journal); j != "" {
		fmt.Fprintf(&b, "; journalctl -u %s:\n%s", e.Unit, j)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *UnitError) Unwrap() error { return e.Err }

func stateText(active, sub, result string) string {
	if active == "" {
		active = "in an unknown state"
	}
	var more []string
	if sub != "" && sub != active {
		more = append(more, sub)
	}
	if result != "" && result != "success" {
		more = append(more, "result "+result)
	}
	if len(more) == 0 {
		return active
	}
	return active + " (" + strings.Join(more, ", ") + ")"
}

// unitState is what systemctl show says of a unit.
type unitState struct {
	Load, Active, Sub, Result, Type string
	MainPID                         int
}

func (s unitState) running() bool { return s.Active == "active" || s.Active == "reloading" }

// parseShow reads systemctl show's KEY=VALUE lines.
func parseShow(out string) unitState {
	var s unitState
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), maxOutput)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "LoadState":
			s.Load = v
		case "ActiveState":
			s.Active = v
		case "SubState":
			s.Sub = v
		case "Result":
			s.Result = v
		case "Type":
			s.Type = v
		case "MainPID":
			s.MainPID, _ = strconv.Atoi(v)
		}
	}
	return s
}

// systemctl returns the host's systemctl argv with args appended.
func (c *conn) systemctl(args ...string) []string {
	return append(slices.Clone(c.h.Systemctl), args...)
}

// unit reads the unit's state. A unit systemd does not know is an error
// naming Host.Unit.
func (c *conn) unit(ctx context.Context) (unitState, error) {
	r, err := c.must(ctx, "unit state", c.systemctl("show", c.h.Unit), nil)
	if err != nil {
		return unitState{}, err
	}
	s := parseShow(string(r.stdout))
	if s.Load == "not-found" || s.Active == "" {
		return s, fmt.Errorf("node %s: systemd has no unit %s (LoadState %q); check Host.Unit and that the unit file is installed", c.h.node, c.h.Unit, s.Load)
	}
	return s, nil
}

// journal returns the tail of the unit's journal, or why it could not be
// read.
func (c *conn) journal(ctx context.Context) string {
	if ctx.Err() != nil {
		return ""
	}
	argv := append(slices.Clone(c.h.Journalctl), "-u", c.h.Unit, "-n", strconv.Itoa(DefaultJournalLines), "--no-pager")
	r, err := c.run(ctx, "journal", argv, nil, 15*time.Second)
	if err != nil {
		return fmt.Sprintf("(journal not read: %v)", err)
	}
	out := strings.TrimRight(r.output, "\n")
	if r.exit != 0 {
		return fmt.Sprintf("(journalctl exited %d) %s", r.exit, out)
	}
	return out
}

// unitError builds a *UnitError from the last state seen, with the journal.
func (c *conn) unitError(ctx context.Context, step string, s unitState, waited time.Duration, err error) *UnitError {
	return &UnitError{Node: c.h.node, Unit: c.h.Unit, Step: step, ActiveState: s.Active, SubState: s.Sub, Result: s.Result, MainPID: s.MainPID, Waited: waited, Journal: c.journal(ctx), Err: err}
}

// stopUnit sends the stop mode's signal to the unit's main process and
// waits until that process is gone: the main PID changed (systemd may have
// restarted the unit, on the new binary, already) or the unit is no longer
// active.
func (c *conn) stopUnit(ctx context.Context, v Vars) error {
	before, err := c.unit(ctx)
	if err != nil {
		return err
	}
	if _, err := c.must(ctx, "stop", c.systemctl("kill", "--kill-who=main", "--signal=SIG"+v.Signal, c.h.Unit), nil); err != nil {
		return err
	}
	if before.MainPID == 0 {
		return nil
	}
	began := time.Now()
	wctx, cancel := context.WithTimeout(ctx, c.h.StopTimeout)
	defer cancel()
	last := before
	delay := 50 * time.Millisecond
	for {
		s, err := c.unit(wctx)
		if err == nil {
			last = s
			if s.MainPID != before.MainPID || !s.running() {
				return nil
			}
		}
		if wctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return c.unitError(ctx, "stop", last, time.Since(began), context.DeadlineExceeded)
		}
		sleep(wctx, &delay, time.Second)
	}
}

// startUnit runs systemctl start and waits until the unit is active (and,
// unless it is Type=notify, stays active on one main process for
// UnitSettle). A unit that ends failed or is not active in time is a
// *UnitError with its journal.
func (c *conn) startUnit(ctx context.Context) error {
	if _, err := c.must(ctx, "start", c.systemctl("start", c.h.Unit), nil); err != nil {
		if ctx.Err() != nil {
			return err
		}
		// A systemctl that waits for the unit (Type=exec, or a
		// replacement that watches the process) fails the start itself
		// when the agent exits at once: a unit that is not running after
		// that did not come up.
		s, _ := c.unit(ctx)
		if !s.running() {
			err = fmt.Errorf("%w: %w", transport.ErrNotRunning, err)
		}
		return c.unitError(ctx, "start", s, 0, err)
	}
	began := time.Now()
	wctx, cancel := context.WithTimeout(ctx, c.h.StartTimeout)
	defer cancel()
	var (
		last     unitState
		lastErr  error
		upSince  time.Time
		upPID    int
		delay    = 50 * time.Millisecond
		maxDelay = time.Second
	)
	for {
		s, err := c.unit(wctx)
		lastErr = err
		if err == nil {
			last = s
			switch {
			case s.Active == "failed":
				return c.unitError(ctx, "start", s, time.Since(began), fmt.Errorf("%w: unit %s failed", transport.ErrNotRunning, c.h.Unit))
			case s.running() && s.Type == "notify":
				return nil
			case s.running():
				if upSince.IsZero() || s.MainPID != upPID {
					upSince, upPID = time.Now(), s.MainPID
				} else if time.Since(upSince) >= c.h.UnitSettle {
					return nil
				}
				maxDelay = min(time.Second, max(c.h.UnitSettle/4, 50*time.Millisecond))
			default:
				upSince = time.Time{}
			}
		}
		if wctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			cause := fmt.Errorf("%w: unit %s not active within %v", transport.ErrNotRunning, c.h.Unit, c.h.StartTimeout)
			if lastErr != nil {
				cause = fmt.Errorf("%w (last read: %v)", cause, lastErr)
			}
			return c.unitError(ctx, "start", last, time.Since(began), cause)
		}
		sleep(wctx, &delay, maxDelay)
	}
}

// sleep waits *delay (or until ctx ends) and doubles it up to limit.
func sleep(ctx context.Context, delay *time.Duration, limit time.Duration) {
	d := min(*delay, limit)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if *delay < limit {
		*delay *= 2
	}
}
