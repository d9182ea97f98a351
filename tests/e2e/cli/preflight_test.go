package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
)

// TestCLIRefusesAnUnknownTargetAndAMissingBinaryOnARealCluster: on real
// Consul 1.12.9 (3 servers, 1 client; the local transport's binary
// directory holds 1.12.9 only), plan -to 1.13.99 exits 2 naming the
// nearest releases, and apply of a reviewed 1.13.9 plan exits 2 on the
// missing binary with every agent still running its old process.
func TestCLIRefusesAnUnknownTargetAndAMissingBinaryOnARealCluster(t *testing.T) {
	bins := t.TempDir()
	if err := os.Symlink(consulrig.Binary(t, "1.12.9"), filepath.Join(bins, "consul-1.12.9")); err != nil {
		t.Fatal(err)
	}
	cl := consulrig.Start(t, consulrig.Options{Servers: 3, Clients: 1, Version: "1.12.9", Resolver: local.Dir(bins)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	addr := cl.HTTPAddr("c1")
	waitHealthy(t, ctx, addr)

	dir := t.TempDir()
	inv := relayInventory(t, cl, dir)
	sh := func(args ...string) (int, string, string) {
		t.Helper()
		r := consulUpgrade(t, ctx, "", args...)
		t.Logf("$ consul-upgrade %s\n%s%s[exit %d, %s]", r.shown, r.out, r.errs, r.code, r.wall.Round(100*time.Millisecond))
		return r.code, r.out, r.errs
	}

	code, out, errs := sh("plan", "-http-addr", addr, "-to", "1.13.99", "-out", filepath.Join(dir, "bad.json"))
	if code != exitUsage || !strings.Contains(out+errs, "1.13.99 is not a Consul release: the 1.13 line ends at 1.13.9; nearest: 1.13.9, 1.14.0") {
		t.Errorf("plan -to 1.13.99: exit %d, want 2 and the nearest releases", code)
	}

	pids := map[string]int{}
	for _, n := range cl.Nodes() {
		pids[n] = cl.Transport().PID(n)
	}
	planFile, snaps := filepath.Join(dir, "plan.json"), filepath.Join(dir, "snapshots")
	if code, _, _ := sh("plan", "-http-addr", addr, "-to", "1.13.9", "-out", planFile); code != exitOK {
		t.Fatalf("plan -to 1.13.9: exit %d", code)
	}
	code, out, errs = sh("apply", "-inventory", inv, "-http-addr", addr, "-plan", planFile, "-snapshot-dir", snaps, "-yes")
	if code != exitUsage || !strings.Contains(errs, "the run was refused before anything was touched") || !strings.Contains(errs, "consul-1.13.9") {
		t.Errorf("apply with consul 1.13.9 missing: exit %d, want 2, the missing file and nothing touched", code)
	}
	if strings.Contains(out, "Halted at step") {
		t.Errorf("apply reported a halt at a step for a run that touched nothing")
	}
	for n, pid := range pids {
		if now := cl.Transport().PID(n); now != pid || !consulrig.ProcessAlive(pid) {
			t.Errorf("%s was touched: pid %d -> %d", n, pid, now)
		}
	}
	if entries, _ := os.ReadDir(snaps); len(entries) != 0 {
		t.Errorf("a snapshot was taken: %v", entries)
	}
}
