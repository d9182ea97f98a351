// Package multihop_test takes one real cluster from 0.8.5 to 1.16.1 with a
// single upgrade.Run along the planner's own multi-hop path, one binary per
// hop (Policy.Releases lists the MPL releases the project builds, so every
// stepping stone is one of them). 3 servers and 1 client, a writer through
// the client every 20 ms, a snapshot before every hop, followers first and
// the leader last on every hop (tests/scenario).
package multihop_test

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	version "github.com/hashicorp/go-version"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
)

// releases reads scripts/consul-versions: the versions the project builds.
func releases(t *testing.T) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "scripts", "consul-versions"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// raftProtocol3Before1 starts 0.8/0.9 servers on raft protocol 3 (1.0
// and later default to it): the documented state before a cluster leaves
// 0.x for good, and what autopilot health needs.
func raftProtocol3Before1(v string) []string {
	pv := version.Must(version.NewVersion(v))
	if pv.GreaterThanOrEqual(version.Must(version.NewVersion("0.8.0"))) && pv.LessThan(version.Must(version.NewVersion("1.0.0"))) {
		return []string{"-raft-protocol=3"}
	}
	return nil
}

func TestOneRunFrom_0_8_5_to_1_16_1(t *testing.T) {
	rel := releases(t)
	f := scenario.Run(t, scenario.Scenario{
		From: "0.8.5", To: "1.16.1",
		Policy:  planner.Policy{Releases: rel},
		Rig:     consulrig.Options{ServerArgsFor: raftProtocol3Before1},
		Timeout: 30 * time.Minute,
	})
	var hops []string
	for _, s := range f.Kinds(planner.StepSnapshot) {
		hops = append(hops, s.To)
	}
	want := []string{"1.2.4", "1.6.10", "1.8.19", "1.10.12", "1.12.9", "1.14.8", "1.16.1"}
	if !slices.Equal(hops, want) {
		t.Errorf("snapshots before hops to %v, want one before each hop of %v", hops, want)
	}
	for _, s := range f.Steps {
		if s.Kind != planner.StepSnapshot && !slices.Contains(rel, s.To) {
			t.Errorf("step %s %s went to %s, which is not a release the project builds", s.Kind, s.Node, s.To)
		}
	}
}
