package rehearsal_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/rehearsal"
)

// A real 1.12.9 cluster holds a service whose only check is critical
// (registered on a non-agent node, as consul-esm does). Rehearsed to
// 1.13.9 with its data and that service named to the probes, the
// `?passing` probe of the service fails in every phase (before, the mixed
// window after each step, after) and the report shows it as a finding
// naming both versions; every other probe (a blocking KV query that must
// advance, a blocking catalog query, ?passing of consul, catalog nodes and
// services) answers in every phase.
func TestAProbeMadeToFailShowsInTheReportAsAFindingWithItsVersions(t *testing.T) {
	live := consulrig.Start(t, consulrig.Options{Version: "1.12.9"})
	addr := live.HTTPAddr(live.Clients()[0])
	body, _ := json.Marshal(map[string]any{
		"Node": "ext-probe", "Address": "10.9.9.9",
		"Service": map[string]any{"ID": "db-down-1", "Service": "db-down", "Port": 5432},
		"Check":   map[string]any{"CheckID": "db-down-alive", "Name": "alive", "ServiceID": "db-down-1", "Status": "critical"},
	})
	httpDo(t, http.MethodPut, addr, "/v1/catalog/register", body, nil)
	src, err := upgrade.ConnectAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	c, err := upgrade.Discover(ctx, src)
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	start := time.Now()
	rep, err := rehearsal.Run(t.Context(), rehearsal.Options{
		Cluster: &c, Target: "1.13.9", Clients: 1, OutDir: out,
		WithData: true, Source: src, ProbeServices: []string{"consul", "db-down"}, Logf: t.Logf,
	})
	checkRehearsal(t, rep, err, out, false)
	t.Logf("rehearsal with probes: %s wall (run %s), %d probe results", time.Since(start).Round(time.Second), rep.Wall.Round(time.Second), len(rep.Probes))

	phases := map[string]bool{}
	mixed := 0
	for _, r := range rep.Probes {
		t.Logf("PROBE %s", r)
		if !phases[r.Phase] && len(r.Versions) == 2 {
			mixed++
		}
		phases[r.Phase] = true
		if r.Probe != "health-passing/db-down" && !r.OK {
			t.Errorf("%s: want every probe but health-passing/db-down ok", r)
		}
	}
	if !phases[probe.PhaseBefore] || !phases[probe.PhaseAfter] || mixed == 0 {
		t.Errorf("phases %v (%d with two versions): want before, after and the mixed window", phases, mixed)
	}
	if len(rep.ProbeFindings) != 1 {
		t.Fatalf("findings %v: want only health-passing/db-down", rep.ProbeFindings)
	}
	f := rep.ProbeFindings[0]
	t.Logf("FINDING %s", f)
	if f.Probe != "health-passing/db-down" || !slices.Equal(f.Versions, []string{"1.12.9", "1.13.9"}) || f.Broke || len(f.Phases) != len(phases) ||
		!strings.Contains(f.Err, "db-down-1 on ext-probe: critical") {
		t.Errorf("finding %s: want health-passing/db-down failed (not broke) on 1.12.9 + 1.13.9 in all %d phases, naming the critical instance", f, len(phases))
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, want := range []string{"1 FAILED: health-passing/db-down on 1.12.9 + 1.13.9 (see Probes) |", "## Probes", "| health-passing/db-down | **FAIL**", "- probe health-passing/db-down failed on 1.12.9 + 1.13.9 ("} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if i := strings.Index(string(md), "## Probes"); i >= 0 {
		t.Logf("PROBE SECTION\n%s", string(md)[i:i+strings.Index(string(md)[i:], "\n## Leaders")])
	}
}
