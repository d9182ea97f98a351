package upgrade

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// fedRig is two simulated datacenters of one WAN federation: dc1 (the
// primary, nodes s1.., c1..) and dc2 (nodes dc2-s1.., dc2-c1..), one fake
// transport that moves whichever owns the node, and a config whose own
// datacenter is dc1 and whose Datacenters adds dc2. log records snapshots
// and swaps in the order they happened.
type fedRig struct {
	dc1, dc2 *consultest.Cluster
	tr       *fakeTransport
	cfg      Config
	log      []string // "snapshot dc1", "swap s2", ...
	events   []Event
}

func newFedRig(t *testing.T, dc2Opts ...consultest.Option) *fedRig {
	common := []consultest.Option{
		consultest.WithStableSince(time.Now().Add(-time.Hour)),
		consultest.WithSnapshot(makeSnapshot(t, snapshotFiles{})),
	}
	r := &fedRig{
		dc1: consultest.NewCluster(3, 2, "1.12.9", append(common,
			consultest.WithDatacenter("dc1", "dc1"), consultest.WithPeerDatacenters("dc2"))...),
		dc2: consultest.NewCluster(3, 1, "1.12.9", append(append(common,
			consultest.WithDatacenter("dc2", "dc1"), consultest.WithNodePrefix("dc2-")), dc2Opts...)...),
	}
	r.tr = newFakeTransport(func(node, version string, ok bool) {
		sim := r.dc1
		if strings.HasPrefix(node, "dc2-") {
			sim = r.dc2
		}
		r.log = append(r.log, "swap "+node)
		if err := sim.Swap(node, version, ok); err != nil {
			t.Error(err)
		}
	})
	r.cfg = Config{
		Consul:      inProcessConsul(t, r.dc1),
		Datacenters: map[string]Consul{"dc2": inProcessConsul(t, r.dc2)},
		Transport:   r.tr,
		Target:      "1.13.9",
		Snapshot: func(_ context.Context, dc, v string) (SnapshotSink, error) {
			r.log = append(r.log, "snapshot "+dc+" "+v)
			return &memSink{}, nil
		},
		OnEvent:     func(e Event) { r.events = append(r.events, e) },
		GateTimeout: 2 * time.Minute,
	}
	return r
}

func TestRunTakesAFederationToTheTargetPrimaryFirstLeaderLastInEachDatacenter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFedRig(t)
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		for _, sim := range []*consultest.Cluster{r.dc1, r.dc2} {
			for _, n := range sim.Nodes() {
				if n.Version != "1.13.9" {
					t.Errorf("%s runs %s after the run, want 1.13.9", n.Name, n.Version)
				}
			}
		}
		// One verified snapshot per datacenter, the own one first, before
		// any swap; then dc1's servers (leader s1 last) and clients, then
		// dc2's servers (leader dc2-s1 last) and client.
		want := []string{"snapshot dc1 1.12.9", "snapshot dc2 1.12.9",
			"swap s2", "swap s3", "swap s1", "swap c1", "swap c2",
			"swap dc2-s2", "swap dc2-s3", "swap dc2-s1", "swap dc2-c1"}
		if !slices.Equal(r.log, want) {
			t.Errorf("order:\n got %v\nwant %v", r.log, want)
		}
		for _, sim := range []*consultest.Cluster{r.dc1, r.dc2} {
			if n := sim.Calls("/v1/snapshot"); n != 1 {
				t.Errorf("%s served /v1/snapshot %d times, want 1 (its own raft)", sim.Nodes()[0].Name, n)
			}
			// Its baseline (1), the pin of its dead-server cleanup before
			// its first server stop (read, compare-and-set, read back: 3)
			// and the restore at the end (read, compare-and-set: 2): each
			// datacenter's autopilot is its own (autopilot.go).
			if n := sim.Calls("/v1/operator/autopilot/configuration"); n != 6 {
				t.Errorf("%s served the autopilot configuration %d times, want 6 (its baseline, its pin, its restore)", sim.Nodes()[0].Name, n)
			}
			if ac := sim.AutopilotConfig(); !ac.CleanupDeadServers || len(sim.AutopilotWrites()) != 2 {
				t.Errorf("%s: CleanupDeadServers %t after the run with writes %+v, want it pinned and restored (on)", sim.Nodes()[0].Name, ac.CleanupDeadServers, sim.AutopilotWrites())
			}
		}
		if got := slices.Sorted(func(yield func(string) bool) {
			for dc := range res.Baselines {
				if !yield(dc) {
					return
				}
			}
		}); !slices.Equal(got, []string{"dc1", "dc2"}) {
			t.Errorf("baselines of %v, want dc1 and dc2", got)
		}
		var snap *StepRecord
		for i := range res.Steps {
			if res.Steps[i].Step.Kind == planner.StepSnapshot {
				snap = &res.Steps[i]
			}
		}
		if snap == nil || len(snap.Snapshots) != 2 || snap.Snapshot == nil || snap.Snapshot.Index != snap.Snapshots["dc1"].Index {
			t.Errorf("snapshot record %+v, want dc1's and dc2's archives, dc1's as Snapshot", snap)
		}
		if len(r.dc1.HeldLocks()) != 0 || len(r.dc2.HeldLocks()) != 0 {
			t.Errorf("locks still held: dc1 %v, dc2 %v", r.dc1.HeldLocks(), r.dc2.HeldLocks())
		}
		if n := r.dc2.Calls("/v1/session/create"); n != 0 {
			t.Errorf("dc2 served %d session creations, want 0: the lock lives in the run's own datacenter", n)
		}
	})
}

