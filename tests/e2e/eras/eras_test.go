// Package eras_test tests Discover, the gates and the logical backup on real
// Consul agents of the old API eras (0.6.4, 0.7.5, 0.8.5 on raft protocol
// 2), started by tests/rig/consul. They never skip: a missing Consul binary
// fails the test.
package eras_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// legacyServerGate is the planner's gate for a server bound below 0.8.
var legacyServerGate = []planner.GateCheck{
	planner.GateLeaderKnown, planner.GateVersion, planner.GateSerfAlive, planner.GateVoter,
	planner.GateCommitIndex, planner.GateLastContact, planner.GateStable, planner.GateFailureTolerance,
}

var autopilotServerGate = []planner.GateCheck{
	planner.GateLeaderKnown, planner.GateVersion, planner.GateVoter, planner.GateAutopilotHealthy,
	planner.GateStable, planner.GateTrailingLogs, planner.GateFailureTolerance,
}

func TestRealOldErasAreDiscoveredAndGated(t *testing.T) {
	cases := []struct {
		version string
		era     upgrade.Era
		gate    []planner.GateCheck
	}{
		{"0.6.4", upgrade.EraPeers, legacyServerGate},
		{"0.7.5", upgrade.EraRaftConfig, legacyServerGate},
		{"0.8.5", upgrade.EraRaftProtocol2, autopilotServerGate}, // the planner's 0.8+ gate, answered without autopilot health
	}
	for _, tc := range cases {
		t.Run(tc.version, func(t *testing.T) {
			cl := consulrig.Start(t, consulrig.Options{Version: tc.version, Servers: 3, Clients: 1})
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			// Ask the client agent: Discover and the gates reach the servers'
			// own HTTP APIs on their addresses and the default port.
			c := upgrade.NewConsul(scenario.APIClient(t, cl, cl.Clients()[0]))
			// What each era lacks answers as missing (404), not as an
			// outage; 0.8 on raft protocol 2 has autopilot health but it
			// refuses to answer (500), which the era avoids asking.
			_, rerr := c.RaftConfiguration(ctx)
			_, herr := c.AutopilotHealth(ctx)
			if isMissing(rerr) != !tc.era.RaftConfig() {
				t.Errorf("raft configuration on %s: err = %v; missing = %t, want %t", tc.version, rerr, isMissing(rerr), !tc.era.RaftConfig())
			}
			switch {
			case tc.era == upgrade.EraRaftProtocol2 && (herr == nil || isMissing(herr)):
				t.Errorf("autopilot health on %s (raft protocol 2): err = %v, want a refusal that is not a missing endpoint", tc.version, herr)
			case tc.era != upgrade.EraRaftProtocol2 && !isMissing(herr):
				t.Errorf("autopilot health on %s: err = %v, want ErrEndpointMissing", tc.version, herr)
			}
			got, err := upgrade.Discover(ctx, c)
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			leader := ""
			for _, s := range got.Servers {
				if !s.Voter || !s.Healthy || s.Version != tc.version {
					t.Errorf("server %+v: want a healthy voter on %s", s, tc.version)
				}
				if s.Leader {
					leader = s.Name
				}
			}
			if len(got.Servers) != 3 || len(got.Clients) != 1 || leader == "" {
				t.Fatalf("discovered %d servers, %d clients, leader %q; want 3, 1 and a leader", len(got.Servers), len(got.Clients), leader)
			}
			base, err := upgrade.MeasureBaseline(ctx, c)
			if err != nil {
				t.Fatalf("MeasureBaseline: %v", err)
			}
			if base.Era != tc.era || base.FailureTolerance != 1 || !base.Healthy {
				t.Errorf("baseline %+v: want era %s, failure tolerance 1, healthy", base, tc.era)
			}

			// Restart a follower (kill -9, no leave) as a step of its own:
			// ExecuteStep acts through the rig's transport and waits for the
			// step's gate as Run does, on the era's checks.
			follower := ""
			for _, s := range got.Servers {
				if !s.Leader {
					follower = s.Name
					break
				}
			}
			const stabilization = 3 * time.Second
			step := planner.Step{Kind: planner.StepSwapServer, Node: follower, From: tc.version, To: tc.version,
				StopMode: transport.StopKill, Gate: tc.gate}
			var eras []upgrade.Era
			var waited []planner.GateCheck
			began := time.Now()
			_, err = upgrade.ExecuteStep(ctx, upgrade.Config{
				Consul: c, Transport: cl.Transport(), Target: tc.version, NoLock: true,
				Policy: planner.Policy{NoSnapshot: true}, ServerAPI: upgrade.ServerHTTP(8500),
				StabilizationTime: stabilization, GateTimeout: 2 * time.Minute,
				OnEvent: func(e upgrade.Event) {
					if e.Kind != upgrade.EventGateWaiting && e.Kind != upgrade.EventStepDone {
						return
					}
					if e.Era != "" && (len(eras) == 0 || eras[len(eras)-1] != e.Era) {
						eras = append(eras, e.Era)
					}
					if e.Kind == upgrade.EventGateWaiting {
						waited = append(waited, e.Condition)
						t.Logf("waiting: %s %s: %s", e.Condition, e.Node, e.Detail)
					}
				},
			}, step)
			if err != nil {
				t.Fatalf("restart %s and gate: %v", follower, err)
			}
			t.Logf("consul %s: gate on %s passed %s after the restart began (eras %v, waited on %v)", tc.version, follower, time.Since(began).Round(time.Millisecond), eras, waited)
			if !slices.Equal(eras, []upgrade.Era{tc.era}) {
				t.Errorf("gate eras = %v, want [%s]", eras, tc.era)
			}
			if time.Since(began) < stabilization {
				t.Errorf("gate passed after %s, before the stabilization time %s", time.Since(began), stabilization)
			}
		})
	}
}

