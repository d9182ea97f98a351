// Package federation_test upgrades a real WAN federation on loopback: dc1
// (the primary: 3 servers, 1 client) and dc2 (1 server, 1 client),
// 1.12.9 -> 1.13.9 by one Run. Like the other real-agent tests it never
// skips: missing binaries fail it.
package federation_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// fedTransport hands each swap to the transport of the cluster that owns the
// node, and records the swaps in order.
type fedTransport struct {
	owner map[string]*consulrig.Cluster
	mu    sync.Mutex
	swaps []transport.SwapRequest
}

func newFedTransport(clusters ...*consulrig.Cluster) *fedTransport {
	f := &fedTransport{owner: map[string]*consulrig.Cluster{}}
	for _, cl := range clusters {
		for _, n := range cl.Nodes() {
			f.owner[n] = cl
		}
	}
	return f
}

func (f *fedTransport) Swap(ctx context.Context, req transport.SwapRequest) error {
	cl, ok := f.owner[req.Node]
	if !ok {
		return fmt.Errorf("fed transport: node %s belongs to no cluster of the test", req.Node)
	}
	f.mu.Lock()
	f.swaps = append(f.swaps, req)
	f.mu.Unlock()
	return cl.Transport().Swap(ctx, req)
}

// waitFederated waits until each cluster's catalog lists both datacenters.
func waitFederated(t *testing.T, a, b *consulrig.Cluster) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	catalogs := map[string]*api.Catalog{} // one client each: a new one per try would pile up connections
	for _, cl := range []*consulrig.Cluster{a, b} {
		catalogs[cl.Servers()[0]] = scenario.APIClient(t, cl, cl.Servers()[0]).Catalog()
	}
	for time.Now().Before(deadline) {
		ok := true
		for node, cat := range catalogs {
			dcs, err := cat.Datacenters() // nearest first
			slices.Sort(dcs)
			if err != nil || !slices.Equal(dcs, []string{"dc1", "dc2"}) {
				ok, last = false, fmt.Sprintf("%s lists %v (err %v)", node, dcs, err)
			}
		}
		if ok {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("the two datacenters never federated over the WAN: %s", last)
}

func TestRunUpgradesAWANFederationPrimaryFirst(t *testing.T) {
	primary := `-hcl=primary_datacenter = "dc1"`
	dc1 := scenario.StartHealthy(t, consulrig.Options{Servers: 3, Clients: 1, Version: scenario.FromVersion, Datacenter: "dc1",
		ExtraServerArgs: []string{primary}, ExtraClientArgs: []string{primary}})
	wan := []string{primary}
	for _, s := range dc1.Servers() {
		wan = append(wan, "-retry-join-wan="+dc1.Address(s))
	}
	// One server keeps dc2 light on a small machine; raft_multiplier 1 lets
	// it re-elect itself in about a second after its swap.
	dc2 := scenario.StartHealthy(t, consulrig.Options{Servers: 1, Clients: 1, Version: scenario.FromVersion, Datacenter: "dc2", NodePrefix: "dc2-",
		RaftMultiplier: 1, ExtraServerArgs: wan, ExtraClientArgs: []string{primary}})
	waitFederated(t, dc1, dc2)

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dc2client := scenario.APIClient(t, dc2, "dc2-c1")
	electionsBefore := scenario.LeaderElections(t, dc1) + scenario.LeaderElections(t, dc2)
	w := dc1.StartWriter("c1", "fedwriter", 50*time.Millisecond)
	writerStopped := false
	defer func() {
		if !writerStopped {
			w.Stop()
		}
	}()

	tr := newFedTransport(dc1, dc2)
	dir := t.TempDir()
	cfg := scenario.BaseConfig(t, dc1, "c1", tr)
	cfg.Snapshot = upgrade.SnapshotDir(dir)
	cfg.Datacenters = map[string]upgrade.Consul{"dc2": upgrade.NewConsul(dc2client)}

	var (
		order      []string // "dc1 swap-server s2", ...
		snapshots  []string // the events' details
		violations []string
	)
	clusterOf := map[string]*consulrig.Cluster{"dc1": dc1, "dc2": dc2}
	viaOf := map[string]string{"dc1": "c1", "dc2": "dc2-c1"}
	cfg.OnEvent = func(e upgrade.Event) {
		t.Logf("event %-14s %-14s %s %s %s %s", e.Kind, e.Step.Kind, e.Step.Datacenter, e.Step.Node, e.Condition, e.Detail)
		switch {
		case e.Kind == upgrade.EventSnapshotSaved:
			snapshots = append(snapshots, e.Detail)
		case e.Kind == upgrade.EventStepStarted && e.Step.Kind == planner.StepSwapServer:
			order = append(order, e.Step.Datacenter+" swap-server "+e.Step.Node)
			// Within its datacenter the leader goes last.
			cl := clusterOf[e.Step.Datacenter]
			if cl == nil {
				violations = append(violations, fmt.Sprintf("server step %s names datacenter %q", e.Step.Node, e.Step.Datacenter))
				return
			}
			leader := scenario.MustLeader(t, cl)
			versions := scenario.MemberVersions(t, scenario.APIClient(t, cl, viaOf[e.Step.Datacenter]))
			if e.Step.Node == leader {
				for _, s := range cl.Servers() {
					if s != leader && versions[s] != scenario.ToVersion {
						violations = append(violations, fmt.Sprintf("%s leader %s swapped while %s still runs %s", e.Step.Datacenter, leader, s, versions[s]))
					}
				}
			}
		case e.Kind == upgrade.EventStepStarted && e.Step.Kind == planner.StepSwapClients:
			order = append(order, e.Step.Datacenter+" swap-clients "+strings.Join(e.Step.Nodes, ","))
		}
	}

	start := time.Now()
	res, err := upgrade.Run(ctx, cfg)
	wall := time.Since(start)
	ws := w.Stop()
	writerStopped = true
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, v := range violations {
		t.Error(v)
	}

	// Primary first: dc1's servers (the leader last, checked above) and its
	// client wave, then dc2's server and client. Which dc1 followers go
	// first depends on which server leads.
	shape := []string{"dc1 swap-server", "dc1 swap-server", "dc1 swap-server", "dc1 swap-clients c1",
		"dc2 swap-server dc2-s1", "dc2 swap-clients dc2-c1"}
	if len(order) != len(shape) {
		t.Fatalf("steps %v, want the shape %v", order, shape)
	}
	var dc1servers []string
	for i, o := range order {
		if !strings.HasPrefix(o, shape[i]) {
			t.Errorf("step %d is %q, want %q: the primary dc1 goes first, servers before clients", i, o, shape[i])
		}
		if f := strings.Fields(o); f[0] == "dc1" && f[1] == "swap-server" {
			dc1servers = append(dc1servers, f[2])
		}
	}
	slices.Sort(dc1servers)
	if !slices.Equal(dc1servers, dc1.Servers()) {
		t.Errorf("dc1 servers swapped %v, want each of %v once", dc1servers, dc1.Servers())
	}

	if len(snapshots) != 2 || !strings.HasPrefix(snapshots[0], "datacenter dc1: ") || !strings.HasPrefix(snapshots[1], "datacenter dc2: ") {
		t.Errorf("snapshot events %q, want one for dc1 then one for dc2", snapshots)
	}
	if len(res.Steps) == 0 || res.Steps[0].Step.Kind != planner.StepSnapshot || len(res.Steps[0].Snapshots) != 2 {
		t.Errorf("first step %+v, want the snapshot of both datacenters", res.Steps[0])
	}
	for _, dc := range []string{"dc1", "dc2"} {
		files, _ := filepath.Glob(filepath.Join(dir, "consul-"+dc+"-"+scenario.FromVersion+"-*.snap"))
		if len(files) != 1 {
			t.Errorf("snapshot files of %s: %v, want 1", dc, files)
			continue
		}
		if fi, err := os.Stat(files[0]); err != nil || fi.Size() == 0 {
			t.Errorf("snapshot %s: %v, size %v", files[0], err, fi)
		}
	}

	for dc, c := range map[string]int{"dc1": 4, "dc2": 2} {
		versions := scenario.MemberVersions(t, scenario.APIClient(t, clusterOf[dc], viaOf[dc]))
		if len(versions) != c {
			t.Errorf("%s has %d members, want %d", dc, len(versions), c)
		}
		for node, v := range versions {
			if v != scenario.ToVersion {
				t.Errorf("%s %s ends on %s, want %s", dc, node, v, scenario.ToVersion)
			}
		}
	}
	if p, _, err := scenario.APIClient(t, dc1, "s1").KV().Get(upgrade.DefaultLockKey, nil); err != nil || p != nil {
		t.Errorf("lock key after the run: %v (err %v), want it released", p, err)
	}
	missing, err := dc1.MissingWrites(ctx, "s1", "fedwriter", ws.Acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Errorf("%d acknowledged writes lost, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	elections := scenario.LeaderElections(t, dc1) + scenario.LeaderElections(t, dc2) - electionsBefore

	t.Logf("FIGURES federation: wall %s; steps %d (%s); writes through dc1's client acked %d, failed %d in %d burst(s), longest burst %s; lost %d; leader elections in logs %d (dc1 + dc2)",
		wall.Round(100*time.Millisecond), len(res.Steps), strings.Join(order, "; "), len(ws.Acked), ws.Failed, ws.Bursts, ws.LongestBurst.Round(time.Millisecond), len(missing), elections)
	if len(ws.Acked) < 100 {
		t.Errorf("the writer acknowledged only %d writes; it did not run through the upgrade", len(ws.Acked))
	}
}
