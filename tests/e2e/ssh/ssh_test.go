// Package ssh_test runs transport/ssh against a real OpenSSH server on
// loopback (tests/rig/sshd): the transport conformance suite, atomic
// installs, checksums, host keys, timeouts, fetching from a mirror, an
// ssh-agent, and a real Consul agent swapped over SSH. What the transport
// refuses before it connects is unit-tested in transport/ssh.
package ssh_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	sshrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/sshd"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

const (
	fromVersion = "1.12.9"
	toVersion   = "1.13.9"
)

// fakeConsul is a shell script standing in for a consul binary of one
// version: `version` prints what consul prints, `agent RUNFILE` records the
// version it runs as and then sleeps like a long-running agent. (The sleep
// gets SIGINT back: a shell's background job starts with it ignored, and a
// real agent leaves on it.)
func fakeConsul(version string) []byte {
	return []byte(`#!/bin/sh
case "$1" in
version) printf 'Consul v%s\nRevision fake\n' '` + version + `' ;;
agent) printf '%s\n' '` + version + `' > "$2"; exec env --default-signal=INT sleep 100000 ;;
*) echo "fake consul: unknown command $1" >&2; exit 2 ;;
esac
`)
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// fakeResolver serves fake binaries with their true checksums.
func fakeResolver(ctx context.Context, version string) (io.ReadCloser, string, error) {
	b := fakeConsul(version)
	return io.NopCloser(bytes.NewReader(b)), sum(b), nil
}

// fakeHost is a node whose agent is a fake consul started by a pidfile
// recipe on this machine, reached through the loopback sshd.
type fakeHost struct {
	dir, bin, run, pid string
}

func newFakeHost(t *testing.T, version string) *fakeHost {
	t.Helper()
	dir := t.TempDir()
	h := &fakeHost{dir: dir, bin: filepath.Join(dir, "bin", "consul"), run: filepath.Join(dir, "running-version"), pid: filepath.Join(dir, "consul.pid")}
	if err := os.MkdirAll(filepath.Dir(h.bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.bin, fakeConsul(version), 0o755); err != nil {
		t.Fatal(err)
	}
	start := h.host(sshrig.Server{}).StartCmd
	argv := append([]string{}, start...)
	argv[3] = h.bin
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("start fake agent: %v: %s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if v, running, _ := h.state(); running && v == version {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fake agent did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(h.pid); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return h
}

// host is the ssh.Host that drives this fake agent.
func (h *fakeHost) host(s sshrig.Server) ssh.Host {
	return ssh.Host{
		Addr:       s.Addr,
		User:       s.User,
		BinaryPath: h.bin,
		StartCmd:   []string{"sh", "-c", `rm -f "$1"; nohup "$0" agent "$1" </dev/null >/dev/null 2>&1 & echo $! > "$2"`, "{{.BinaryPath}}", h.run, h.pid},
		StopCmd:    []string{"sh", "-c", `p=$(cat "$0") || exit 1; kill -s "$1" "$p"`, h.pid, "{{.Signal}}"},
		// Running: the pid is alive, not a zombie, and the agent recorded
		// its version.
		CheckCmd:       []string{"sh", "-c", `p=$(cat "$0" 2>/dev/null) && [ -r /proc/$p/stat ] && [ "$(cut -d' ' -f3 /proc/$p/stat)" != Z ] && [ -s "$1" ]`, h.pid, h.run},
		CommandTimeout: 20 * time.Second,
		StopTimeout:    10 * time.Second,
		StartTimeout:   10 * time.Second,
	}
}

// state is what runs, seen from the host: the version the agent recorded,
// whether its process lives, and its pid and start time as incarnation.
func (h *fakeHost) state() (version string, running bool, incarnation string) {
	b, err := os.ReadFile(h.pid)
	if err != nil {
		return "", false, ""
	}
	pid := strings.TrimSpace(string(b))
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", false, pid
	}
	fields := strings.Fields(string(stat))
	if len(fields) < 22 || fields[2] == "Z" {
		return "", false, pid
	}
	v, _ := os.ReadFile(h.run)
	return strings.TrimSpace(string(v)), len(v) > 0, pid + "@" + fields[21]
}

func newTransport(t *testing.T, s *sshrig.Server, hosts map[string]ssh.Host, opts ...ssh.Option) *ssh.Transport {
	t.Helper()
	opts = append([]ssh.Option{ssh.WithKeyFile(s.KeyFile), ssh.WithKnownHosts(s.KnownHosts), ssh.WithResolver(fakeResolver)}, opts...)
	tr, err := ssh.New(hosts, opts...)
	if err != nil {
		t.Fatalf("ssh.New: %v", err)
	}
	return tr
}

func TestConformanceOverRealSSHD(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	for _, role := range []transport.Role{transport.RoleClient, transport.RoleServer} {
		t.Run(string(role), func(t *testing.T) {
			t.Parallel()
			transporttest.Run(t, func(t *testing.T) transporttest.Harness {
				fh := newFakeHost(t, fromVersion)
				tr := newTransport(t, s, map[string]ssh.Host{"node-1": fh.host(*s)}, ssh.WithResolver(resolverWithout(missingVersion)))
				return transporttest.Harness{
					Transport: tr, Node: "node-1", Role: role, From: fromVersion, To: toVersion, Missing: missingVersion,
					State: func(ctx context.Context, node string) (string, bool, string, error) {
						v, r, inc := fh.state()
						return v, r, inc, nil
					},
					Timeout: time.Minute,
				}
			})
		})
	}
}

func TestSwapInstallsAtomicallyAndKeepsThePreviousBinary(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	tr := newTransport(t, s, map[string]ssh.Host{"c1": fh.host(*s)})
	before, err := os.Stat(fh.bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: fromVersion, To: toVersion, StopMode: transport.StopKill}); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	prev, err := os.Stat(fh.bin + ".prev")
	if err != nil {
		t.Fatalf("no previous binary kept: %v", err)
	}
	if !os.SameFile(before, prev) {
		t.Error("the .prev binary is not the old binary's inode (want a hard link to it)")
	}
	after, _ := os.Stat(fh.bin)
	if os.SameFile(before, after) {
		t.Error("the binary path still points at the old inode, want the new file renamed over it")
	}
	if got, _ := os.ReadFile(fh.bin); !bytes.Equal(got, fakeConsul(toVersion)) {
		t.Error("installed binary differs from the artifact")
	}
	if v, running, _ := fh.state(); v != toVersion || !running {
		t.Errorf("after the swap the agent runs %q (running %v), want %s", v, running, toVersion)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(fh.bin), ".consul.upgrade.*"))
	if len(leftovers) > 0 {
		t.Errorf("staging files left behind: %v", leftovers)
	}
}

