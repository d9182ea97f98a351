package upgrade

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// Leadership transfer, Consul >= 1.15 on both sides of a hop.
//
// The runner asks for the transfer through the HTTP API with the target's
// Raft ID (POST /v1/operator/raft/transfer-leader?id=...): the 1.15 and
// 1.16 CLI ignores its -id flag and hands leadership to any server. Raft
// answers the call once it has told the target to campaign, so an answer is
// not a result: the runner then watches /v1/status/leader until the target
// itself is named. The old leader can still be named for a moment after the
// call, and a transfer can time out inside Raft or land on another server;
// both are retried (the current leader is asked again) a bounded number of
// times. The old leader is never stopped by this step: the swap that follows
// is decided again from a fresh observation, so it only happens once the
// target leads.
//
// Under writes, a transfer can lose its election (how often, on real
// agents: tests/README.md; pinned by
// TestRunAsksAgainAtOnceWhenTheTargetLosesItsElection). The leader tells the target to campaign once it has sent it every entry, but
// an entry still in flight has not reached the target's log, so the other
// servers answer "rejecting vote request since our last index is greater"
// and, an election timeout later, elect a server with the longer log:
// often the old leader again. The runner sees this as a moment without a
// leader followed by the old leader (ErrTransferElectionLost) and asks
// again at once rather than after transferSettle. Each lost election costs
// the writes of one election, as a swap without a transfer would; after
// transferAttempts asks the run halts with the old leader still up.

const (
	// transferAttempts bounds how often the transfer is asked for.
	transferAttempts = 5
	// transferSettle is how long one attempt waits for the target to be
	// named leader before asking again.
	transferSettle = 15 * time.Second
	// transferPoll is how often the leader is read while waiting.
	transferPoll = 100 * time.Millisecond
	// transferElsewhere is how long a third server must be named leader
	// before the transfer counts as landed elsewhere and is asked again.
	transferElsewhere = time.Second
)

// ErrTransferNotReady is wrapped by a *TransferError whose target was never
// a healthy voter on the step's version, so no transfer was asked for.
var ErrTransferNotReady = errors.New("the target is not a healthy voter on the new version")

// ErrTransferElectionLost is wrapped by a *TransferError whose last ask
// started an election the target lost: the cluster had no leader for a
// moment and then elected the old leader again. Raft does this when the
// target campaigns one entry behind the others (a write in flight during
// the transfer); asking again usually succeeds.
var ErrTransferElectionLost = errors.New("the target lost the election the transfer started, and the old leader was elected again")

// TransferError reports a leadership transfer that did not put the step's
// target in the lead. The old leader was not stopped.
type TransferError struct {
	Step planner.Step
	// Leader is the server last seen leading ("" when none was known).
	Leader string
	// Attempts is how many transfers were asked for.
	Attempts int
	// Err is the last reason: the API's error, ErrTransferNotReady, or a
	// description of where leadership went.
	Err error
}

func (e *TransferError) Error() string {
	return fmt.Sprintf("transfer leadership %s => %s: after %d attempt(s) the leader is %s: %v; the old leader was not stopped (check the target's health and /v1/operator/raft/configuration, then run again, or set the policy's no_transfer_leadership to swap the leader last)",
		e.Step.Node, e.Step.Target, e.Attempts, orUnknown(e.Leader), e.Err)
}

func (e *TransferError) Unwrap() error { return e.Err }

// transferLeader hands leadership from step.Node to step.Target and returns
// once the target is named leader. A target that already leads is left
// alone (a resumed run).
func (r *runner) transferLeader(ctx context.Context, step planner.Step) error {
	c := r.consul(step.Datacenter)
	te := &TransferError{Step: step}
	for {
		id, leader, err := r.awaitTransferTarget(ctx, c, step)
		te.Leader = leader
		switch {
		case err != nil:
			te.Err = err
			return te
		case leader == step.Target:
			return nil
		case r.landedOnUpgraded(ctx, c, step, leader):
			return nil
		case te.Attempts == transferAttempts:
			return te
		}
		te.Attempts++
		detail := fmt.Sprintf("asking %s to hand leadership to %s (raft id %s), attempt %d of %d", orUnknown(leader), step.Target, id, te.Attempts, transferAttempts)
		if te.Err != nil {
			detail += fmt.Sprintf(" (the last: %v)", te.Err)
		}
		r.emit(ctx, Event{Kind: EventGateWaiting, Step: step, Condition: planner.GateLeaderKnown, Detail: detail})
		if err := c.TransferLeader(ctx, id); err != nil {
			te.Err = err
			if !sleepCtx(ctx, time.Second) {
				te.Err = errors.Join(err, ctx.Err())
				return te
			}
			continue
		}
		got, err := waitLeader(ctx, c, step.Target, leader, transferSettle)
		te.Leader = got
		if err == nil || r.landedOnUpgraded(ctx, c, step, got) {
			return nil
		}
		te.Err = err
	}
}

// landedOnUpgraded reports whether leadership is with a server other than
// the old leader that already runs the step's version: the transfer's
// purpose (the old leader swapped as a follower, no election timeout) is
// met, and asking again would only move leadership once more. Raft may
// hand leadership to another upgraded voter than the one asked for (seen
// on loaded 1.15.4 -> 1.16.1 runs); the step's gate accepts the same.
func (r *runner) landedOnUpgraded(ctx context.Context, c Consul, step planner.Step, leader string) bool {
	if leader == "" || leader == step.Node || leader == step.Target {
		return false
	}
	members, err := c.Members(ctx)
	if err != nil {
		return false
	}
	if !upgradedLeader(members, step, leader) {
		return false
	}
	r.emit(ctx, Event{Kind: EventGateWaiting, Step: step, Condition: planner.GateLeaderKnown,
		Detail: fmt.Sprintf("leadership went to %s instead of %s; %s also runs %s, so %s will be swapped as a follower: the transfer is done", leader, step.Target, leader, step.To, step.Node)})
	return true
}

