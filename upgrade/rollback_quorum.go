package upgrade

import (
	"context"
	"fmt"
	"strings"
)

// RollbackRefusedError reports a server rollback that was not attempted:
// rolling a server back stops it, and without it the voters that are up
// would not make a quorum (for instance when another server died while the
// swapped one was gated: failure tolerance 0). Stopping it would leave the
// datacenter without a leader, so the run halts with the swapped server
// left running.
type RollbackRefusedError struct {
	Node   string
	Voters int      // voters in the Raft configuration
	Up     []string // the other voters that are up (alive in serf, healthy where autopilot tells)
	Quorum int
}

func (e *RollbackRefusedError) Error() string {
	up := "none"
	if len(e.Up) > 0 {
		up = strings.Join(e.Up, ", ")
	}
	return fmt.Sprintf("rollback of server %s refused: stopping it would leave %d of %d voters up (%s), below the quorum of %d; bring the down servers back first, then resume the run or roll %s back by hand",
		e.Node, len(e.Up), e.Voters, up, e.Quorum, e.Node)
}

// StopRefusedError reports a server swap that was not started: stopping
// the server would leave the other voters that are up below a quorum. It
// happens when a server died, or autopilot removed a dead one, after the
// previous step's gate passed. Nothing was touched.
type StopRefusedError struct {
	Node   string
	Voters int      // voters in the Raft configuration
	Up     []string // the other voters that are up
	Quorum int
}

func (e *StopRefusedError) Error() string {
	up := "none"
	if len(e.Up) > 0 {
		up = strings.Join(e.Up, ", ")
	}
	return fmt.Sprintf("server %s not stopped to be swapped: stopping it would leave %d of %d voters up (%s), below the quorum of %d; a server died or was removed from the Raft configuration since the previous step's gate passed: bring it back (or replace it), then run again",
		e.Node, len(e.Up), e.Voters, up, e.Quorum)
}

// quorumWithout checks, before server node is stopped to be rolled back,
// that the other voters that are up still make a quorum: a voter is up
// when it is alive in serf and, in the eras with autopilot health, healthy
// (a voter that has just died may still look alive in serf for a few
// seconds). A node that is not alive in serf is down already: stopping it
// costs nothing, and it is never refused.
func quorumWithout(ctx context.Context, c Consul, node string) error {
	members, err := c.Members(ctx)
	if err != nil {
		return fmt.Errorf("rollback of server %s not attempted: reading the members to check that the other servers keep a quorum: %w", node, err)
	}
	v, err := observeViews(ctx, c, members)
	if err != nil {
		return fmt.Errorf("rollback of server %s not attempted: reading the peer set (%s era) to check that the other servers keep a quorum: %w", node, v.era, err)
	}
	if v.raft == nil {
		return fmt.Errorf("rollback of server %s not attempted: no peer set to check that the other servers keep a quorum", node)
	}
	healthy := map[string]bool{}
	if v.health != nil {
		for _, s := range v.health.Servers {
			healthy[s.Name] = s.Healthy
		}
	}
	var up []string
	voters, nodeAlive := 0, false
	for _, rs := range v.raft.Servers {
		if rs == nil || !rs.Voter {
			continue
		}
		voters++
		for _, m := range members {
			if m == nil || m.Tags["role"] != "consul" || (m.Name != rs.Node && raftAddr(m) != rs.Address) {
				continue
			}
			switch {
			case m.Status != serfAlive:
			case m.Name == node:
				nodeAlive = true
			case v.health == nil || healthy[m.Name]:
				up = append(up, m.Name)
			}
			break
		}
	}
	if q := voters/2 + 1; nodeAlive && len(up) < q {
		return &RollbackRefusedError{Node: node, Voters: voters, Up: up, Quorum: q}
	}
	return nil
}
