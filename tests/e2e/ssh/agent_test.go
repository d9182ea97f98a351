package ssh_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	sshrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/sshd"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

// startAgent runs a real ssh-agent holding key and points SSH_AUTH_SOCK at it.
func startAgent(t *testing.T, key any) {
	t.Helper()
	bin, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Fatalf("ssh-agent not found (%v); install openssh-client (scripts/ensure-sshd.sh does)", err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(bin, "-D", "-a", sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var c net.Conn
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent did not listen on %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	if err := agent.NewClient(c).Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatalf("add key to ssh-agent: %v", err)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
}

func TestAuthenticationThroughARealSSHAgent(t *testing.T) {
	s := sshrig.Start(t)
	priv, err := gossh.ParseRawPrivateKey(s.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	fh := newFakeHost(t, fromVersion)

	t.Run("the agent's key logs in and the swap runs", func(t *testing.T) {
		startAgent(t, priv)
		tr, err := ssh.New(map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithAgent(), ssh.WithKnownHosts(s.KnownHosts), ssh.WithResolver(fakeResolver))
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, To: toVersion, StopMode: transport.StopKill}); err != nil {
			t.Fatalf("Swap with agent auth: %v", err)
		}
		if v, running, _ := fh.state(); v != toVersion || !running {
			t.Errorf("agent runs %q (running %v), want %s", v, running, toVersion)
		}
	})

	t.Run("an agent holding an unauthorized key is refused at login", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		startAgent(t, other)
		tr, err := ssh.New(map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithAgent(), ssh.WithKnownHosts(s.KnownHosts), ssh.WithResolver(fakeResolver))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		_, err = tr.RunningVersion(ctx, "c1")
		var se *transport.SwapError
		if !errors.As(err, &se) || se.Phase != ssh.PhaseConnect || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("RunningVersion with an unauthorized agent key = %v, want a connect-phase authentication failure", err)
		}
	})

	t.Run("WithAgent without SSH_AUTH_SOCK is refused by New", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", "")
		os.Unsetenv("SSH_AUTH_SOCK")
		_, err := ssh.New(map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithAgent(), ssh.WithKnownHosts(s.KnownHosts))
		if err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
			t.Fatalf("New = %v, want an error naming SSH_AUTH_SOCK", err)
		}
	})
}
