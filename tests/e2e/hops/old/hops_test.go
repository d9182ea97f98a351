// Package old_test upgrades real clusters across the documented hops
// of the eras before autopilot health: 0.6.4 -> 0.7.5 (no Raft
// configuration endpoint, no snapshot API: the upgrade guide's gate and a
// logical backup), 0.7.5 -> 0.8.5 (Raft configuration, no autopilot) and
// 0.8.5 -> 1.2.4 (the dedicated path; 0.8.5 runs raft protocol 2, so
// autopilot health answers only once every server runs 3). Each run: 3
// servers and 1 client, a writer through the client every 20 ms,
// followers first and the leader last, every step gated
// (tests/scenario). Figures are logged on FIGURES lines.
package old_test

import (
	"slices"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// serverAPI lets the gates read each server's own /v1/agent/self, which
// the eras without autopilot health need (consulrig serves every agent's
// HTTP API on its own address, port 8500).
func serverAPI(cfg *upgrade.Config, _ *consulrig.Cluster) { cfg.ServerAPI = upgrade.ServerHTTP(8500) }

func backupKinds(f scenario.Figures) []planner.BackupKind {
	var out []planner.BackupKind
	for _, s := range f.Kinds(planner.StepSnapshot) {
		out = append(out, s.Backup)
	}
	return out
}

// gatesApplied checks that every server gate applied the checks of era.
func gatesApplied(t *testing.T, f scenario.Figures, era upgrade.Era, why string) {
	t.Helper()
	for _, e := range f.GateEras {
		if e != era {
			t.Errorf("server gates applied the %v checks, want %s on every server swap (%s)", f.GateEras, era, why)
			return
		}
	}
}

func TestHop_0_6_4_to_0_7_5(t *testing.T) {
	f := scenario.Run(t, scenario.Scenario{From: "0.6.4", To: "0.7.5", Configure: serverAPI})
	scenario.LeaderSwappedLast(t, f)
	if got := backupKinds(f); !slices.Equal(got, []planner.BackupKind{planner.BackupLogical}) {
		t.Errorf("backups %v, want one logical backup (0.6.4 has no snapshot API)", got)
	}
	gatesApplied(t, f, upgrade.EraPeers, "a 0.6.4 server remains until the last swap")
}

func TestHop_0_7_5_to_0_8_5(t *testing.T) {
	f := scenario.Run(t, scenario.Scenario{From: "0.7.5", To: "0.8.5", Configure: serverAPI})
	scenario.LeaderSwappedLast(t, f)
	if got := backupKinds(f); !slices.Equal(got, []planner.BackupKind{planner.BackupSnapshot}) {
		t.Errorf("backups %v, want one snapshot (0.7.1+)", got)
	}
	for _, e := range f.GateEras {
		if e == upgrade.EraAutopilot {
			t.Errorf("a server gate applied autopilot checks (%v): 0.7/0.8 on raft protocol 2 have no autopilot health", f.GateEras)
			break
		}
	}
}

// 0.8.5 starts on raft protocol 2, and 1.0 and later default to 3: while a
// 0.8.5 server remains, the upgraded 1.2.4 servers run -raft-protocol=2
// (measured on this kind of machine: a 1.x server on protocol 3 beside
// older ones does not join). The gates answer with the 0.8-raft2 checks
// until the whole cluster could use autopilot.
func TestHop_0_8_5_to_1_2_4(t *testing.T) {
	f := scenario.Run(t, scenario.Scenario{
		From: "0.8.5", To: "1.2.4", Configure: serverAPI,
		Rig: consulrig.Options{ServerArgsFor: func(v string) []string {
			if v == "1.2.4" {
				return []string{"-raft-protocol=2"}
			}
			return nil
		}},
	})
	scenario.LeaderSwappedLast(t, f)
	if got := backupKinds(f); !slices.Equal(got, []planner.BackupKind{planner.BackupSnapshot}) {
		t.Errorf("backups %v, want one snapshot", got)
	}
	gatesApplied(t, f, upgrade.EraRaftProtocol2, "raft protocol 2 throughout")
}