func TestRealLogicalBackupOf064(t *testing.T) {
	cl := consulrig.Start(t, consulrig.Options{Version: "0.6.4", Servers: 3, Clients: -1})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s1 := cl.Servers()[0]
	for _, k := range []string{"app/config", "app/feature/flag", "other"} {
		if err := cl.KVPut(ctx, s1, k, "value of "+k); err != nil {
			t.Fatal(err)
		}
	}
	c := upgrade.NewConsul(scenario.APIClient(t, cl, s1))
	// 0.6.4 has no snapshot API: typed as missing, not an outage.
	if _, err := c.SnapshotSave(ctx); !isMissing(err) {
		t.Errorf("SnapshotSave on 0.6.4: err = %v, want ErrEndpointMissing", err)
	}
	if _, err := c.RaftConfiguration(ctx); !isMissing(err) {
		t.Errorf("RaftConfiguration on 0.6.4: err = %v, want ErrEndpointMissing", err)
	}

	// The backup is Run's first step: one step (MaxSteps), without the lock
	// (whose key would be in the backup too).
	dir := t.TempDir()
	res, err := upgrade.Run(ctx, upgrade.Config{
		Consul: c, Transport: cl.Transport(), Target: "0.7.5", Snapshot: upgrade.SnapshotDir(dir),
		MaxSteps: 1, NoLock: true, ServerAPI: upgrade.ServerHTTP(8500), GateTimeout: time.Minute,
	})
	if err != nil || !res.Stopped || len(res.Steps) != 1 || res.Steps[0].Snapshot == nil {
		t.Fatalf("Run = %+v, %v; want one step, the backup, and a clean stop", res, err)
	}
	info := res.Steps[0].Snapshot
	if info.Keys != 3 || !info.Reread || info.Kind != planner.BackupLogical {
		t.Errorf("backup %+v: want 3 keys, read back", info)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 {
		t.Fatalf("backup files %v, want one", files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := upgrade.VerifySnapshot(f)
	if err != nil {
		t.Fatalf("VerifySnapshot: %v", err)
	}
	if back.Kind != planner.BackupLogical || back.Keys != 3 || back.Index == 0 || !strings.HasPrefix(back.ID, "logical-0.6.4-") {
		t.Errorf("read back %+v: want a logical backup of 3 keys at a non-zero index, taken on 0.6.4", back)
	}
}

func isMissing(err error) bool { return errors.Is(err, upgrade.ErrEndpointMissing) }

// TestRealRunAcrossErasFrom064To075 upgrades a real 0.6.4 cluster (3 servers,
// 1 client, observed through the client) to 0.7.5 through Run: a logical
// backup first (0.6.4 has no snapshot API), the followers, the leader last,
// each server gated on the pre-0.7 checks, then the client.
//
// Every server gate uses the pre-0.7 checks: while a server still runs 0.6.4
// the servers' tags say so, and after the last server swap the agent asked
// (the client c1, still on 0.6.4 until its wave) answers 404 for the raft
// configuration, which lowers the era instead of failing the gate.
func TestRealRunAcrossErasFrom064To075(t *testing.T) {
	runAcrossEras(t, "0.6.4", "0.7.5", planner.BackupLogical,
		[]upgrade.Era{upgrade.EraPeers, upgrade.EraPeers, upgrade.EraPeers}, upgrade.EraRaftConfig)
}

// runAcrossEras upgrades a real cluster (3 servers, 1 client, observed
// through the client) from one version to another through Run and checks
// the backup kind, the order (followers, the leader last, then the client),
// the era each server gate applied, the era after the run and that a KV key
// written before is still there.
func runAcrossEras(t *testing.T, from, to string, backup planner.BackupKind, gateEras []upgrade.Era, eraAfter upgrade.Era) {
	t.Helper()
	cl := consulrig.Start(t, consulrig.Options{Version: from, Servers: 3, Clients: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	s1 := cl.Servers()[0]
	if err := cl.KVPut(ctx, s1, "app/config", "v1"); err != nil {
		t.Fatal(err)
	}
	c := upgrade.NewConsul(scenario.APIClient(t, cl, cl.Clients()[0]))
	before, err := upgrade.Discover(ctx, c)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	leader := ""
	for _, s := range before.Servers {
		if s.Leader {
			leader = s.Name
		}
	}
	var events []upgrade.Event
	dir := t.TempDir()
	began := time.Now()
	res, err := upgrade.Run(ctx, upgrade.Config{
		Consul: c, Transport: cl.Transport(), Target: to,
		Snapshot: upgrade.SnapshotDir(dir), ServerAPI: upgrade.ServerHTTP(8500),
		StabilizationTime: 3 * time.Second, GateTimeout: 2 * time.Minute,
		OnEvent: func(e upgrade.Event) {
			events = append(events, e)
			t.Logf("%s %s %s [%s] %s", e.Kind, e.Step.Kind, e.Condition, e.Era, e.Detail)
		},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("%s -> %s: %d steps in %s", from, to, len(res.Steps), time.Since(began).Round(time.Millisecond))
	if len(res.Steps) == 0 || res.Steps[0].Step.Kind != planner.StepSnapshot || res.Steps[0].Step.Backup != backup || res.Steps[0].Snapshot == nil {
		t.Fatalf("first step %+v: want a %s backup", res.Steps[0], backup)
	}
	if got := res.Steps[0].Snapshot.Kind; got != backup {
		t.Errorf("backup taken: %s, want %s", got, backup)
	}
	var servers []string
	for _, rec := range res.Steps {
		if rec.Step.Kind == planner.StepSwapServer {
			servers = append(servers, rec.Step.Node)
		}
	}
	if len(servers) != 3 || servers[2] != leader {
		t.Errorf("servers swapped %v, want three with the leader %s last", servers, leader)
	}
	var eras []upgrade.Era
	for _, e := range events {
		if e.Kind == upgrade.EventStepDone && e.Step.Kind == planner.StepSwapServer {
			eras = append(eras, e.Era)
		}
	}
	if !slices.Equal(eras, gateEras) {
		t.Errorf("server gates applied %v, want %v", eras, gateEras)
	}
	if b, err := upgrade.MeasureBaseline(ctx, c); err != nil || b.Era != eraAfter {
		t.Errorf("era after the run = %s, %v; want %s", b.Era, err, eraAfter)
	}
	after, err := upgrade.Discover(ctx, c)
	if err != nil {
		t.Fatalf("Discover after: %v", err)
	}
	for _, s := range after.Servers {
		if s.Version != to || !s.Voter || !s.Healthy {
			t.Errorf("server %+v after the run: want a healthy voter on %s", s, to)
		}
	}
	for _, cn := range after.Clients {
		if cn.Version != to {
			t.Errorf("client %s runs %s after the run, want %s", cn.Name, cn.Version, to)
		}
	}
	// The key written before the run is still there. Old servers may answer
	// "rpc error: stream closed" for a moment after the leader's restart
	// (a pooled connection to the old leader): read again for a while.
	var v string
	var found bool
	for try := 0; ; try++ {
		v, found, err = cl.KVGet(ctx, s1, "app/config")
		if err == nil || try == 20 {
			break
		}
		t.Logf("read app/config after the run: %v (again)", err)
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || !found || v != "v1" {
		t.Errorf("app/config after the run = %q, %t, %v; want v1", v, found, err)
	}
}
