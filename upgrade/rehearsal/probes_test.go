package rehearsal

import (
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
)

// A probe that passes before the upgrade and fails in the mixed window
// shows in report.md's summary row, in the probe table (probe × phase,
// each phase with its servers' versions) and as a finding naming the
// versions it broke on.
func TestAProbeThatBreaksInTheMixedWindowIsAFindingInTheReport(t *testing.T) {
	r := synthetic()
	old, mixed, target := []string{"0.6.4"}, []string{"0.6.4", "0.7.5"}, []string{"0.7.5"}
	res := func(name, phase string, vs []string, err string) probe.Result {
		return probe.Result{Probe: name, Phase: phase, Versions: vs, OK: err == "", Err: err, Latency: 12 * time.Millisecond}
	}
	r.Probes = []probe.Result{
		res("catalog-nodes", "before", old, ""), res("health-passing/web", "before", old, ""),
		res("catalog-nodes", "step 2", mixed, ""), res("health-passing/web", "step 2", mixed, "/v1/health/service/web?passing returned no instance of the 2 registered"),
		res("catalog-nodes", "after", target, ""), res("health-passing/web", "after", target, ""),
	}
	r.ProbeFindings = probe.Findings(r.Probes)
	var md strings.Builder
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| probes | 6 probe run(s) in 3 phase(s); 1 FAILED: health-passing/web on 0.6.4 + 0.7.5 (see Probes) |",
		"| probe | before (0.6.4) | step 2 (0.6.4 + 0.7.5) | after (0.7.5) |",
		"| catalog-nodes | ok 12ms | ok 12ms | ok 12ms |",
		"| health-passing/web | ok 12ms | **FAIL** 12ms | ok 12ms |",
		"- probe health-passing/web broke on 0.6.4 + 0.7.5 (step 2): /v1/health/service/web?passing returned no instance of the 2 registered",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md.String())
		}
	}
}

// With every probe ok the summary says so and Findings says none.
func TestProbesThatAllPassSayNoFinding(t *testing.T) {
	r := synthetic()
	r.Probes = []probe.Result{{Probe: "catalog-nodes", Phase: "before", Versions: []string{"0.6.4"}, OK: true}, {Probe: "catalog-nodes", Phase: "after", Versions: []string{"0.7.5"}, OK: true}}
	var md strings.Builder
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| probes | 2 probe run(s) in 2 phase(s), all ok |", "None: every probe answered as expected in every phase."} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md.String())
		}
	}
}
