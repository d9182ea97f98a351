package upgrade

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/planner/plannertest"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// TestConfigValidateSharedTable: Config.Validate accepts and refuses a
// Target exactly as the planner and the transports do (the same table runs
// in their tests), with a *ConfigError naming the value and the fix that
// wraps the planner's *VersionError.
func TestConfigValidateSharedTable(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.12.9")
	for _, tc := range plannertest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			// Whether an accepted spelling is a Consul release (a
			// pre-release is not) is another rule, waived here.
			pol := planner.Policy{Waive: []planner.RuleID{planner.PrecheckUnknownRelease}}
			err := Config{Consul: inProcessConsul(t, sim), Target: tc.In, Policy: pol, DryRun: true}.Validate()
			if tc.Accepted() {
				if err != nil {
					t.Fatalf("Validate with Target %q = %v, want nil", tc.In, err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "Target" {
				t.Fatalf("Validate with Target %q = %v, want a *ConfigError on Target", tc.In, err)
			}
			if tc.In != "" {
				var ve *planner.VersionError
				if !errors.As(err, &ve) || ve.Value != tc.In {
					t.Errorf("error %v does not wrap a *planner.VersionError naming %q", err, tc.In)
				}
				if !strings.Contains(ce.Value, strings.TrimSpace(tc.In)) {
					t.Errorf("ConfigError.Value = %s, want it to name %q", ce.Value, tc.In)
				}
			}
			if !strings.Contains(err.Error(), tc.Fix) {
				t.Errorf("error %q does not name the fix %q", err, tc.Fix)
			}
		})
	}
}

// TestRunRefusesAMisspelledTargetBeforeTouchingTheCluster: a target such as
// 1.13.09, which a transport would refuse at the first swap, is refused by
// Run before it observes the cluster, takes the lock or a snapshot.
func TestRunRefusesAMisspelledTargetBeforeTouchingTheCluster(t *testing.T) {
	for _, tc := range plannertest.Cases {
		if tc.Accepted() {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			sim := consultest.NewCluster(3, 2, "1.12.9", consultest.WithSnapshot(makeSnapshot(t, snapshotFiles{})))
			fake := sim.NewFake()
			snapshots := 0
			res, err := Run(t.Context(), Config{
				Consul:    inProcessConsul(t, sim),
				Transport: fake,
				Target:    tc.In,
				Snapshot: func(context.Context, string, string) (SnapshotSink, error) {
					snapshots++
					return &memSink{}, nil
				},
			})
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "Target" || !strings.Contains(err.Error(), tc.Fix) {
				t.Fatalf("Run with target %q = %v, want a *ConfigError on Target naming the fix %q", tc.In, err, tc.Fix)
			}
			for _, path := range []string{"/v1/agent/members", "/v1/session/create", "/v1/kv/" + DefaultLockKey, "/v1/snapshot"} {
				if n := sim.Calls(path); n != 0 {
					t.Errorf("the simulator saw %d call(s) to %s, want none", n, path)
				}
			}
			if s := sim.Sessions(); len(s) != 0 {
				t.Errorf("sessions %v exist, want none", s)
			}
			if l := sim.HeldLocks(); len(l) != 0 {
				t.Errorf("locks %v are held, want none", l)
			}
			if snapshots != 0 {
				t.Errorf("%d snapshot(s) opened, want none", snapshots)
			}
			if c := fake.Calls(); len(c) != 0 {
				t.Errorf("the transport saw %d call(s), want none", len(c))
			}
			if len(res.Steps) != 0 {
				t.Errorf("%d step(s) done, want none", len(res.Steps))
			}
		})
	}
}

