package examples_test

import (
	"context"
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
)

// fake is a stand-in consul binary: `version` answers like consul,
// `agent RUNFILE` records its version and sleeps like an agent.
func fake(version string) string {
	return `#!/bin/sh
case "$1" in
version) echo "Consul v` + version + `" ;;
agent) echo ` + version + ` > "$2"; exec sleep 100000 ;;
esac
`
}

type rig struct {
	s                       *sshrig.Server
	dir, bin, art, run, pid string
	start, stop, check      string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{s: sshrig.Start(t), dir: t.TempDir()}
	r.bin = filepath.Join(r.dir, "consul")
	r.art = filepath.Join(r.dir, "consul-1.13.9")
	r.run = filepath.Join(r.dir, "running")
	r.pid = filepath.Join(r.dir, "pid")
	for p, c := range map[string]string{r.bin: fake("1.12.9"), r.art: fake("1.13.9")} {
		if err := os.WriteFile(p, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.start = `["sh","-c","nohup \"$0\" agent \"$1\" </dev/null >/dev/null 2>&1 & echo $! > \"$2\"","{{.BinaryPath}}","` + r.run + `","` + r.pid + `"]`
	r.stop = `["sh","-c","kill -s \"$1\" \"$(cat \"$0\")\"","` + r.pid + `","{{.Signal}}"]`
	r.check = `["sh","-c","p=$(cat \"$0\") && [ -r /proc/$p/stat ] && [ \"$(cut -d' ' -f3 /proc/$p/stat)\" != Z ]","` + r.pid + `"]`
	cmd := exec.Command("sh", "-c", `nohup "$0" agent "$1" </dev/null >/dev/null 2>&1 & echo $! > "$2"`, r.bin, r.run, r.pid)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start fake agent: %v %s", err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(r.pid); err == nil {
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return r
}

func (r *rig) args(knownHosts string) []string {
	return []string{
		"-host", r.s.Addr, "-user", r.s.User, "-key", r.s.KeyFile, "-known-hosts", knownHosts,
		"-binary-path", r.bin, "-node", "c1", "-role", "client", "-to", "1.13.9", "-artifact", r.art,
		"-start-cmd", r.start, "-stop-cmd", r.stop, "-check-cmd", r.check, "-timeout", "1m",
	}
}

func TestTheExampleSwapsAnAgentOverSSH(t *testing.T) {
	r := newRig(t)
	code, stdout, stderr := example(t, context.Background(), "ssh", r.args(r.s.KnownHosts)...)
	if code != 0 {
		t.Fatalf("run exited %d; stderr: %s", code, stderr)
	}
	if !strings.Contains(stdout, "c1: now runs consul 1.13.9") {
		t.Errorf("stdout %q does not report the new version", stdout)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(r.run)
		if strings.TrimSpace(string(b)) == "1.13.9" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent runs %q, want 1.13.9", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, _ := os.ReadFile(r.bin + ".prev"); string(b) != fake("1.12.9") {
		t.Error("the previous binary was not kept as .prev")
	}
}

func TestTheExampleRefusesAnUnknownHostAndNamesItsFingerprint(t *testing.T) {
	r := newRig(t)
	code, _, stderr := example(t, context.Background(), "ssh", r.args(r.s.WriteKnownHosts(t, "empty"))...)
	if code != 1 {
		t.Fatalf("run exited %d, want 1; stderr: %s", code, stderr)
	}
	if fp := gossh.FingerprintSHA256(r.s.HostKey); !strings.Contains(stderr, fp) {
		t.Errorf("stderr %q does not name the host key fingerprint %s", stderr, fp)
	}
	if b, _ := os.ReadFile(r.bin); string(b) != fake("1.12.9") {
		t.Error("the binary changed although the host was refused")
	}
}
