package consultest

// firstTerm is the raft term of a new cluster, whose first leader was
// elected in it.
const firstTerm = 2

// raftTerm is the term the servers report in their raft stats ("term" of
// /v1/agent/self, 0.7 and later). Callers hold c.mu.
func (c *Cluster) raftTerm() uint64 { return firstTerm + c.term }

// Term returns the raft term the servers report: it starts at 2 and moves
// on by one with each election (a leader swapped or transferred, a lost
// transfer election won back) and with AddElections.
func (c *Cluster) Term() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raftTerm()
}

// AddElections moves the raft term on by n elections that left the leader
// where it is, as an election storm does (servers standing again and again,
// none winning for long).
func (c *Cluster) AddElections(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.term += uint64(max(n, 0))
}
