// Package consulrig runs real Consul clusters on loopback addresses for the
// project's integration tests: it finds (or builds) Consul binaries, claims
// an address block that no other test process uses, starts servers and
// clients through transport/local, waits until the cluster has a leader and
// every member is alive, and stops everything when the test ends.
//
// Address blocks: a cluster claims block N (1..200) by holding an exclusive
// flock on /tmp/consulrig/block-N.lock for its lifetime, so packages that go
// test runs in parallel never collide. Servers get 127.0.N.11, .12, ...;
// clients 127.0.N.21, .22, ..., and past 200 clients 127.N.1.21, ...,
// 127.N.2.21, ... (ClientAddress). Every agent process id is appended to
// /tmp/consulrig/block-N.pids, and agents a crashed earlier run left behind
// are killed (after checking their command line) before the block is reused.
//
// A test uses it like this:
//
//	c := consulrig.Start(t, consulrig.Options{})        // s1..s3 + c1 on 1.12.9
//	leader, err := c.Leader(ctx)
//	err = c.Transport().Swap(ctx, transport.SwapRequest{
//		Node: "s2", Role: transport.RoleServer, From: "1.12.9", To: "1.13.9",
//		StopMode: transport.StopKill,
//	})
//	err = c.WaitHealthy(ctx)                             // leader known, all alive on their versions
//
// Agents of every release scripts/build-consul.sh builds, 0.6.4 to 1.16.1,
// start: the flags that differ by era are in eraFlags (era.go), and the
// readiness checks use only /v1/status/leader, /v1/agent/members and
// /v1/agent/self, which every era has.
//
// Servers run with -log-level=debug (elections can be counted in
// LogPath(node)) and -retry-interval=1s. Options.RaftMultiplier=1 makes a
// one-server cluster ready in about 1.5 s instead of 7 s.
//
// Nothing here skips: a test that cannot get its binaries fails. Stopping is
// by process id only: cleanup SIGKILLs the agents this cluster started, and a
// test binary that dies takes its agents with it (parent-death signal).
package consulrig

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
)

// BinDir returns the directory holding the cached consul-<version> binaries:
// $CONSUL_UPGRADE_BIN_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/consul-upgrade/bin
// (the same rule as scripts/build-consul.sh).
func BinDir(t testing.TB) string {
	t.Helper()
	dir, err := binDir()
	if err != nil {
		t.Fatalf("consulrig: %v", err)
	}
	return dir
}

func binDir() (string, error) {
	if d := os.Getenv("CONSUL_UPGRADE_BIN_DIR"); d != "" {
		return d, nil
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", errors.New("no HOME to find the binary cache in; set CONSUL_UPGRADE_BIN_DIR")
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "consul-upgrade", "bin"), nil
}

// Resolver returns a local.BinaryResolver over BinDir that builds a missing
// version like Binary does. It reports problems as errors rather than
// failing t, because a transport may call it from any goroutine.
func Resolver(t testing.TB) local.BinaryResolver {
	t.Helper()
	root := repoRoot(t)
	return func(version string) (string, error) {
		path, _, err := ensureBinary(root, version)
		return path, err
	}
}

// Binary returns the path of the consul binary for version, building it
// with scripts/build-consul.sh when the cache lacks it (several minutes per
// version on a cold Go cache). A missing Go toolchain or a failed build
// fails the test; it never skips.
func Binary(t testing.TB, version string) string {
	t.Helper()
	path, built, err := ensureBinary(repoRoot(t), version)
	if err != nil {
		t.Fatalf("consulrig: %v", err)
	}
	if built {
		t.Logf("consulrig: built consul %s into %s", version, path)
	}
	return path
}

// ensureBinary returns the cached binary for version, building it when
// missing; built says whether it ran the build script.
func ensureBinary(root, version string) (path string, built bool, err error) {
	if err := transport.ValidateVersion(version); err != nil {
		return "", false, fmt.Errorf("consul binary: %w", err)
	}
	dir, err := binDir()
	if err != nil {
		return "", false, err
	}
	path = filepath.Join(dir, "consul-"+version)
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0 {
		return path, false, nil // the script renames a finished build into place
	}
	script := filepath.Join(root, "scripts", "build-consul.sh")
	if _, err := os.Stat(script); err != nil {
		return "", false, fmt.Errorf("consul %s is not in %s and the build script is missing: %w", version, dir, err)
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "", false, fmt.Errorf("consul %s is not in %s and building it needs the go command, which is not on PATH; install Go or put a consul-%s binary there", version, dir, version)
	}
	// The script takes a per-version lock, so parallel test processes
	// asking for the same version build it once.
	cmd := exec.Command("bash", script, version)
	cmd.Env = append(os.Environ(), "CONSUL_UPGRADE_BIN_DIR="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", false, fmt.Errorf("building consul %s with %s failed (%v); its last output:\n%s", version, script, err, tail(stderr.String(), 40))
	}
	got := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(got, '\n'); i >= 0 {
		got = got[i+1:]
	}
	if got != path {
		return "", false, fmt.Errorf("%s %s printed %q, want %q", script, version, got, path)
	}
	return path, true, nil
}

// repoRoot is the repository's root (the root module, which holds
// scripts/), found from this source file's location (tests/rig/consul).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("consulrig: cannot locate the repository (runtime.Caller failed)")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