func TestRunGatesEachStepWithItsOwnDatacentersAutopilot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// dc2's autopilot asks for 40s of stability, dc1's for the default
		// 3s: a dc2 server step lasts at least 40s, a dc1 one less.
		r := newFedRig(t, consultest.WithStabilizationTime(40*time.Second))
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		servers := 0
		for _, rec := range res.Steps {
			if rec.Step.Kind != planner.StepSwapServer {
				continue
			}
			servers++
			took := rec.Ended.Sub(rec.Started)
			if long := took >= 40*time.Second; long != (rec.Step.Datacenter == "dc2") {
				t.Errorf("%s in %s took %s; want >= 40s exactly for dc2's servers", rec.Step.Node, rec.Step.Datacenter, took)
			}
		}
		if servers != 6 {
			t.Errorf("%d server steps, want 6", servers)
		}
		if b := res.Baselines["dc2"].ServerStabilizationTime; b != 40*time.Second {
			t.Errorf("dc2 baseline stabilization %s, want 40s", b)
		}
	})
}

func TestRunHaltsOnASecondaryServerThatIsNeverHealthyAndTouchesNothingAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFedRig(t)
		swap := r.tr.onSwap
		r.tr.onSwap = func(node, version string, ok bool) {
			swap(node, version, ok)
			if node == "dc2-s2" {
				mustDo(t, r.dc2.SetNeverHealthy(node, true))
			}
		}
		r.cfg.GateTimeout = 30 * time.Second
		_, err := Run(t.Context(), r.cfg)
		var ge *GateError
		if !errors.As(err, &ge) || ge.Node != "dc2-s2" || ge.Step.Datacenter != "dc2" {
			t.Fatalf("err = %v, want a gate halt on dc2-s2 in dc2", err)
		}
		if last := r.log[len(r.log)-1]; last != "swap dc2-s2" {
			t.Errorf("last action %q, want the swap of dc2-s2 (nothing after it)", last)
		}
		if v := r.dc2.Version("dc2-s3"); v != "1.12.9" {
			t.Errorf("dc2-s3 runs %s, want untouched 1.12.9", v)
		}
	})
}

func TestRunRefusesADatacentersEntryForItsOwnDatacenter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFedRig(t)
		r.cfg.Datacenters = map[string]Consul{"dc1": r.cfg.Consul}
		_, err := Run(t.Context(), r.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "Datacenters" || ce.Value != `"dc1"` {
			t.Fatalf("err = %v, want a *ConfigError naming Datacenters key dc1", err)
		}
		if len(r.log) != 0 {
			t.Errorf("acted: %v", r.log)
		}
	})
}

func TestRunRefusesADatacentersEntryKeyedByAnotherDatacentersName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFedRig(t)
		r.cfg.Datacenters = map[string]Consul{"dc3": r.cfg.Datacenters["dc2"]}
		_, err := Run(t.Context(), r.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Value != `"dc3"` || !strings.Contains(ce.Problem, "datacenter dc2") {
			t.Fatalf("err = %v, want a *ConfigError saying key dc3 is an agent of dc2", err)
		}
		if len(r.log) != 0 {
			t.Errorf("acted: %v", r.log)
		}
	})
}

