package scenario

import (
	"context"
	"testing"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
)

// halted ends a scenario whose run is expected to halt (Scenario.Halted):
// the run must have returned an error, which Halted judges; no
// acknowledged write of the writer may be lost. The cluster is left as the
// halt left it, so the versions at the end are not checked.
func halted(t *testing.T, ctx context.Context, sc Scenario, cl *consulrig.Cluster, f Figures, err error) Figures {
	t.Helper()
	if err == nil {
		t.Fatalf("run %s -> %s completed; the scenario expects it to halt", sc.From, sc.To)
	}
	t.Logf("run %s -> %s halted as expected: %v", sc.From, sc.To, err)
	sc.Halted(t, err)
	client := cl.Clients()[0]
	lost, lerr := cl.MissingWrites(ctx, client, "writer", f.Writes.Acked)
	if lerr != nil {
		t.Fatal(lerr)
	}
	f.Lost = lost
	t.Logf("FIGURES %s -> %s (%s, halted): %s", sc.From, sc.To, policyName(sc.Policy), f)
	if len(f.Lost) != 0 {
		t.Errorf("%d acknowledged writes lost, e.g. %v", len(f.Lost), f.Lost[:min(5, len(f.Lost))])
	}
	return f
}
