package ssh_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	sshrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/sshd"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

// mirror is an httptest server standing in for an internal mirror: it
// serves /consul/VERSION/consul with the given bodies and counts the
// downloads.
type mirror struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	gets  atomic.Int64
}

func newMirror(t *testing.T, files map[string][]byte) *mirror {
	t.Helper()
	m := &mirror{files: files}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		b, ok := m.files[r.URL.Path]
		m.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		m.gets.Add(1)
		http.ServeContent(w, r, "consul", time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *mirror) url(version string) string { return m.srv.URL + "/consul/" + version + "/consul" }

func TestFetchSwapHasTheHostDownloadAndVerifyTheBinary(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	bin := fakeConsul(toVersion)
	m := newMirror(t, map[string][]byte{"/consul/" + toVersion + "/consul": bin})
	mir := transport.Mirrors(map[string]transport.Fetch{toVersion: {URL: m.url(toVersion), SHA256: sum(bin)}})
	// No resolver at all: the binary can only come from the mirror.
	tr, err := ssh.New(map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithKeyFile(s.KeyFile), ssh.WithKnownHosts(s.KnownHosts), ssh.WithFetch(mir))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: fromVersion, To: toVersion, StopMode: transport.StopKill}); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if got, _ := os.ReadFile(fh.bin); !bytes.Equal(got, bin) {
		t.Error("installed binary differs from the mirror's")
	}
	if prev, _ := os.ReadFile(fh.bin + ".prev"); !bytes.Equal(prev, fakeConsul(fromVersion)) {
		t.Error("the previous binary was not kept as .prev")
	}
	if v, running, _ := fh.state(); v != toVersion || !running {
		t.Errorf("after the swap the agent runs %q (running %v), want %s", v, running, toVersion)
	}
	if n := m.gets.Load(); n != 1 {
		t.Errorf("the mirror served %d downloads, want 1", n)
	}
}

func TestFetchWithAWrongChecksumInstallsNothingAndLeavesTheAgentRunning(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	// The mirror holds a corrupted file: the pinned checksum is the real
	// binary's.
	bin := fakeConsul(toVersion)
	corrupt := append(bytes.Clone(bin), "\n# tampered\n"...)
	m := newMirror(t, map[string][]byte{"/consul/" + toVersion + "/consul": corrupt})
	want := sum(bin)
	mir := transport.Mirrors(map[string]transport.Fetch{toVersion: {URL: m.url(toVersion), SHA256: want}})
	tr := newTransport(t, s, map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithFetch(mir))
	oldBin, _ := os.ReadFile(fh.bin)
	v0, r0, inc0 := fh.state()

	err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: fromVersion, To: toVersion, StopMode: transport.StopKill})
	var fe *transport.FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("Swap with a corrupt mirror file = %v, want a *transport.FetchError", err)
	}
	if fe.Problem != transport.FetchMismatch || fe.Node != "c1" || fe.URL != m.url(toVersion) || fe.Want != want || fe.Got != sum(corrupt) {
		t.Errorf("FetchError = %+v, want a mismatch on c1 naming the URL, want %s and got %s", fe, want, sum(corrupt))
	}
	for _, part := range []string{"node c1", m.url(toVersion), want, sum(corrupt), "nothing installed"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
	if !errors.Is(err, transport.ErrArtifact) {
		t.Errorf("error %v does not wrap transport.ErrArtifact", err)
	}
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Phase != transport.PhaseStage {
		t.Errorf("error %v is not a SwapError in phase stage", err)
	}
	if got, _ := os.ReadFile(fh.bin); !bytes.Equal(got, oldBin) {
		t.Error("the binary was replaced despite the mismatch")
	}
	if _, err := os.Stat(fh.bin + ".prev"); !os.IsNotExist(err) {
		t.Errorf("a .prev binary was made despite the mismatch (stat: %v)", err)
	}
	if v, r, inc := fh.state(); v != v0 || r != r0 || inc != inc0 || !r {
		t.Errorf("agent changed: %q %v %q -> %q %v %q, want it untouched and running", v0, r0, inc0, v, r, inc)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(fh.bin), ".consul.upgrade.*"))
	if len(leftovers) > 0 {
		t.Errorf("download files left behind: %v", leftovers)
	}
	if m.gets.Load() != 1 {
		t.Errorf("the mirror served %d downloads, want 1", m.gets.Load())
	}
}

