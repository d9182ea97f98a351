package planner

// Check returns every finding for upgrading c to target under pol: version
// rules for every hop of the path and the cluster's own pre-checks. Blocking
// findings whose rule ID is in pol.Waive are marked Waived.
//
// TEMPORARY STUB: replaced by the catalogue work.
func Check(c Cluster, target string, pol Policy) Findings { return nil }