func TestValidateRefusesANilOrUnnamedDatacenterConsul(t *testing.T) {
	r := newFedRig(t)
	r.cfg.Datacenters = map[string]Consul{"dc2": nil, "": r.cfg.Consul}
	err := r.cfg.Validate()
	for _, want := range []string{`Datacenters = "dc2": maps to a nil Consul`, `Datacenters = "": has an empty datacenter name`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
}

func TestRunLeavesADatacenterItHasNoConsulForUnobserved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFedRig(t)
		r.cfg.Datacenters = nil
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		for _, n := range r.dc2.Nodes() {
			if n.Version != "1.12.9" {
				t.Errorf("%s of the unobserved dc2 runs %s, want it untouched", n.Name, n.Version)
			}
		}
		f := planner.Check(res.Cluster, "1.13.9", planner.Policy{})
		found := false
		for _, x := range f {
			found = found || x.Rule == planner.PrecheckDatacenterNotSeen
		}
		if !found {
			t.Errorf("findings %v lack %s", f, planner.PrecheckDatacenterNotSeen)
		}
		if want := []string{"snapshot dc1 1.12.9", "swap s2", "swap s3", "swap s1", "swap c1", "swap c2"}; !slices.Equal(r.log, want) {
			t.Errorf("order %v, want %v", r.log, want)
		}
	})
}

func TestSnapshotDirNamesEachDatacentersFileInAFederatedRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFedRig(t)
		dir := t.TempDir()
		r.cfg.Snapshot = SnapshotDir(dir)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if len(names) != 2 || !strings.HasPrefix(names[0], "consul-dc1-1.12.9-") || !strings.HasPrefix(names[1], "consul-dc2-1.12.9-") {
			t.Fatalf("files %v, want consul-dc1-1.12.9-<time>.snap and consul-dc2-1.12.9-<time>.snap", names)
		}
		for _, n := range names {
			f, err := os.Open(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := VerifySnapshot(f); err != nil {
				t.Errorf("%s: %v", n, err)
			}
			f.Close()
		}
	})
}

// DiscoverDatacenters observes what Run observes with Config.Datacenters:
// the plan made from it is the dry run's, every datacenter's agents
// included.
func TestDiscoverDatacentersSeesTheFederationAsRunDoes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFedRig(t)
		c, err := DiscoverDatacenters(t.Context(), r.cfg.Consul, r.cfg.Datacenters)
		if err != nil {
			t.Fatalf("DiscoverDatacenters: %v", err)
		}
		var names []string
		for _, s := range c.Servers {
			names = append(names, s.Datacenter+"/"+s.Name)
		}
		if want := []string{"dc2/dc2-s1", "dc2/dc2-s2", "dc2/dc2-s3", "dc1/s1", "dc1/s2", "dc1/s3"}; !slices.Equal(names, want) {
			t.Errorf("servers %v, want %v", names, want)
		}
		if len(c.Clients) != 3 || len(c.Datacenters) != 2 || !c.Datacenters[0].Primary || c.Datacenters[1].Name != "dc2" {
			t.Errorf("clients %+v, datacenters %+v; want 3 clients, dc1 (primary) and dc2", c.Clients, c.Datacenters)
		}
		p, err := planner.Plan(c, "1.13.9", planner.Policy{})
		if err != nil {
			t.Fatal(err)
		}
		dry := r.cfg
		dry.DryRun = true
		res, err := Run(t.Context(), dry)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Steps) != len(res.Plan.Steps) {
			t.Fatalf("plan of DiscoverDatacenters has %d steps, the dry run's %d", len(p.Steps), len(res.Plan.Steps))
		}
		for i := range p.Steps {
			if a, b := p.Steps[i].String(), res.Plan.Steps[i].String(); a != b {
				t.Errorf("step %d: %s, the dry run's %s", i+1, a, b)
			}
		}

		one, err := DiscoverDatacenters(t.Context(), r.cfg.Consul, nil)
		alone, derr := Discover(t.Context(), r.cfg.Consul)
		if err != nil || derr != nil || len(one.Servers) != 3 || len(one.Servers) != len(alone.Servers) {
			t.Errorf("without others: %d servers (%v), Discover %d (%v); want dc1's 3 from both", len(one.Servers), err, len(alone.Servers), derr)
		}
	})
}

func TestDiscoverDatacentersRefusesAMapThatDoesNotNameEachAgentsDatacenter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFedRig(t)
		for name, tc := range map[string]struct {
			others map[string]Consul
			want   string
		}{
			"the own datacenter":             {map[string]Consul{"dc1": r.cfg.Datacenters["dc2"]}, `Datacenters = "dc1": names the datacenter of Config.Consul itself`},
			"an agent of another datacenter": {map[string]Consul{"dc3": r.cfg.Datacenters["dc2"]}, `Datacenters = "dc3": maps to an agent of datacenter dc2`},
			"an empty name":                  {map[string]Consul{"": r.cfg.Datacenters["dc2"]}, `has an empty datacenter name`},
			"a nil Consul":                   {map[string]Consul{"dc2": nil}, `Datacenters = "dc2": maps to a nil Consul`},
		} {
			_, err := DiscoverDatacenters(t.Context(), r.cfg.Consul, tc.others)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v; want a *ConfigError saying %q", name, err, tc.want)
			}
		}
	})
}