func TestWrongChecksumInstallsNothingAndLeavesTheAgentRunning(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	wrong := strings.Repeat("ab", 32)
	bad := func(ctx context.Context, version string) (io.ReadCloser, string, error) {
		return io.NopCloser(bytes.NewReader(fakeConsul(version))), wrong, nil
	}
	tr := newTransport(t, s, map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithResolver(bad))
	oldBin, _ := os.ReadFile(fh.bin)
	v0, r0, inc0 := fh.state()

	err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: fromVersion, To: toVersion, StopMode: transport.StopKill})
	var ce *ssh.ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("Swap with a wrong checksum = %v, want a *ssh.ChecksumError", err)
	}
	if !errors.Is(err, transport.ErrArtifact) {
		t.Errorf("error %v does not wrap transport.ErrArtifact", err)
	}
	if ce.Want != wrong || ce.Got != sum(fakeConsul(toVersion)) || ce.Node != "c1" {
		t.Errorf("ChecksumError = %+v, want Want %s, Got the artifact's real sum, Node c1", ce, wrong)
	}
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Phase != transport.PhaseStage {
		t.Errorf("error %v is not a SwapError in phase stage", err)
	}
	if got, _ := os.ReadFile(fh.bin); !bytes.Equal(got, oldBin) {
		t.Error("the binary was replaced despite the wrong checksum")
	}
	if _, err := os.Stat(fh.bin + ".prev"); !os.IsNotExist(err) {
		t.Errorf("a .prev binary was made despite the wrong checksum (stat: %v)", err)
	}
	if v, r, inc := fh.state(); v != v0 || r != r0 || inc != inc0 || !r {
		t.Errorf("agent changed: %q %v %q -> %q %v %q, want it untouched and running", v0, r0, inc0, v, r, inc)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(fh.bin), ".consul.upgrade.*"))
	if len(leftovers) > 0 {
		t.Errorf("staging files left behind: %v", leftovers)
	}
}

