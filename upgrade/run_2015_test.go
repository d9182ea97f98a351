package upgrade

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// The seed's story, executed: 3 servers and 700 clients on 0.4.1 go to
// 0.5.2 through Run, against a simulator that answers as 0.4/0.5 agents do
// (no raft configuration, no autopilot, no snapshot API). The run does what
// the 2015 operator did by hand: a backup first (a logical one: there is no
// snapshot API), the followers, the leader last with no deadline, each
// server gated on the upgrade guide's checks, then the clients in waves.
func TestRunThe2015UpgradeFollowersFirstLeaderLastLogicalBackupClientsInWaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 700, "0.4.1", consultest.WithEra(consultest.Era04),
			consultest.WithACLs(consultest.ACLsLegacy), consultest.WithStableSince(time.Now().Add(-time.Hour)))
		cl, err := sim.Client()
		mustDo(t, err)
		if _, err := cl.KV().Put(&api.KVPair{Key: "service/web/config", Value: []byte("port=80")}, nil); err != nil {
			t.Fatal(err)
		}
		tr := newFakeTransport(func(node, version string, ok bool) {
			if err := sim.Swap(node, version, ok); err != nil {
				t.Error(err)
			}
		})
		c := inProcessConsul(t, sim)

		// The plan a human reviews: computed from the discovered cluster.
		observed, err := Discover(t.Context(), c)
		if err != nil {
			t.Fatalf("Discover: %v", err)
		}
		plan, err := planner.Plan(observed, "0.5.2", planner.Policy{})
		if err != nil {
			t.Fatalf("Plan: %v", err)
		}

		var events []Event
		dir := t.TempDir()
		res, err := Run(t.Context(), Config{
			Consul: c, Transport: tr, Target: "0.5.2",
			Snapshot:    SnapshotDir(dir),
			ServerAPI:   simServers(t, sim),
			GateTimeout: 5 * time.Minute,
			OnEvent:     func(e Event) { events = append(events, e) },
		})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}

		// The steps done are the plan's, in order.
		if len(res.Steps) != len(plan.Steps) {
			t.Fatalf("%d steps done, the plan has %d", len(res.Steps), len(plan.Steps))
		}
		for i, rec := range res.Steps {
			p := plan.Steps[i]
			if rec.Step.Kind != p.Kind || rec.Step.Node != p.Node || !slices.Equal(rec.Step.Nodes, p.Nodes) {
				t.Errorf("step %d done = %s %s, the plan says %s %s", i+1, rec.Step.Kind, rec.Step.Node, p.Kind, p.Node)
			}
		}

		// A logical backup first, before any swap.
		first := res.Steps[0]
		if first.Step.Kind != planner.StepSnapshot || first.Step.Backup != planner.BackupLogical {
			t.Fatalf("first step = %s (backup %q), want a logical backup", first.Step.Kind, first.Step.Backup)
		}
		// Two keys: the operator's and the run's own upgrade lock.
		if first.Snapshot == nil || first.Snapshot.Kind != planner.BackupLogical || first.Snapshot.Keys != 2 || first.Snapshot.ACLTokens != 2 || !first.Snapshot.Reread {
			t.Errorf("backup record %+v: want a logical backup of 2 keys (service/web/config, the lock) and 2 ACL tokens, read back", first.Snapshot)
		}
		if n := sim.Calls("/v1/snapshot"); n != 0 {
			t.Errorf("the snapshot API was asked %d times on 0.4.1", n)
		}

		// Followers first, the leader last, with no deadline.
		var servers []string
		lastServer := -1
		for i, rec := range res.Steps {
			if rec.Step.Deadline != nil {
				t.Errorf("step %d (%s) carries a deadline; followers-first needs none", i+1, stepString(rec.Step))
			}
			if rec.Step.Kind == planner.StepSwapServer {
				servers = append(servers, rec.Step.Node)
				lastServer = i
				if !slices.Contains(rec.Step.Gate, planner.GateCommitIndex) || !slices.Contains(rec.Step.Gate, planner.GateLastContact) {
					t.Errorf("server step %s is not gated on commit index and last contact: %v", rec.Step.Node, rec.Step.Gate)
				}
			}
		}
		if !slices.Equal(servers, []string{"s2", "s3", "s1"}) {
			t.Errorf("servers swapped in order %v, want the followers s2, s3 and the leader s1 last", servers)
		}

		// Clients afterwards, in waves: a canary of one, then batches.
		var waves []int
		for i, rec := range res.Steps {
			if rec.Step.Kind != planner.StepSwapClients {
				continue
			}
			if i < lastServer {
				t.Errorf("client wave at step %d comes before the last server swap (step %d)", i+1, lastServer+1)
			}
			waves = append(waves, len(rec.Step.Nodes))
		}
		if len(waves) < 2 || waves[0] != 1 {
			t.Fatalf("client waves %v, want a canary of 1 and then batches", waves)
		}
		total := 0
		for _, w := range waves {
			total += w
		}
		if total != 700 {
			t.Errorf("client waves swap %d clients, want 700", total)
		}
		for _, n := range sim.Nodes() {
			if n.Version != "0.5.2" {
				t.Errorf("%s runs %s after the run, want 0.5.2", n.Name, n.Version)
			}
		}

		// Every server gate said it applied the pre-0.7 checks.
		done := 0
		for _, e := range events {
			if e.Kind == EventStepDone && e.Step.Kind == planner.StepSwapServer {
				done++
				if e.Era != EraPeers || !strings.Contains(e.Detail, "pre-0.7 checks") {
					t.Errorf("step-done of %s: era %q, detail %q; want the pre-0.7 checks named", e.Step.Node, e.Era, e.Detail)
				}
			}
		}
		if done != 3 {
			t.Errorf("%d step-done events for server swaps, want 3", done)
		}
		if n := sim.Calls("/v1/operator/autopilot/health") + sim.Calls("/v1/operator/raft/configuration"); n != 0 {
			t.Errorf("endpoints 0.4 does not have were asked %d times", n)
		}
	})
}

func TestA2015RunWithoutServerAPIIsRefusedBeforeTheFirstSwap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 0, "0.4.1", consultest.WithEra(consultest.Era04))
		tr := newFakeTransport(func(node, version string, ok bool) { mustDo(t, sim.Swap(node, version, ok)) })
		res, err := Run(t.Context(), Config{Consul: inProcessConsul(t, sim), Transport: tr, Target: "0.5.2",
			Policy: planner.Policy{NoSnapshot: true}})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "ServerAPI" {
			t.Fatalf("err = %v, want a ConfigError on ServerAPI", err)
		}
		if n := len(tr.swapped()); n != 0 || len(res.Steps) != 0 {
			t.Errorf("%d swaps and %d steps done; a run that cannot gate must touch nothing", n, len(res.Steps))
		}
		if !strings.Contains(err.Error(), "upgrade.ServerHTTP") {
			t.Errorf("error %q does not name the fix", err)
		}
	})
}
