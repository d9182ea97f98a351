package ssh_test

// A real swap of a real Consul agent over a real sshd: a 1.12.9 server
// (started from a pidfile recipe, as a host without systemd would) is moved
// to 1.13.9 by the ssh transport, binary staged over the connection and
// checksummed on the host. The binaries come from the cache that
// scripts/build-consul.sh fills (consulrig.Binary builds a missing one; a
// failed build fails the test).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	sshrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/sshd"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// agentSelf asks the agent's HTTP API for its version; "" when it does not answer.
func agentSelf(ctx context.Context, httpAddr string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/agent/self", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var self struct{ Config struct{ Version string } }
	if json.NewDecoder(resp.Body).Decode(&self) != nil {
		return ""
	}
	return self.Config.Version
}

func waitAgentVersion(t *testing.T, httpAddr, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		last = agentSelf(ctx, httpAddr)
		cancel()
		if last == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("agent at %s reports version %q after %v, want %q", httpAddr, last, d, want)
}

func readPID(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pidfile %s: %v", p, err)
	}
	return pid
}

func TestRealConsulAgentIsSwappedOverSSH(t *testing.T) {
	t.Parallel()
	bin12 := consulrig.Binary(t, fromVersion)
	bin13 := consulrig.Binary(t, toVersion)
	s := sshrig.Start(t)

	dir := t.TempDir()
	binPath := filepath.Join(dir, "bin", "consul")
	if err := os.MkdirAll(filepath.Dir(binPath), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bin12, binPath)
	ports := freePorts(t, 5)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg := filepath.Join(dir, "agent.hcl")
	hcl := fmt.Sprintf(`node_name = "ssh-swap-1"
data_dir = %q
server = true
bootstrap_expect = 1
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
log_level = "info"
ports {
  http = %d
  dns = %d
  serf_lan = %d
  serf_wan = %d
  server = %d
  grpc = -1
}
`, filepath.Join(dir, "data"), ports[0], ports[1], ports[2], ports[3], ports[4])
	if err := os.WriteFile(cfg, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile, logFile := filepath.Join(dir, "consul.pid"), filepath.Join(dir, "consul.log")
	host := ssh.Host{
		Addr: s.Addr, User: s.User, BinaryPath: binPath,
		// A host without systemd: the agent runs detached, with a pidfile.
		StartCmd:       []string{"sh", "-c", `nohup "$0" agent -config-file "$1" </dev/null >>"$2" 2>&1 & echo $! > "$3"`, "{{.BinaryPath}}", cfg, logFile, pidFile},
		StopCmd:        []string{"sh", "-c", `kill -s "$1" "$(cat "$0")"`, pidFile, "{{.Signal}}"},
		CheckCmd:       []string{"sh", "-c", `p=$(cat "$0" 2>/dev/null) && [ -r /proc/$p/stat ] && [ "$(cut -d' ' -f3 /proc/$p/stat)" != Z ]`, pidFile},
		CommandTimeout: time.Minute, StartTimeout: 30 * time.Second, StopTimeout: 30 * time.Second,
	}
	start := exec.Command("sh", "-c", host.StartCmd[2], binPath, cfg, logFile, pidFile)
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("start consul %s: %v: %s", fromVersion, err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("consul log tail:\n%s", b)
		}
	})
	waitAgentVersion(t, httpAddr, fromVersion, 30*time.Second)
	pid0 := readPID(t, pidFile)

	req := transport.SwapRequest{Node: "ssh-swap-1", Role: transport.RoleServer, From: fromVersion, To: toVersion, StopMode: transport.StopKill}

	// 1. A wrong checksum: nothing installed, the 1.12.9 agent keeps running.
	wrong := ssh.Files(map[string]ssh.File{toVersion: {Path: bin13, SHA256: strings.Repeat("0", 64)}})
	tr, err := ssh.New(map[string]ssh.Host{req.Node: host}, ssh.WithKeyFile(s.KeyFile), ssh.WithKnownHosts(s.KnownHosts), ssh.WithResolver(wrong))
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Swap(t.Context(), req)
	var ce *ssh.ChecksumError
	if !errors.As(err, &ce) || !errors.Is(err, transport.ErrArtifact) {
		t.Fatalf("Swap with a wrong checksum = %v, want a *ssh.ChecksumError wrapping ErrArtifact", err)
	}
	if got := agentSelf(t.Context(), httpAddr); got != fromVersion {
		t.Fatalf("after the refused swap the agent reports %q, want %s still running", got, fromVersion)
	}
	if pid := readPID(t, pidFile); pid != pid0 {
		t.Fatalf("after the refused swap the agent's pid is %d, want %d (not restarted)", pid, pid0)
	}
	if out, err := exec.Command(binPath, "version").Output(); err != nil || !strings.HasPrefix(string(out), "Consul v"+fromVersion) {
		t.Fatalf("after the refused swap %s version = %q, %v; want Consul v%s", binPath, out, err, fromVersion)
	}

	// 2. The real swap, checksum from a trusted source (here: computed
	// from the cached build).
	good := ssh.Files(map[string]ssh.File{toVersion: {Path: bin13}})
	tr, err = ssh.New(map[string]ssh.Host{req.Node: host}, ssh.WithKeyFile(s.KeyFile), ssh.WithKnownHosts(s.KnownHosts), ssh.WithResolver(good))
	if err != nil {
		t.Fatal(err)
	}
	old, _ := os.Stat(binPath)
	began := time.Now()
	if err := tr.Swap(t.Context(), req); err != nil {
		t.Fatalf("Swap %s -> %s over SSH: %v", fromVersion, toVersion, err)
	}
	t.Logf("swap over ssh took %v (binary of %d MB staged)", time.Since(began).Round(time.Millisecond), func() int64 { fi, _ := os.Stat(bin13); return fi.Size() >> 20 }())
	waitAgentVersion(t, httpAddr, toVersion, 30*time.Second)
	if pid := readPID(t, pidFile); pid == pid0 {
		t.Errorf("the agent's pid is still %d after the swap, want a new process", pid)
	}
	if prev, err := os.Stat(binPath + ".prev"); err != nil || !os.SameFile(old, prev) {
		t.Errorf("%s.prev is not the old 1.12.9 binary (err %v)", binPath, err)
	}
	v, err := tr.RunningVersion(t.Context(), req.Node)
	if err != nil || v != toVersion {
		t.Errorf("RunningVersion = %q, %v; want %s", v, err, toVersion)
	}
	// 3. Idempotent: a repeated swap does not restart the agent.
	pid1 := readPID(t, pidFile)
	if err := tr.Swap(t.Context(), req); err != nil {
		t.Fatalf("repeated Swap: %v", err)
	}
	if pid := readPID(t, pidFile); pid != pid1 {
		t.Errorf("the repeated swap restarted the agent (pid %d -> %d)", pid1, pid)
	}
	waitAgentVersion(t, httpAddr, toVersion, 5*time.Second)
}
