package consultest

import "fmt"

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
	c.transferMiss = append(c.transferMiss, landOn...)
	return nil
}
