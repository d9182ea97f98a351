package ssh_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestAHostThatRefusesTheConnectionIsUnreachableNamingItsAddressBeforeAnythingIsStopped(t *testing.T) {
	t.Parallel()
	s := noSSHD(t)
	addr := closedAddr(t)
	tr, err := ssh.New(map[string]ssh.Host{"c7": {Addr: addr, User: "ops", BinaryPath: "/usr/local/bin/consul"}}, ssh.WithKey(s.keyPEM), ssh.WithKnownHosts(s.knownHosts), ssh.WithResolver(fakeResolver))
	if err != nil {
		t.Fatal(err)
	}
	err = tr.CheckArtifact(t.Context(), "c7", transport.RoleClient, toVersion)
	var ue *ssh.UnreachableError
	if !errors.As(err, &ue) || !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("CheckArtifact of a host with no sshd = %v, want a *ssh.UnreachableError wrapping transport.ErrUnreachable", err)
	}
	if ue.Node != "c7" || ue.Addr != addr || ue.User != "ops" || ue.Stage != "connect" {
		t.Errorf("UnreachableError = %+v, want node c7, address %s, user ops, stage connect", *ue, addr)
	}
	for _, want := range []string{"node c7", addr, "connection refused", "sshd"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// A swap of it fails in the connect phase, before anything on the
	// host (so nothing was stopped).
	err = tr.Swap(t.Context(), transport.SwapRequest{Node: "c7", Role: transport.RoleClient, To: toVersion, StopMode: transport.StopKill})
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Phase != ssh.PhaseConnect || !errors.As(err, &ue) {
		t.Fatalf("Swap = %v, want a connect-phase *SwapError wrapping the *UnreachableError", err)
	}
}

func TestAHostThatHangsUpBeforeTheHandshakeIsUnreachableAtTheHandshake(t *testing.T) {
	t.Parallel()
	s := noSSHD(t) // accepts and closes every connection
	tr, err := ssh.New(map[string]ssh.Host{"s1": {Addr: s.addr, User: "root", BinaryPath: "/usr/local/bin/consul"}}, ssh.WithKey(s.keyPEM), ssh.WithKnownHosts(s.knownHosts))
	if err != nil {
		t.Fatal(err)
	}
	err = tr.CheckArtifact(t.Context(), "s1", transport.RoleServer, toVersion)
	var ue *ssh.UnreachableError
	if !errors.As(err, &ue) || ue.Stage != "handshake" || ue.Addr != s.addr {
		t.Fatalf("CheckArtifact = %v, want a *ssh.UnreachableError at stage handshake naming %s", err, s.addr)
	}
	if s.accepted.Load() == 0 {
		t.Fatal("no connection reached the listener; the check above proves nothing")
	}
}

func TestAHostKeyFileIsReadByNewAndABadOneIsRefusedNamingTheNode(t *testing.T) {
	t.Parallel()
	s := noSSHD(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "id_good")
	if err := os.WriteFile(good, s.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "id_bad")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := ssh.Host{Addr: s.addr, User: "ops", BinaryPath: "/usr/local/bin/consul", KeyFile: good}
	// Every host has its own key: no transport-wide key is needed.
	if _, err := ssh.New(map[string]ssh.Host{"s1": h}, ssh.WithKnownHosts(s.knownHosts)); err != nil {
		t.Fatalf("New with a KeyFile on every host = %v, want nil", err)
	}
	h.KeyFile = bad
	_, err := ssh.New(map[string]ssh.Host{"s2": h}, ssh.WithKnownHosts(s.knownHosts))
	if err == nil || !strings.Contains(err.Error(), `node "s2"`) || !strings.Contains(err.Error(), "KeyFile") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("New with an unreadable KeyFile = %v, want an error naming node s2, KeyFile and %s", err, bad)
	}
	if n := s.accepted.Load(); n != 0 {
		t.Errorf("%d connection(s) made by New, want 0", n)
	}
}

func TestNewRefusesASystemdHostThatAlsoNamesItsOwnCommands(t *testing.T) {
	t.Parallel()
	s := noSSHD(t)
	base := ssh.Host{Addr: s.addr, User: "ops", BinaryPath: "/usr/local/bin/consul"}
	cases := []struct {
		name string
		mod  func(*ssh.Host)
		want []string
	}{
		{"a systemd host with a StopCmd and SupervisorRestarts", func(h *ssh.Host) {
			h.Service, h.StopCmd, h.SupervisorRestarts = ssh.ServiceSystemd, []string{"kill", "1"}, true
		}, []string{`node "s1"`, "StopCmd, SupervisorRestarts are set", `"commands"`}},
		{"a unit named for a host that is not systemd", func(h *ssh.Host) { h.Unit = "consul.service" }, []string{"Unit", `"systemd"`}},
		{"an unknown service manager", func(h *ssh.Host) { h.Service = "runit" }, []string{`"runit"`, `"commands"`, `"supervisor"`, `"systemd"`}},
		{"a unit name with a slash", func(h *ssh.Host) { h.Service, h.Unit = ssh.ServiceSystemd, "../consul.service" }, []string{"Unit", "not a systemd unit name"}},
		{"an empty systemctl", func(h *ssh.Host) { h.Service, h.Systemctl = ssh.ServiceSystemd, []string{} }, []string{"Systemctl is empty"}},
		{"a negative settle time", func(h *ssh.Host) { h.Service, h.UnitSettle = ssh.ServiceSystemd, -1 }, []string{"UnitSettle"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := base
			c.mod(&h)
			_, err := ssh.New(map[string]ssh.Host{"s1": h}, ssh.WithKey(s.keyPEM), ssh.WithKnownHosts(s.knownHosts))
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("New = %v, want an error naming %q", err, w)
				}
			}
		})
	}
	ok := base
	ok.Service, ok.Unit, ok.Systemctl = ssh.ServiceSystemd, "consul-agent.service", []string{"sudo", "-n", "systemctl"}
	if _, err := ssh.New(map[string]ssh.Host{"s1": ok}, ssh.WithKey(s.keyPEM), ssh.WithKnownHosts(s.knownHosts)); err != nil {
		t.Errorf("New of a plain systemd host = %v, want nil", err)
	}
}