func TestArtifactOfAnotherVersionIsRefusedBeforeInstall(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	// The checksum is right, but the bytes are another release.
	mislabelled := func(ctx context.Context, version string) (io.ReadCloser, string, error) {
		b := fakeConsul("1.11.0")
		return io.NopCloser(bytes.NewReader(b)), sum(b), nil
	}
	tr := newTransport(t, s, map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithResolver(mislabelled))
	_, _, inc0 := fh.state()
	err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, To: toVersion, StopMode: transport.StopKill})
	if !errors.Is(err, transport.ErrArtifact) || !strings.Contains(err.Error(), "1.11.0") {
		t.Fatalf("Swap with a 1.11.0 binary for %s = %v, want ErrArtifact naming 1.11.0", toVersion, err)
	}
	if got, _ := os.ReadFile(fh.bin); !bytes.Equal(got, fakeConsul(fromVersion)) {
		t.Error("a binary of the wrong version was installed")
	}
	if v, r, inc := fh.state(); v != fromVersion || !r || inc != inc0 {
		t.Errorf("agent changed to %q %v %q, want %s running as %q", v, r, inc, fromVersion, inc0)
	}
}

func TestAnUnknownHostKeyIsRefused(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	other := sshrig.NewKey(t)
	cases := []struct {
		name       string
		knownHosts string
		wantKnown  bool
	}{
		{"a host missing from known_hosts is refused, naming its fingerprint", s.WriteKnownHosts(t, "empty_known_hosts"), false},
		{"a host presenting another key than known_hosts lists is refused", s.WriteKnownHosts(t, "wrong_known_hosts", other), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, err := ssh.New(map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithKeyFile(s.KeyFile), ssh.WithKnownHosts(c.knownHosts), ssh.WithResolver(fakeResolver))
			if err != nil {
				t.Fatal(err)
			}
			_, _, inc0 := fh.state()
			err = tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, To: toVersion, StopMode: transport.StopKill})
			var he *ssh.HostKeyError
			if !errors.As(err, &he) {
				t.Fatalf("Swap = %v, want a *ssh.HostKeyError", err)
			}
			if !errors.Is(err, ssh.ErrHostKey) {
				t.Errorf("%v does not wrap ssh.ErrHostKey", err)
			}
			fp := gossh.FingerprintSHA256(s.HostKey)
			if he.Host != s.Addr || he.Fingerprint != fp || !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), s.Addr) {
				t.Errorf("HostKeyError %+v / %q, want host %s and fingerprint %s in it", he, err, s.Addr, fp)
			}
			if got := len(he.Known) > 0; got != c.wantKnown {
				t.Errorf("HostKeyError.Known = %v, want non-empty %v", he.Known, c.wantKnown)
			}
			if c.wantKnown && !strings.Contains(err.Error(), gossh.FingerprintSHA256(other)) {
				t.Errorf("error %q does not name the known key's fingerprint", err)
			}
			var se *transport.SwapError
			if !errors.As(err, &se) || se.Phase != ssh.PhaseConnect {
				t.Errorf("error %v is not a SwapError in phase connect", err)
			}
			if v, r, inc := fh.state(); v != fromVersion || !r || inc != inc0 {
				t.Errorf("agent changed to %q %v %q, want it untouched", v, r, inc)
			}
			if got, _ := os.ReadFile(fh.bin); !bytes.Equal(got, fakeConsul(fromVersion)) {
				t.Error("the binary changed although the host key was refused")
			}
		})
	}
}