func TestFetchOfAMissingFileIsADownloadErrorAndStopsNothing(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	m := newMirror(t, nil)
	u := m.url(toVersion)
	mir := transport.Mirrors(map[string]transport.Fetch{toVersion: {URL: u, SHA256: sum(fakeConsul(toVersion))}})
	tr := newTransport(t, s, map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithFetch(mir))
	_, _, inc0 := fh.state()
	err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: fromVersion, To: toVersion, StopMode: transport.StopKill})
	var fe *transport.FetchError
	if !errors.As(err, &fe) || fe.Problem != transport.FetchDownload || fe.URL != u || !strings.Contains(fe.Output, "404") {
		t.Fatalf("Swap from a mirror without the file = %v, want a download FetchError naming the URL and the 404", err)
	}
	if v, r, inc := fh.state(); v != fromVersion || !r || inc != inc0 {
		t.Errorf("agent changed: %q %v %q, want %s untouched and running", v, r, inc, fromVersion)
	}
}

func TestFetchRefusesABadMirrorEntryBeforeTouchingTheHost(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	mir := transport.Mirrors(map[string]transport.Fetch{toVersion: {URL: "ftp://mirror/consul", SHA256: "abc"}})
	tr := newTransport(t, s, map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithFetch(mir))
	err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: fromVersion, To: toVersion, StopMode: transport.StopKill})
	if !errors.Is(err, transport.ErrArtifact) || !strings.Contains(err.Error(), `"ftp://mirror/consul" is not an absolute http:// or https:// URL`) || !strings.Contains(err.Error(), `SHA256 "abc" is not 64`) {
		t.Fatalf("Swap with a bad mirror entry = %v, want an ErrArtifact naming both problems", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(fh.bin), ".consul.upgrade.*"))
	if v, r, _ := fh.state(); v != fromVersion || !r || len(leftovers) > 0 {
		t.Errorf("host touched: agent %q running %v, temp files %v", v, r, leftovers)
	}
}

// countingProxy forwards TCP connections to addr and counts the bytes the
// client sends (everything the orchestrator puts on the wire: SSH
// handshake, authentication, channel requests, commands, stdin).
type countingProxy struct {
	ln   net.Listener
	sent atomic.Int64
}

func newCountingProxy(t *testing.T, addr string) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(c, u)
					close(done)
				}()
				n, _ := io.Copy(u, c)
				p.sent.Add(n)
				if tc, ok := u.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				<-done
			}()
		}
	}()
	return p
}

// paddedConsul is a fake consul of size bytes: the script, then an exit,
// then comment lines the shell never reads.
func paddedConsul(version string, size int) []byte {
	b := append(fakeConsul(version), "exit 0\n"...)
	line := "#" + strings.Repeat("x", 1022) + "\n"
	for len(b) < size {
		b = append(b, line...)
	}
	return b[:size]
}

