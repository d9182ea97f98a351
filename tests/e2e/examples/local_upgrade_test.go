package examples_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRunUpgradesARealLoopbackCluster runs the example end to end on real
// Consul (building the binaries if the cache lacks them) on 127.0.250.x, a
// block the test rig never hands out.
func TestRunUpgradesARealLoopbackCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	code, out, errb := example(t, ctx, "local-upgrade", "-net", "127.0.250", "-build-script", filepath.Join(root, "scripts", "build-consul.sh"), "-keys", "50")
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errb)
	if code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	text := out
	for _, want := range []string{
		"wrote 50 keys through c1",
		"snapshot-saved",
		"verified: 50 keys intact; s1, s2, s3 and c1 all run 1.13.9",
		"tearing down",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Every server is swapped once, and the client after all of them.
	started := regexp.MustCompile(`step-started\s+(swap-server|swap-clients)\s+(\S+)`).FindAllStringSubmatch(text, -1)
	var order []string
	for _, m := range started {
		order = append(order, m[2])
	}
	if len(order) != 4 || order[3] != "c1" {
		t.Errorf("swap order = %v, want three servers then c1", order)
	}
}
