package planner

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden plans in testdata")

// goldenCases are whole plans kept in testdata as text and JSON. Regenerate
// them with `go test ./planner -run Golden -update` and read the diff.
func goldenCases() []struct {
	name    string
	c       Cluster
	target  string
	pol     Policy
	refused bool
} {
	noLeader := cluster2015()
	noLeader.Servers[0].Leader = false

	old := Cluster{
		Servers: []Server{srv("s1", "", "1.3.1", false), srv("s2", "", "1.3.1", true), srv("s3", "", "1.3.1", false)},
		Clients: clientsOf("web", "", "1.3.1", 12),
	}
	return []struct {
		name    string
		c       Cluster
		target  string
		pol     Policy
		refused bool
	}{
		// The seed's story, with the story's own choice: clients left
		// behind on purpose.
		{name: "2015-leave-behind", c: cluster2015(), target: "0.5.2", pol: leaveBehind},
		// The same cluster with the default policy: clients in waves.
		{name: "2015-waves", c: cluster2015(), target: "0.5.2"},
		// Through the dedicated paths: 1.6.10, 1.8.19, 1.10.12.
		{name: "1.3.1-to-1.12.9", c: old, target: "1.12.9", pol: Policy{Clients: ClientPolicy{BatchPercent: 50}}},
		// Five servers in three datacenters with ACL replication on the
		// dedicated 1.6.10 path: secondaries first, primary last.
		{name: "three-dc-acl-replication-1.5.2-to-1.6.10", c: threeDC("1.5.2"), target: "1.6.10", pol: Policy{Clients: ClientPolicy{BatchSize: 10, Canary: 2}}},
		// No leader known: nothing may be touched.
		{name: "no-leader-refused", c: noLeader, target: "0.5.2", refused: true},
		// 0.4.1 cannot go straight to 0.7: every server boots 0.5.2 first
		// (Raft store migration), then 0.7.5.
		{name: "0.4.1-to-0.7.5", c: cluster2015(), target: "0.7.5", pol: leaveBehind},
	}
}

func TestGoldenPlans(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Plan(tc.c, tc.target, tc.pol)
			var refused *RefusedError
			switch {
			case tc.refused && !errors.As(err, &refused):
				t.Fatalf("err = %v, want a *RefusedError", err)
			case tc.refused && len(p.Steps) != 0:
				t.Fatalf("refused plan has %d steps", len(p.Steps))
			case tc.refused && len(p.Findings.Blocking()) == 0:
				t.Fatalf("refused plan carries no blocking findings")
			case !tc.refused && err != nil:
				t.Fatalf("Plan: %v", err)
			}
			js, err := p.JSON()
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join("testdata", tc.name+".golden"), []byte(p.String()))
			compareGolden(t, filepath.Join("testdata", tc.name+".json.golden"), append(js, '\n'))
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./planner -run Golden -update` to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the plan computed now; if the change is intended, run `go test ./planner -run Golden -update` and review the diff\n--- got ---\n%s", path, got)
	}
}
