package rehearsal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// cluster is a datacenter of n servers and m clients on version v.
func cluster(v string, n, m int) *planner.Cluster {
	c := &planner.Cluster{}
	for i := range n {
		c.Servers = append(c.Servers, planner.Server{Name: "s" + string(rune('1'+i)), Version: v, Voter: true, Healthy: true, Leader: i == 0})
	}
	for i := range m {
		c.Clients = append(c.Clients, planner.Client{Name: "web-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), Version: v})
	}
	return c
}

func TestMissingBinariesAreNamedWithTheCommandThatBuildsThem(t *testing.T) {
	dir := t.TempDir()
	_, err := Run(t.Context(), Options{Cluster: cluster("1.14.8", 3, 5), Target: "1.16.1", BinDir: dir, OutDir: t.TempDir()})
	var missing []*MissingBinaryError
	for _, e := range unjoin(err) {
		var me *MissingBinaryError
		if errors.As(e, &me) {
			missing = append(missing, me)
		}
	}
	// 1.14.8 -> 1.16.1 is one hop (at most two majors): two versions.
	if len(missing) != 2 {
		t.Fatalf("error %v: want a *MissingBinaryError for 1.14.8 and 1.16.1", err)
	}
	for i, v := range []string{"1.14.8", "1.16.1"} {
		m := missing[i]
		if m.Version != v || m.Path != filepath.Join(dir, "consul-"+v) {
			t.Errorf("missing[%d] = %s at %s, want %s in %s", i, m.Version, m.Path, v, dir)
		}
		want := "CONSUL_UPGRADE_BIN_DIR=" + dir + " scripts/build-consul.sh " + v
		if m.Command != want || !strings.Contains(m.Error(), want) {
			t.Errorf("missing[%d] command %q (error %q), want %q", i, m.Command, m.Error(), want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the refused rehearsal left files in the binaries dir: %v", entries)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func TestOptionsAreCheckedBeforeAnythingStarts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opt   Options
		field string
	}{
		{"neither plan nor cluster", Options{OutDir: "x"}, "Plan"},
		{"no output folder", Options{Cluster: cluster("1.15.4", 3, 0), Target: "1.16.1"}, "OutDir"},
		{"a target that is not a version", Options{Cluster: cluster("1.15.4", 3, 0), Target: "v1.16", OutDir: "x"}, "Target"},
		{"too many clients", Options{Cluster: cluster("1.15.4", 3, 0), Target: "1.16.1", OutDir: "x", Clients: MaxClients + 1}, "Clients"},
		{"a plan and another target", Options{Plan: &planner.UpgradePlan{Target: "1.16.1"}, Target: "1.15.4", OutDir: "x"}, "Target"},
		{"more servers than the loopback plan holds", Options{Cluster: cluster("1.15.4", MaxServers+1, 0), Target: "1.16.1", OutDir: "x"}, "Cluster"},
		{"a plan that swaps no server", Options{Plan: &planner.UpgradePlan{Target: "1.16.1", Steps: []planner.Step{}}, OutDir: "x"}, "Plan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(t.Context(), tc.opt)
			var oe *OptionsError
			if !errors.As(err, &oe) || oe.Field != tc.field {
				t.Fatalf("error %v, want an *OptionsError on %s", err, tc.field)
			}
		})
	}
}

func TestTheShapeOfAPlanIsItsServersAndASampleOfItsClients(t *testing.T) {
	c := cluster("1.15.4", 3, 40)
	c.Clients[30].Version = "1.14.8"
	plan, err := planner.Plan(*c, "1.16.1", planner.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := shapeOfPlan(plan, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.servers) != 3 || s.realClients != 40 || len(s.clients) != 4 {
		t.Fatalf("shape %+v: want 3 servers and 4 of the 40 clients", s)
	}
	for _, a := range s.servers {
		if a.version != "1.15.4" {
			t.Errorf("server %s on %s, want 1.15.4", a.name, a.version)
		}
	}
	fromCluster, err := shapeOfCluster(*c, 4)
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]bool{}
	for _, a := range fromCluster.clients {
		versions[a.version] = true
	}
	if !versions["1.14.8"] || !versions["1.15.4"] {
		t.Errorf("sampled clients %+v: want both client versions of the cluster kept", fromCluster.clients)
	}
}
