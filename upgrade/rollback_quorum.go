package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// QuorumError refuses to stop a server because the voters of the current
// Raft configuration left up without it would not make a quorum: the
// datacenter would have no leader. Before a swap (Rollback false) nothing
// was touched: it happens when a server died, or autopilot removed a dead
// one, after the previous step's gate passed, or when a voter is down or
// unhealthy under a waived pre-check. Before a rollback (Rollback true, in
// HaltError.RollbackErr) the swapped server is left running on the new
// version: another server died while it was gated.
type QuorumError struct {
	Node   string
	Voters int      // voters in the Raft configuration
	Up     []string // the other voters that are up (alive in serf, healthy where autopilot tells, running where the transport tells)
	// NotRunning are the other voters serf and autopilot still counted as
	// up but whose hosts report no running agent (the transport is a
	// transport.VersionReporter and answered transport.ErrNotRunning): a
	// server killed a moment ago stays alive in serf and healthy in
	// autopilot for several seconds (measured: 6-7 s on 1.13.9).
	NotRunning []string
	Quorum     int
	Rollback   bool // the stop was a rollback's
}

func (e *QuorumError) Error() string {
	up := "none"
	if len(e.Up) > 0 {
		up = strings.Join(e.Up, ", ")
	}
	gone := ""
	if len(e.NotRunning) > 0 {
		gone = fmt.Sprintf("; %s: alive in serf and healthy in autopilot, but the transport finds no agent running on the host (a server that has just died looks alive for several seconds)", strings.Join(e.NotRunning, ", "))
	}
	if e.Rollback {
		return fmt.Sprintf("rollback of server %s refused: stopping it would leave %d of %d voters up (%s), below the quorum of %d%s; bring the down servers back first, then resume the run or roll %s back by hand",
			e.Node, len(e.Up), e.Voters, up, e.Quorum, gone, e.Node)
	}
	return fmt.Sprintf("server %s not stopped to be swapped: stopping it would leave %d of %d voters of the current Raft configuration up (%s), below the quorum of %d%s; a voter is down or not healthy, or a server was removed from the Raft configuration (autopilot removes one that died): bring it back (or replace it) and wait until it is a healthy voter, then run again",
		e.Node, len(e.Up), e.Voters, up, e.Quorum, gone)
}

// hostCheck asks a node's host whether its agent runs: an error wrapping
// transport.ErrNotRunning when it does not, nil otherwise (running, or no
// answer to go on). nil when the transport reports nothing.
type hostCheck func(ctx context.Context, node string) error

// hostCheck is the run's: its transport's RunningVersion, when the
// transport is a transport.VersionReporter.
func (r *runner) hostCheck() hostCheck {
	vr, ok := r.cfg.Transport.(transport.VersionReporter)
	if !ok {
		return nil
	}
	return func(ctx context.Context, node string) error {
		if _, err := vr.RunningVersion(ctx, node); errors.Is(err, transport.ErrNotRunning) {
			return err
		}
		return nil
	}
}

// quorumView is what the Raft configuration and serf say, now, about the
// voters of a datacenter around the server node about to be stopped.
type quorumView struct {
	Voters int      // voters in the Raft configuration
	Up     []string // the other voters that are up
	Quorum int      // a quorum of Voters
	// NodeUp: node is a voter that is alive in serf, so stopping it takes
	// a vote away.
	NodeUp bool
	// NotRunning: other voters serf and autopilot count as up whose hosts
	// report no running agent; they are not in Up.
	NotRunning []string
}

// askHosts moves the voters of Up whose hosts report no running agent
// (host, when not nil) to NotRunning. Serf needs a few seconds to call a
// killed server failed and autopilot keeps its last stats until then: the
// host is the only witness of a death that recent.
func (v *quorumView) askHosts(ctx context.Context, host hostCheck) {
	if host == nil {
		return
	}
	up := v.Up[:0:0]
	for _, n := range v.Up {
		if host(ctx, n) != nil {
			v.NotRunning = append(v.NotRunning, n)
			continue
		}
		up = append(up, n)
	}
	v.Up = up
}

// keeps reports whether stopping the node leaves a quorum up.
func (v quorumView) keeps() bool { return !v.NodeUp || len(v.Up) >= v.Quorum }

