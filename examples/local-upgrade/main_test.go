package main

import (
	"bytes"
	"context"
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
	var out, errb bytes.Buffer
	code := run(ctx, []string{"-net", "127.0.250", "-build-script", "../../scripts/build-consul.sh", "-keys", "50"}, &out, &errb)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	if code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	text := out.String()
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

func TestRunRefusesBadFlagsWithStatus2(t *testing.T) {
	cases := map[string][]string{
		"an unknown flag":                 {"-nope"},
		"a version that is not X.Y.Z":     {"-to", "latest"},
		"a downgrade":                     {"-from", "1.13.9", "-to", "1.12.9"},
		"a non-loopback network":          {"-net", "10.0.0"},
		"a stray argument":                {"extra"},
		"a missing binary and no builder": {"-bin-dir", "/nonexistent", "-build-script", "/nonexistent/build.sh"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", code, errb.String())
			}
			if errb.Len() == 0 {
				t.Error("no error message on stderr")
			}
			if strings.Contains(out.String(), "starting") {
				t.Error("a refused run started agents")
			}
		})
	}
}