// upgradedLeader reports whether leader (a node name) is alive in serf on
// step.To (build metadata ignored) and is not the step's old leader.
func upgradedLeader(members []*api.AgentMember, step planner.Step, leader string) bool {
	if leader == "" || leader == step.Node {
		return false
	}
	m := findMember(members, leader)
	return m != nil && m.Status == serfAlive && step.To != "" && planner.SameVersion(buildVersion(m.Tags["build"]), step.To)
}

// awaitTransferTarget observes the cluster until the target is a healthy
// voter on the new version (at most the gate timeout) and returns its Raft
// ID and the current leader's name.
func (r *runner) awaitTransferTarget(ctx context.Context, c Consul, step planner.Step) (id, leader string, err error) {
	timeout := r.cfg.GateTimeout
	if timeout <= 0 {
		timeout = DefaultGateTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		id, leader, err = transferTargetID(ctx, c, step)
		if err == nil {
			return id, leader, nil
		}
		if !time.Now().Before(deadline) {
			return "", leader, fmt.Errorf("%w (waited %s)", err, timeout)
		}
		if !sleepCtx(ctx, time.Second) {
			return "", leader, errors.Join(err, ctx.Err())
		}
	}
}

// transferTargetID observes the cluster once and returns the target's Raft
// ID and the current leader's name. It fails with ErrTransferNotReady when
// the target is not a voter, not on step.To (build metadata ignored) or not
// healthy in autopilot's view.
func transferTargetID(ctx context.Context, c Consul, step planner.Step) (id, leader string, err error) {
	raft, err := c.RaftConfiguration(ctx)
	if err != nil {
		return "", "", err
	}
	members, err := c.Members(ctx)
	if err != nil {
		return "", "", err
	}
	for _, rs := range raft.Servers {
		if rs != nil && rs.Leader {
			leader = rs.Node
			if m := findMember(members, rs.Node); m == nil {
				leader = leaderName(members, raft, rs.Address)
			}
		}
	}
	rs := raftServerByName(raft, members, step.Target)
	m := findMember(members, step.Target)
	switch {
	case rs == nil:
		return "", leader, fmt.Errorf("%w: %s is not in the raft configuration", ErrTransferNotReady, step.Target)
	case !rs.Voter:
		return "", leader, fmt.Errorf("%w: %s is a non-voter (autopilot has not promoted it yet)", ErrTransferNotReady, step.Target)
	case m == nil || m.Status != serfAlive:
		return "", leader, fmt.Errorf("%w: %s is not alive in serf", ErrTransferNotReady, step.Target)
	case step.To != "" && !planner.SameVersion(buildVersion(m.Tags["build"]), step.To):
		return "", leader, fmt.Errorf("%w: %s reports %s, want %s", ErrTransferNotReady, step.Target, orUnknown(buildVersion(m.Tags["build"])), step.To)
	}
	h, err := c.AutopilotHealth(ctx)
	if err != nil {
		return "", leader, err
	}
	if sh := healthByName(h, step.Target); sh == nil || !sh.Healthy {
		return "", leader, fmt.Errorf("%w: autopilot does not report %s healthy", ErrTransferNotReady, step.Target)
	}
	return rs.ID, leader, nil
}

// waitLeader polls /v1/status/leader until want is named leader, for at
// most d. It returns early when a third server (neither want nor from, the
// leader that was asked) has been named leader for transferElsewhere: the
// transfer landed elsewhere, and that leader can be asked again at once.
// It also returns early, with ErrTransferElectionLost, when from is named
// for transferElsewhere after a poll found no leader: the election the
// transfer started is over and want lost it. It returns the last leader
// seen and an error saying where leadership went when want never led.
func waitLeader(ctx context.Context, c Consul, want, from string, d time.Duration) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var name string
	var lastErr error
	var seen string     // the leader named by an unbroken run of polls ("" for none)
	var since time.Time // when that run began
	var leaderless bool // a poll found no leader: an election ran
	for {
		addr, err := c.Leader(wctx)
		switch {
		case err == nil && addr == "":
			leaderless, name = true, ""
		case err == nil:
			members, merr := c.Members(wctx)
			if merr != nil {
				lastErr = merr
				break
			}
			if name = leaderName(members, nil, addr); name == want {
				return name, nil
			}
		default:
			lastErr = err
		}
		if name != seen {
			seen, since = name, time.Now()
		}
		if name != "" && time.Since(since) >= transferElsewhere {
			switch {
			case name != from:
				return name, fmt.Errorf("leadership went to %s instead of %s", name, want)
			case leaderless:
				return name, fmt.Errorf("%w: %s leads again", ErrTransferElectionLost, from)
			}
		}
		if !sleepCtx(wctx, transferPoll) {
			break
		}
	}
	if ctx.Err() != nil {
		return name, ctx.Err()
	}
	if name == "" && lastErr != nil {
		return name, fmt.Errorf("%s was not named leader within %s (last error: %w)", want, d, lastErr)
	}
	return name, fmt.Errorf("%s was not named leader within %s; the leader is %s", want, d, orUnknown(name))
}

// sleepCtx sleeps for d or until ctx ends; it reports whether it slept the
// whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