// processWithArgs reports whether a process runs with exactly argv.
func processWithArgs(argv ...string) bool {
	want := strings.Join(argv, "\x00") + "\x00"
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err == nil && string(b) == want {
			stat, _ := os.ReadFile("/proc/" + d.Name() + "/stat")
			if f := strings.Fields(string(stat)); len(f) > 2 && f[2] != "Z" {
				return true
			}
		}
	}
	return false
}

func TestAHungCommandIsCutByItsTimeout(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	h := fh.host(*s)
	marker := strconv.Itoa(600 + int(time.Now().UnixNano()%300))
	h.StopCmd = []string{"sleep", marker} // a stop that never returns
	// Every command gets this bound, the quick ones (the checks before the
	// stop) too: 3s was not room enough for them on a loaded 2-core CI
	// machine (a check cut after 3s, seen twice), so 10s; the hung stop
	// (a sleep of ten minutes) is what the bound must cut.
	h.CommandTimeout = 10 * time.Second
	tr := newTransport(t, s, map[string]ssh.Host{"c1": h})

	// The stop's own time is measured from when its sleep is first seen
	// running: the checks before it may be slow on a loaded machine (seen
	// in CI: the whole swap took 12.08s), and they are not what is cut.
	stopSeen := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		for {
			if processWithArgs("sleep", marker) {
				stopSeen <- time.Now()
				return
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, To: toVersion, StopMode: transport.StopKill})
	end := time.Now()
	took := end.Sub(start)
	close(done)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Swap with a hung stop command = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	var ce *ssh.CommandError
	var se *transport.SwapError
	if !errors.As(err, &ce) || ce.Step != "stop" || !errors.As(err, &se) || se.Phase != transport.PhaseStop {
		t.Errorf("error %v: want a *ssh.CommandError for step stop inside a SwapError in phase stop", err)
	}
	select {
	case at := <-stopSeen:
		if d := end.Sub(at); d > 16*time.Second {
			t.Errorf("the hung stop ran %v before the swap gave up on it, with a 10s command timeout", d)
		}
	default:
		t.Errorf("the stop command `sleep %s` was never seen running", marker)
	}
	if took > 60*time.Second {
		t.Errorf("Swap took %v with a 10s command timeout", took)
	}
	// The remote side cuts it too: the sleep must not outlive the timeout.
	deadline := time.Now().Add(6 * time.Second)
	for processWithArgs("sleep", marker) {
		if time.Now().After(deadline) {
			t.Fatalf("remote command `sleep %s` still runs 6s after the swap gave up on it", marker)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSwapManyBoundsAWaveAndReportsEachNode(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	hosts := map[string]ssh.Host{}
	fakes := map[string]*fakeHost{}
	var reqs []transport.SwapRequest
	for i := range 4 {
		n := fmt.Sprintf("c%d", i)
		fakes[n] = newFakeHost(t, fromVersion)
		hosts[n] = fakes[n].host(*s)
		reqs = append(reqs, transport.SwapRequest{Node: n, Role: transport.RoleClient, From: fromVersion, To: toVersion, StopMode: transport.StopKill})
	}
	reqs = append(reqs, transport.SwapRequest{Node: "ghost", Role: transport.RoleClient, To: toVersion, StopMode: transport.StopKill})
	tr := newTransport(t, s, hosts)
	errs := tr.SwapMany(t.Context(), reqs, 2)
	if len(errs) != len(reqs) {
		t.Fatalf("SwapMany returned %d errors for %d requests", len(errs), len(reqs))
	}
	for i, r := range reqs[:4] {
		if errs[i] != nil {
			t.Errorf("swap %s: %v", r.Node, errs[i])
		}
		if v, running, _ := fakes[r.Node].state(); v != toVersion || !running {
			t.Errorf("%s runs %q (running %v), want %s", r.Node, v, running, toVersion)
		}
	}
	if !errors.Is(errs[4], transport.ErrUnknownNode) {
		t.Errorf("swap of ghost = %v, want ErrUnknownNode", errs[4])
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i, err := range tr.SwapMany(ctx, reqs[:2], 1) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("SwapMany after cancel: request %d = %v, want context.Canceled", i, err)
		}
	}
}
