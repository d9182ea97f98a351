package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

func TestPlanRefusesATargetThatIsNotAReleaseNamingTheNearestOnes(t *testing.T) {
	dir := t.TempDir()
	cluster := filepath.Join(dir, "cluster.json")
	os.WriteFile(cluster, []byte(`{"servers": [
		{"name": "s1", "version": "1.12.9", "leader": true, "voter": true, "healthy": true},
		{"name": "s2", "version": "1.12.9", "voter": true, "healthy": true},
		{"name": "s3", "version": "1.12.9", "voter": true, "healthy": true}]}`), 0o644)
	out := filepath.Join(dir, "plan.json")
	code, stdout, stderr := cli(t, "plan", "-cluster", cluster, "-to", "1.13.99", "-out", out)
	if code != exitUsage {
		t.Errorf("exit %d, want 2", code)
	}
	for _, w := range []string{"1.13.99 is not a Consul release: the 1.13 line ends at 1.13.9; nearest: 1.13.9, 1.14.0", "unknown-release"} {
		if !strings.Contains(stdout+stderr, w) {
			t.Errorf("output does not say %q:\nstdout %s\nstderr %s", w, stdout, stderr)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was written for a refused plan", out)
	}
}

func TestApplyRefusesAMissingBinaryWith2AndTouchesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		fake.MissingBinary("s3", "1.13.9")
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		code, stdout, stderr := cli(t, "apply", "-plan", planFile, "-yes", "-snapshot-dir", filepath.Join(dir, "snapshots"))
		if code != exitUsage {
			t.Errorf("exit %d, want 2", code)
		}
		for _, w := range []string{"server s3, for the swap to 1.13.9", "refused before anything was touched"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr does not say %q:\n%s", w, stderr)
			}
		}
		if strings.Contains(stdout, "Halted at step") {
			t.Errorf("stdout reports a halt at a step for a run that touched nothing:\n%s", stdout)
		}
		if s := swaps(fake); len(s) != 0 {
			t.Errorf("swaps %v, want none", s)
		}
		if entries, _ := os.ReadDir(filepath.Join(dir, "snapshots")); len(entries) != 0 {
			t.Errorf("a snapshot was taken: %v", entries)
		}
	})
}

// cannotRollBack is the fake behind a transport that cannot roll back
// (transport/exec without a Rollback command).
type cannotRollBack struct{ *transporttest.Fake }

func (cannotRollBack) CanRollback() error {
	return errors.New(`the exec transport has no Rollback command (Config.Rollback, the inventory's "rollback")`)
}

func TestApplyRollbackThatTheTransportCannotPerformIsRefusedWith2(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		fake := withSim(t, sim)
		testTransport = cannotRollBack{fake}
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		code, stdout, stderr := cli(t, "apply", "-plan", planFile, "-yes", "-rollback")
		if code != exitUsage || !strings.Contains(stderr, `the inventory's "rollback"`) || !strings.Contains(stderr, "refused before anything was touched") {
			t.Errorf("exit %d, stderr %q; want 2, the missing setting and nothing touched", code, stderr)
		}
		if strings.Contains(stdout, "Halted at step") {
			t.Errorf("stdout reports a halt at a step:\n%s", stdout)
		}
		if s := swaps(fake); len(s) != 0 {
			t.Errorf("swaps %v, want none", s)
		}
	})
}