// observeQuorum reads the members and the Raft configuration of the
// datacenter behind c (the peer set before 0.7): a voter is up when it is
// alive in serf and, in the eras with autopilot health, healthy (a voter
// that has just died may still look alive in serf for a few seconds).
func observeQuorum(ctx context.Context, c Consul, node string) (quorumView, error) {
	var q quorumView
	members, err := c.Members(ctx)
	if err != nil {
		return q, fmt.Errorf("reading the members to check that the other servers keep a quorum: %w", err)
	}
	v, err := observeViews(ctx, c, members)
	if err != nil {
		// A single server that is not healthy leaves its datacenter
		// without a leader, so no Raft configuration is served: serf
		// alone says it is the datacenter's only server.
		if only, alive := onlyServer(members, node); only {
			return quorumView{Voters: 1, Quorum: 1, NodeUp: alive}, nil
		}
		return q, fmt.Errorf("reading the peer set (%s era) to check that the other servers keep a quorum: %w", v.era, err)
	}
	if v.raft == nil {
		return q, fmt.Errorf("no peer set to check that the other servers keep a quorum")
	}
	healthy := map[string]bool{}
	if v.health != nil {
		for _, s := range v.health.Servers {
			healthy[s.Name] = s.Healthy
		}
	}
	for _, rs := range v.raft.Servers {
		if rs == nil || !rs.Voter {
			continue
		}
		q.Voters++
		for _, m := range members {
			if m == nil || m.Tags["role"] != "consul" || (m.Name != rs.Node && raftAddr(m) != rs.Address) {
				continue
			}
			switch {
			case m.Status != serfAlive:
			case m.Name == node:
				q.NodeUp = true
			case v.health == nil || healthy[m.Name]:
				q.Up = append(q.Up, m.Name)
			}
			break
		}
	}
	q.Quorum = q.Voters/2 + 1
	return q, nil
}

// onlyServer reports whether node is the only server serf lists (that has
// not left), and whether it is alive.
func onlyServer(members []*api.AgentMember, node string) (only, alive bool) {
	for _, m := range members {
		if m == nil || m.Tags["role"] != "consul" || m.Status == serfLeft {
			continue
		}
		if m.Name != node {
			return false, false
		}
		only, alive = true, m.Status == serfAlive
	}
	return only, alive
}

// plannedOutage says why a stop of node that leaves no quorum up is the
// datacenter's planned outage, or "" when it is not one: node is the only
// voter (a single-server datacenter: failure-tolerance-zero), or the
// policy waives no-spare-voter, the run began without a spare voter
// (baseline failure tolerance 0: the cluster as the operator accepted it,
// not one that lost a server since) and every other voter is up.
func (v quorumView) plannedOutage(node, dc string, waived bool, baseTolerance int) string {
	switch {
	case v.keeps():
		return ""
	case v.Voters == 1:
		return fmt.Sprintf("%s is the only voter of datacenter %s: stopping it is the datacenter's planned outage (%s); it has no leader and writes fail until %s is back",
			node, dc, planner.PrecheckFailureTolerance, node)
	case waived && baseTolerance < 1 && len(v.Up) == v.Voters-1:
		return fmt.Sprintf("%s is one of %d voters of datacenter %s and %s is waived: stopping it leaves %d of %d voters up (%s), below the quorum of %d; the datacenter has no leader and writes fail until %s is back",
			node, v.Voters, dc, planner.PrecheckNoSpareVoter, len(v.Up), v.Voters, strings.Join(v.Up, ", "), v.Quorum, node)
	}
	return ""
}

// stopVerdict decides whether server node may be stopped now: it returns
// keep=true when the other voters that are up still make a quorum (or the
// node is down already: stopping it costs nothing), the reason of the
// datacenter's planned outage when the stop leaves no quorum but is one
// (see plannedOutage), and otherwise keep=false with what it observed.
func stopVerdict(ctx context.Context, c Consul, node, dc string, waived bool, baseTolerance int, host hostCheck) (q quorumView, outage string, ok bool, err error) {
	if q, err = observeQuorum(ctx, c, node); err != nil {
		return q, "", false, err
	}
	if q.NodeUp {
		q.askHosts(ctx, host)
	}
	if q.keeps() {
		return q, "", true, nil
	}
	if why := q.plannedOutage(node, dc, waived, baseTolerance); why != "" {
		return q, why, true, nil
	}
	return q, "", false, nil
}

// quorumWithout checks, before server node is stopped to be rolled back,
// that the other voters that are up still make a quorum (see stopVerdict):
// it returns the planned outage's reason when the stop is one, and a
// *QuorumError (Rollback set) when the stop would lose the quorum.
func quorumWithout(ctx context.Context, c Consul, node, dc string, waived bool, baseTolerance int, host hostCheck) (outage string, err error) {
	q, outage, ok, err := stopVerdict(ctx, c, node, dc, waived, baseTolerance, host)
	switch {
	case err != nil:
		return "", fmt.Errorf("rollback of server %s not attempted: %w", node, err)
	case !ok:
		return "", &QuorumError{Node: node, Voters: q.Voters, Up: q.Up, NotRunning: q.NotRunning, Quorum: q.Quorum, Rollback: true}
	}
	return outage, nil
}

// spareWaived reports whether the policy waives no-spare-voter.
func (r *runner) spareWaived() bool {
	return slices.Contains(r.cfg.Policy.Waive, planner.PrecheckNoSpareVoter)
}

// dcName names datacenter dc ("" is the run's own) in messages.
func (r *runner) dcName(dc string) string {
	switch {
	case dc != "":
		return dc
	case r.ownDC != "":
		return r.ownDC
	}
	return "dc1"
}