// TestAnEnterpriseClusterIsPlannedAsEnterprise: Discover reads the +ent
// build tags, and the plan gets the Enterprise findings and stones without
// Policy.Enterprise.
func TestAnEnterpriseClusterIsPlannedAsEnterprise(t *testing.T) {
	for _, tc := range []struct {
		version    string
		enterprise bool
	}{{"1.9.3+ent", true}, {"1.9.3", false}} {
		t.Run(tc.version, func(t *testing.T) {
			sim := consultest.NewCluster(3, 2, tc.version)
			res, err := Run(t.Context(), Config{Consul: inProcessConsul(t, sim), Target: "1.10.12", DryRun: true})
			if err != nil {
				t.Fatalf("dry run: %v", err)
			}
			for _, s := range res.Cluster.Servers {
				if s.Version != tc.version {
					t.Errorf("Discover: server %s on %q, want %q", s.Name, s.Version, tc.version)
				}
			}
			p := res.Plan
			if p.Policy.Enterprise != tc.enterprise {
				t.Errorf("plan policy Enterprise = %v, want %v", p.Policy.Enterprise, tc.enterprise)
			}
			for _, id := range []planner.RuleID{planner.RuleEnterprise110, planner.RuleDisableUpgradeMigration} {
				found := false
				for _, f := range p.Findings {
					found = found || f.Rule == id
				}
				if found != tc.enterprise {
					t.Errorf("finding %s present = %v, want %v", id, found, tc.enterprise)
				}
			}
			viaStone := len(p.Path) == 2 && p.Path[0].To == "1.9.17"
			if viaStone != tc.enterprise {
				t.Errorf("path %v: through the 1.9.17 license stone = %v, want %v", p.Path, viaStone, tc.enterprise)
			}
		})
	}
}

// TestGateVersionIgnoresBuildMetadata: a server whose build tag says
// 1.10.12+ent passes the version condition of a 1.10.12 step; one on
// 1.10.11+ent does not.
func TestGateVersionIgnoresBuildMetadata(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 0, "1.10.12+ent")
		c := inProcessConsul(t, sim)
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", From: "1.10.2+ent", To: "1.10.12", Gate: []planner.GateCheck{planner.GateVersion}}
		if err := awaitGate(t.Context(), c, step, Baseline{}, gateOptions{Timeout: time.Minute}); err != nil {
			t.Fatalf("Gate on 1.10.12+ent for a 1.10.12 step: %v", err)
		}
		mustDo(t, sim.Swap("s2", "1.10.11+ent", true))
		err := awaitGate(t.Context(), c, step, Baseline{}, gateOptions{Timeout: time.Minute})
		var ge *GateError
		if !errors.As(err, &ge) || ge.Condition != planner.GateVersion || !strings.Contains(err.Error(), "1.10.11+ent") {
			t.Fatalf("Gate on 1.10.11+ent for a 1.10.12 step = %v, want a version *GateError naming 1.10.11+ent", err)
		}
	})
}

// TestRunFinishesAnEnterpriseClusterWhoseBinariesReportEnt: the operator
// names the release (1.10.12), the hosts install the Enterprise build, whose
// build tag says 1.10.12+ent: every gate passes and the run is done, without
// swapping a server twice.
func TestRunFinishesAnEnterpriseClusterWhoseBinariesReportEnt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 0, "1.10.2+ent",
			consultest.WithStableSince(time.Now().Add(-time.Hour)),
			consultest.WithSnapshot(makeSnapshot(t, snapshotFiles{})))
		tr := newFakeTransport(func(node, version string, ok bool) {
			if !planner.IsEnterprise(version) {
				version += "+ent" // the Enterprise binary of the release asked for
			}
			if err := sim.Swap(node, version, ok); err != nil {
				t.Error(err)
			}
		})
		res, err := Run(t.Context(), Config{
			Consul:      inProcessConsul(t, sim),
			Transport:   tr,
			Target:      "1.10.12",
			Snapshot:    func(context.Context, string, string) (SnapshotSink, error) { return &memSink{}, nil },
			GateTimeout: time.Minute,
		})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		for _, n := range []string{"s1", "s2", "s3"} {
			if v := sim.Version(n); v != "1.10.12+ent" {
				t.Errorf("%s runs %s, want 1.10.12+ent", n, v)
			}
		}
		swaps := map[string]int{}
		for _, s := range tr.swapped() {
			swaps[s.Node]++
		}
		if len(swaps) != 3 || swaps["s1"] != 1 || swaps["s2"] != 1 || swaps["s3"] != 1 {
			t.Errorf("swaps per server = %v, want each of s1..s3 once", swaps)
		}
		if len(res.Steps) == 0 {
			t.Error("no steps recorded")
		}
	})
}
