package probe_test

import (
	"fmt"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
)

// The results of each phase go into Findings, which names every probe
// that failed, the phases and the servers' versions it failed on, and
// whether it had passed before (it broke).
func ExampleFindings() {
	results := []probe.Result{
		{Probe: "health-passing/web", Phase: probe.PhaseBefore, Versions: []string{"1.18.2"}, OK: true},
		{Probe: "health-passing/web", Phase: probe.AfterStep(1), Versions: []string{"1.18.2", "1.22.0"}, Err: "/v1/health/service/web?passing returned no instance of the 3 registered"},
		{Probe: "health-passing/web", Phase: probe.PhaseAfter, Versions: []string{"1.22.0"}, OK: true},
	}
	for _, f := range probe.Findings(results) {
		fmt.Println(f)
	}
	// Output:
	// probe health-passing/web broke on 1.18.2 + 1.22.0 (step 2): /v1/health/service/web?passing returned no instance of the 3 registered
}
