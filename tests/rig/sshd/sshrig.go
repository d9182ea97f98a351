// Package sshrig starts a real OpenSSH server (sshd) on loopback for tests:
// its own config, a generated ed25519 host key and user key in a temporary
// directory, a free high port, and a known_hosts file for the client. The
// server is a child process of the test and is torn down in t.Cleanup (and
// killed with the test process through Pdeathsig).
//
// sshd must be installed at /usr/sbin/sshd (or $SSHRIG_SSHD);
// scripts/ensure-sshd.sh installs it. A missing sshd fails the test, it is
// never skipped.
package sshrig

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultSSHD is where Debian's openssh-server installs the daemon.
const DefaultSSHD = "/usr/sbin/sshd"

// Server is a running loopback sshd.
type Server struct {
	Addr       string        // "127.0.0.1:PORT"
	User       string        // the user the tests log in as (the current user)
	Dir        string        // the temporary directory holding keys and config
	KeyFile    string        // the client's private key, OpenSSH PEM, mode 0600
	KeyPEM     []byte        // the same key's bytes
	KnownHosts string        // a known_hosts file listing the server's host key for Addr
	HostKey    ssh.PublicKey // the server's host key
	Signer     ssh.Signer    // the client key as a signer

	cmd     *exec.Cmd
	logFile string
}

// Log returns what sshd wrote to stderr so far (sshd runs with -e).
func (s *Server) Log() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		return fmt.Sprintf("(no sshd log: %v)", err)
	}
	return string(b)
}

// SSHDPath returns the sshd binary the rig uses: $SSHRIG_SSHD or /usr/sbin/sshd.
func SSHDPath() string {
	if p := os.Getenv("SSHRIG_SSHD"); p != "" {
		return p
	}
	return DefaultSSHD
}

// Start starts an sshd on 127.0.0.1 for the duration of the test. It fails
// the test (never skips) when sshd is missing or does not come up.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil)
}

// StartOn starts one sshd listening on every listen address ("ip:port",
// loopback addresses only), as if each were a host of its own: the known_hosts
// file lists the host key for each, and Addr is the first. Tests of fleets
// use it to reach each agent's host at the agent's own address.
func StartOn(t testing.TB, listen ...string) *Server {
	t.Helper()
	if len(listen) == 0 {
		t.Fatal("sshrig: StartOn needs at least one address")
	}
	for _, a := range listen {
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Fatalf("sshrig: listen address %q is not a loopback ip:port", a)
		}
	}
	return start(t, listen)
}

func start(t testing.TB, listen []string) *Server {
	t.Helper()
	sshd := SSHDPath()
	if _, err := os.Stat(sshd); err != nil {
		t.Fatalf("sshrig: OpenSSH server %s not found (%v); run scripts/ensure-sshd.sh (installs Debian's openssh-server) or set SSHRIG_SSHD", sshd, err)
	}
	if !filepath.IsAbs(sshd) {
		t.Fatalf("sshrig: sshd path %q must be absolute (sshd re-executes itself)", sshd)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshrig: current user: %v", err)
	}
	if os.Geteuid() == 0 {
		// sshd refuses to start as root without its privilege separation dir.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshrig: create /run/sshd: %v", err)
		}
	}

	dir := t.TempDir()
	s := &Server{Dir: dir, User: u.Username}

	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	hostSigner, _ := writeKey(t, hostKeyFile)
	s.HostKey = hostSigner.PublicKey()

	s.KeyFile = filepath.Join(dir, "id_ed25519")
	s.Signer, s.KeyPEM = writeKey(t, s.KeyFile)
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(s.Signer.PublicKey()), 0o600); err != nil {
		t.Fatalf("sshrig: %v", err)
	}

	if len(listen) == 0 {
		listen = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))}
	}
	s.Addr = listen[0]
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	var lines, listenConf []string
	for _, a := range listen {
		lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(a)}, s.HostKey)+"\n")
		listenConf = append(listenConf, "ListenAddress "+a)
	}
	if err := os.WriteFile(s.KnownHosts, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatalf("sshrig: %v", err)
	}

	config := filepath.Join(dir, "sshd_config")
	conf := strings.Join(append(listenConf,
		"HostKey "+hostKeyFile,
		"AuthorizedKeysFile "+authorized,
		"PidFile "+filepath.Join(dir, "sshd.pid"),
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"StrictModes no",
		"UsePAM no",
		"PermitRootLogin prohibit-password",
		"AllowUsers "+u.Username,
		"MaxStartups 100:30:200",
		"MaxSessions 100",
		"LogLevel VERBOSE",
		"",
	), "\n")
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatalf("sshrig: %v", err)
	}

	// sshd logs to a file, not a pipe: session children that outlive their
	// connection must not keep the test waiting on an open pipe.
	s.logFile = filepath.Join(dir, "sshd.log")
	logf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("sshrig: %v", err)
	}
	defer logf.Close()
	cmd := exec.Command(sshd, "-D", "-e", "-f", config)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("sshrig: start %s: %v", sshd, err)
	}
	s.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// Kill sshd and every session child in its process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("sshrig: sshd log:\n%s", s.Log())
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("sshrig: sshd exited before serving (%v); its log:\n%s", err, s.Log())
		default:
		}
		if banner(s.Addr) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshrig: sshd did not answer on %s within 10s; its log:\n%s", s.Addr, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WriteKnownHosts writes a known_hosts file into the rig's directory that
// lists key for the server's address, and returns its path. Tests use it to
// present the client with a different (wrong) key.
func (s *Server) WriteKnownHosts(t testing.TB, name string, keys ...ssh.PublicKey) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, k))
		b.WriteString("\n")
	}
	p := filepath.Join(s.Dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("sshrig: %v", err)
	}
	return p
}

// NewKey returns a fresh ed25519 public key (for a wrong known_hosts entry).
func NewKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshrig: %v", err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("sshrig: %v", err)
	}
	return k
}

func writeKey(t testing.TB, path string) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshrig: generate key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshrig")
	if err != nil {
		t.Fatalf("sshrig: marshal key: %v", err)
	}
	data := pem.EncodeToMemory(block)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("sshrig: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("sshrig: %v", err)
	}
	return signer, data
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshrig: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// banner reports whether an SSH server answers on addr with its version line.
func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil {
		return false
	}
	return string(buf) == "SSH-"
}