// TestBytesSentPerSwapStagingVersusFetching measures what the orchestrator
// sends to a host for one client swap, counted on the TCP connection to
// sshd, with the binary staged over SSH and fetched by the host from the
// mirror. The binary is padded to the size of a Consul 1.16 linux/amd64
// binary (117 MB).
func TestBytesSentPerSwapStagingVersusFetching(t *testing.T) {
	s := sshrig.Start(t)
	const size = 117_022_882
	bin := paddedConsul(toVersion, size)
	binSum := sum(bin)
	m := newMirror(t, map[string][]byte{"/consul/" + toVersion + "/consul": bin})
	mir := transport.Mirrors(map[string]transport.Fetch{toVersion: {URL: m.url(toVersion), SHA256: binSum}})
	resolve := func(ctx context.Context, version string) (io.ReadCloser, string, error) {
		return io.NopCloser(bytes.NewReader(bin)), binSum, nil
	}
	// swapThrough swaps c1 of fh once through a fresh counting proxy and
	// returns the bytes the orchestrator sent.
	swapThrough := func(name string, fh *fakeHost, opt ssh.Option) int64 {
		p := newCountingProxy(t, s.Addr)
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := knownhosts.Line([]string{knownhosts.Normalize(p.ln.Addr().String())}, s.HostKey) + "\n"
		if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		h := fh.host(*s)
		h.Addr = p.ln.Addr().String()
		tr, err := ssh.New(map[string]ssh.Host{"c1": h}, ssh.WithKeyFile(s.KeyFile), ssh.WithKnownHosts(kh), opt)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: fromVersion, To: toVersion, StopMode: transport.StopKill}); err != nil {
			t.Fatalf("%s swap: %v", name, err)
		}
		if got, _ := os.ReadFile(fh.bin); !bytes.Equal(got, bin) {
			t.Fatalf("%s swap installed another binary", name)
		}
		// The proxy counts a connection when it closes, once Swap has
		// returned: wait for the count to settle.
		deadline := time.Now().Add(10 * time.Second)
		var last int64 = -1
		for time.Now().Before(deadline) {
			n := p.sent.Load()
			if n > 0 && n == last {
				break
			}
			last = n
			time.Sleep(200 * time.Millisecond)
		}
		return p.sent.Load()
	}
	measure := func(name string, opt ssh.Option) int64 {
		return swapThrough(name, newFakeHost(t, fromVersion), opt)
	}
	staged := measure("staging", ssh.WithResolver(resolve))
	fh := newFakeHost(t, fromVersion)
	fetched := swapThrough("fetching", fh, ssh.WithFetch(mir))
	// The same node again: already on the target, the swap only connects
	// and checks (what every swap costs before it stages anything).
	idle := swapThrough("idempotent", fh, ssh.WithFetch(mir))
	t.Logf("bytes sent by the orchestrator for one client swap of a %d-byte binary: staging %d, fetching %d (%.0fx less); a swap that finds the node on the target already: %d", size, staged, fetched, float64(staged)/float64(fetched), idle)
	if idle >= fetched {
		t.Errorf("an idempotent swap sent %d bytes, a fetching one %d: the count misses the fetch", idle, fetched)
	}
	if staged < size {
		t.Errorf("staging sent %d bytes, less than the %d-byte binary: the count misses traffic", staged, size)
	}
	if fetched > 64<<10 {
		t.Errorf("fetching sent %d bytes, want a few kilobytes of commands (at most 64 KiB)", fetched)
	}
	if m.gets.Load() != 1 {
		t.Errorf("the mirror served %d downloads, want 1 (the fetching swap)", m.gets.Load())
	}
}

func TestARequestNamingAnArtifactIsStagedEvenWithFetch(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	local := filepath.Join(t.TempDir(), "consul-"+toVersion)
	if err := os.WriteFile(local, fakeConsul(toVersion), 0o755); err != nil {
		t.Fatal(err)
	}
	asked := 0
	mir := func(ctx context.Context, version string) (transport.Fetch, error) {
		asked++
		return transport.Fetch{}, errors.New("the mirror must not be asked")
	}
	tr := newTransport(t, s, map[string]ssh.Host{"c1": fh.host(*s)}, ssh.WithFetch(mir))
	if err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: fromVersion, To: toVersion, StopMode: transport.StopKill, Artifact: local}); err != nil {
		t.Fatalf("Swap with an Artifact: %v", err)
	}
	if got, _ := os.ReadFile(fh.bin); !bytes.Equal(got, fakeConsul(toVersion)) || asked != 0 {
		t.Errorf("installed the artifact: %v, mirror asked %d times; want the artifact staged and the mirror never asked", bytes.Equal(got, fakeConsul(toVersion)), asked)
	}
}
