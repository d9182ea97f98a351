package consultest

import (
	"fmt"
	"time"
)

// transferMiss is what one transfer does instead of handing leadership to
// the requested server.
type transferMiss struct {
	land    string        // where leadership goes ("" for nowhere)
	lostFor time.Duration // > 0: no leader for this long, then the old leader again
}

// SetTransferMisses makes the next len(landOn) calls of
// /v1/operator/raft/transfer-leader answer success without handing
// leadership to the requested server: for an empty name leadership stays
// where it is (the target never won its election, as when a real Raft
// transfer times out), for a server's name it goes to that server instead.
// It fails for a name that is not a server of the cluster.
func (c *Cluster) SetTransferMisses(landOn ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range landOn {
		if name == "" {
			continue
		}
		n, err := c.lookup(name)
		if err != nil {
			return err
		}
		if !n.server() {
			return fmt.Errorf("consultest: node %s is a client, and only a server can lead; pick a server", name)
		}
	}
	for _, name := range landOn {
		c.transferMiss = append(c.transferMiss, transferMiss{land: name})
	}
	return nil
}

// SetTransferLostElection makes the next call of
// /v1/operator/raft/transfer-leader (after those SetTransferMisses queued)
// answer success and start an election that the target loses: the cluster
// has no leader for d, and then the old leader leads again. Real Raft does
// this when the target campaigns with a log one entry behind the others'
// (a write still in flight when the leader told it to campaign): the
// others refuse their votes and re-elect a server with the longer log. It
// fails for a d that is not positive.
func (c *Cluster) SetTransferLostElection(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("consultest: a lost election lasting %s; give it a positive duration, e.g. the 5s election timeout", d)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.transferMiss = append(c.transferMiss, transferMiss{lostFor: d})
	return nil
}
