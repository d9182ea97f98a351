package ssh_test

// Tests of what the transport refuses before it connects anywhere: they need
// no sshd (the tests against a real one are in tests/e2e/ssh).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

const toVersion = "1.13.9"

// fakeResolver serves a stand-in consul binary of each version with its
// true checksum.
func fakeResolver(ctx context.Context, version string) (io.ReadCloser, string, error) {
	b := []byte("#!/bin/sh\nprintf 'Consul v%s\\n' '" + version + "'\n")
	h := sha256.Sum256(b)
	return io.NopCloser(bytes.NewReader(b)), hex.EncodeToString(h[:]), nil
}

// pidfileHost is a host at addr whose agent is started and stopped by a
// pidfile recipe; nothing it names exists, and no test here gets that far.
func pidfileHost(addr string) ssh.Host {
	const bin, run, pid = "/opt/consul/bin/consul", "/nonexistent/run", "/nonexistent/pid"
	return ssh.Host{
		Addr:           addr,
		User:           "root",
		BinaryPath:     bin,
		StartCmd:       []string{"sh", "-c", `rm -f "$1"; nohup "$0" agent "$1" </dev/null >/dev/null 2>&1 & echo $! > "$2"`, "{{.BinaryPath}}", run, pid},
		StopCmd:        []string{"sh", "-c", `p=$(cat "$0") || exit 1; kill -s "$1" "$p"`, pid, "{{.Signal}}"},
		CheckCmd:       []string{"sh", "-c", `p=$(cat "$0" 2>/dev/null) && [ -r /proc/$p/stat ] && [ "$(cut -d' ' -f3 /proc/$p/stat)" != Z ] && [ -s "$1" ]`, pid, run},
		CommandTimeout: 20 * time.Second,
		StopTimeout:    10 * time.Second,
		StartTimeout:   10 * time.Second,
	}
}

func mustKey(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

// unreached is an address where a host would be, which counts the
// connections made to it, with a user key and a known_hosts file that
// lists a host key for it.
type unreached struct {
	addr       string
	keyPEM     []byte
	knownHosts string
	accepted   *atomic.Int32
}

func noSSHD(t *testing.T) unreached {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	u := unreached{addr: l.Addr().String(), keyPEM: mustKey(t), knownHosts: filepath.Join(t.TempDir(), "known_hosts"), accepted: new(atomic.Int32)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u.accepted.Add(1)
			c.Close()
		}
	}()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(u.knownHosts, []byte(knownhosts.Line([]string{knownhosts.Normalize(u.addr)}, hostKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestANodeNameWithShellMetacharactersIsRefusedBeforeAnyConnection(t *testing.T) {
	t.Parallel()
	// A listener that counts connections stands in for the host.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	tr, err := ssh.New(map[string]ssh.Host{"s1": pidfileHost(l.Addr().String())}, ssh.WithKey(mustKey(t)), ssh.InsecureIgnoreHostKey(), ssh.WithResolver(fakeResolver))
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"s1; touch /tmp/pwned", "$(reboot)", "s1`id`", "s1 s2", "../s1", "-oProxyCommand=x"} {
		err := tr.Swap(t.Context(), transport.SwapRequest{Node: node, Role: transport.RoleServer, To: toVersion, StopMode: transport.StopKill})
		var se *transport.SwapError
		if !errors.Is(err, transport.ErrInvalidRequest) || !errors.As(err, &se) || se.Phase != transport.PhaseValidate {
			t.Errorf("Swap of node %q = %v, want a validate-phase error wrapping ErrInvalidRequest", node, err)
		}
	}
	err = tr.Swap(t.Context(), transport.SwapRequest{Node: "s1", Role: transport.RoleServer, To: "1.13.9; reboot", StopMode: transport.StopKill})
	if !errors.Is(err, transport.ErrInvalidRequest) {
		t.Errorf("Swap to version %q = %v, want ErrInvalidRequest", "1.13.9; reboot", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connection(s) reached the host for refused requests, want 0", n)
	}
	// The control case: a valid request does connect.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_ = tr.Swap(ctx, transport.SwapRequest{Node: "s1", Role: transport.RoleServer, To: toVersion, StopMode: transport.StopKill})
	if accepted.Load() == 0 {
		t.Fatal("a valid request did not connect either; the check above proves nothing")
	}
}

func TestNewRefusesBadHostsBeforeAnyConnection(t *testing.T) {
	t.Parallel()
	s := noSSHD(t)
	good := ssh.Host{Addr: s.addr, User: "root", BinaryPath: "/usr/local/bin/consul"}
	cases := []struct {
		name string
		node string
		mod  func(h *ssh.Host)
		want string
	}{
		{"a node name with shell metacharacters is refused", "s1;reboot", func(*ssh.Host) {}, "node name"},
		{"a relative binary path is refused", "s1", func(h *ssh.Host) { h.BinaryPath = "consul" }, "BinaryPath"},
		{"a binary path with dot-dot is refused", "s1", func(h *ssh.Host) { h.BinaryPath = "/usr/../tmp/consul" }, "BinaryPath"},
		{"a template naming an unknown field is refused", "s1", func(h *ssh.Host) { h.StartCmd = []string{"start", "{{.Nodes}}"} }, "Nodes"},
		{"a template that does not parse is refused", "s1", func(h *ssh.Host) { h.StopCmd = []string{"kill", "{{.Signal"} }, "StopCmd"},
		{"an empty command is refused", "s1", func(h *ssh.Host) { h.CheckCmd = []string{} }, "CheckCmd"},
		{"a missing user is refused", "s1", func(h *ssh.Host) { h.User = "" }, "User"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := good
			c.mod(&h)
			_, err := ssh.New(map[string]ssh.Host{c.node: h}, ssh.WithKey(s.keyPEM), ssh.WithKnownHosts(s.knownHosts))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, want an error naming %q", err, c.want)
			}
		})
	}
	if _, err := ssh.New(map[string]ssh.Host{"s1": good}, ssh.WithKnownHosts(s.knownHosts)); err == nil || !strings.Contains(err.Error(), "authentication") {
		t.Errorf("New without a key or agent = %v, want a refusal naming authentication", err)
	}
	if _, err := ssh.New(map[string]ssh.Host{"s1": good}, ssh.WithKey(s.keyPEM), ssh.WithKnownHosts(filepath.Join(t.TempDir(), "missing"))); err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Errorf("New with a missing known_hosts file = %v, want a refusal naming known_hosts", err)
	}
	if n := s.accepted.Load(); n != 0 {
		t.Errorf("%d connection(s) reached the host's address; New must refuse before connecting", n)
	}
}
