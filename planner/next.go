package planner

// Next returns the next step from the observed cluster.
//
// TEMPORARY STUB: replaced by the plan work.
func Next(c Cluster, target string, pol Policy) (Step, error) { return Step{Kind: StepDone}, nil }

// Plan runs Next against a simulated cluster until done.
//
// TEMPORARY STUB: replaced by the plan work.
func Plan(c Cluster, target string, pol Policy) (*UpgradePlan, error) { return &UpgradePlan{}, nil }
