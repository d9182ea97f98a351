package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
)

// fakeConsul writes dir/consul-<name> as a script whose `version` prints
// out (a stand-in for a consul binary: these tests only run `version`).
func fakeConsul(t *testing.T, dir, name, out string) {
	t.Helper()
	writeScript(t, dir, "consul-"+name, "[ \"$1\" = version ] || exit 3\nprintf '%s\\n' '"+out+"'")
}

func checkerFor(t *testing.T, dir string) *local.Transport {
	t.Helper()
	tr, err := local.New(local.Dir(dir), agentAt(t.TempDir(), "s1", "127.0.250.21"))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestCheckArtifactRunsTheResolvedBinarysVersion(t *testing.T) {
	dir := t.TempDir()
	fakeConsul(t, dir, "1.13.9", "Consul v1.13.9\nRevision 1234\nProtocol 2 spoken by default")
	fakeConsul(t, dir, "1.14.8", "Consul v1.14.8-dev\nRevision 1234")
	fakeConsul(t, dir, "1.15.4", "Consul v1.12.9\nRevision 1234")
	fakeConsul(t, dir, "1.16.1", "hello, I am not consul")
	writeScript(t, dir, "consul-1.17.4", "echo 'panic: broken' >&2; exit 2")
	if err := os.WriteFile(filepath.Join(dir, "consul-1.18.2"), []byte("#!/bin/sh\necho Consul v1.18.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := checkerFor(t, dir)
	ctx := context.Background()

	for _, ok := range []string{"1.13.9", "1.14.8"} {
		if err := tr.CheckArtifact(ctx, "s1", transport.RoleServer, ok); err != nil {
			t.Errorf("CheckArtifact(%s) = %v, want nil: the binary answers with that version", ok, err)
		}
	}
	for _, tc := range []struct {
		version string
		want    []string
	}{
		{"1.13.8", []string{"does not exist", filepath.Join(dir, "consul-1.13.8"), "scripts/build-consul.sh 1.13.8"}},
		{"1.15.4", []string{"answers `version` with 1.12.9", filepath.Join(dir, "consul-1.15.4")}},
		{"1.16.1", []string{"holds no \"Consul vX.Y.Z\" line"}},
		{"1.17.4", []string{"failed", "panic: broken"}},
		{"1.18.2", []string{"binary resolver", "not an executable file"}},
	} {
		err := tr.CheckArtifact(ctx, "s1", transport.RoleServer, tc.version)
		var ae *transport.ArtifactError
		if !errors.As(err, &ae) || !errors.Is(err, transport.ErrArtifact) {
			t.Errorf("CheckArtifact(%s) = %v, want a *transport.ArtifactError wrapping ErrArtifact", tc.version, err)
			continue
		}
		if ae.Node != "s1" || ae.Version != tc.version {
			t.Errorf("ArtifactError names node %q version %q, want s1 %s", ae.Node, ae.Version, tc.version)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("CheckArtifact(%s) = %q, want it to mention %q", tc.version, err, w)
			}
		}
	}
	if pid := tr.PID("s1"); pid != 0 {
		t.Errorf("a check started the agent (pid %d); it must touch nothing", pid)
	}
}

func TestCheckArtifactRefusesWhatSwapRefuses(t *testing.T) {
	tr := checkerFor(t, t.TempDir())
	ctx := context.Background()
	if err := tr.CheckArtifact(ctx, "ghost", transport.RoleServer, "1.13.9"); !errors.Is(err, transport.ErrUnknownNode) {
		t.Errorf("unknown node: %v, want ErrUnknownNode", err)
	}
	if err := tr.CheckArtifact(ctx, "s1", transport.RoleServer, "v1.13.9"); !errors.Is(err, transport.ErrInvalidRequest) {
		t.Errorf("malformed version: %v, want ErrInvalidRequest", err)
	}
	if err := tr.CheckArtifact(ctx, "s1", transport.RoleClient, "1.13.9"); !errors.Is(err, transport.ErrInvalidRequest) {
		t.Errorf("a server checked as a client: %v, want ErrInvalidRequest", err)
	}
}

// A pre-flight asks about every node, and hundreds of clients share one
// binary: its `version` runs once for them all (bench-scale.sh 3 100 1.15.4
// 1.16.1 had 103 runs of 1.16.1's `version` at once time out on 2 cores),
// and again once the file is replaced.
func TestCheckArtifactRunsOneBinarysVersionOnceForEveryNodeUntilTheFileChanges(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	body := func(v string) string {
		return "[ \"$1\" = version ] || exit 3\necho run >> '" + runs + "'\necho 'Consul v" + v + "'"
	}
	path := writeScript(t, dir, "consul-1.16.1", body("1.16.1"))
	var agents []local.Agent
	for i := range 50 {
		a := agentAt(t.TempDir(), fmt.Sprintf("c%d", i+1), fmt.Sprintf("127.0.250.%d", 21+i))
		a.Role = transport.RoleClient
		agents = append(agents, a)
	}
	tr, err := local.New(local.Dir(dir), agents...)
	if err != nil {
		t.Fatal(err)
	}
	ran := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "run")
	}
	var wg sync.WaitGroup
	errs := make([]error, len(agents))
	for i, a := range agents {
		wg.Go(func() { errs[i] = tr.CheckArtifact(t.Context(), a.Name, transport.RoleClient, "1.16.1") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("CheckArtifact: %v", err)
	}
	if n := ran(); n != 1 {
		t.Errorf("`version` ran %d times for 50 nodes sharing one binary, want 1", n)
	}

	// The file is replaced by another version's binary: checked again, refused.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	writeScript(t, dir, "consul-1.16.1", body("1.15.4")+" # another build")
	err = tr.CheckArtifact(t.Context(), "c7", transport.RoleClient, "1.16.1")
	var ae *transport.ArtifactError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "answers `version` with 1.15.4") {
		t.Errorf("after the binary was replaced: %v, want an ArtifactError saying it answers 1.15.4", err)
	}
	if n := ran(); n != 2 {
		t.Errorf("`version` ran %d times in all, want 2 (once more for the replaced file)", n)
	}
}
