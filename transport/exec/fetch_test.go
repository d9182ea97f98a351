package exec_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/exec"
)

// fetchRig is a node directory on this machine standing for a host that
// fetches its binary from an httptest mirror: Fetch downloads into
// consul.new, Swap installs it and records the version.
type fetchRig struct {
	dir  string // the node's directory
	srv  *httptest.Server
	body []byte
	gets atomic.Int64
}

func newFetchRig(t *testing.T, served []byte) *fetchRig {
	t.Helper()
	r := &fetchRig{dir: filepath.Join(t.TempDir(), "c1"), body: served}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "version"), []byte("1.12.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.gets.Add(1)
		_, _ = w.Write(r.body)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *fetchRig) config(sha string, env ...string) exec.Config {
	return exec.Config{
		Mirror: transport.Mirrors(map[string]transport.Fetch{"1.13.9": {URL: r.srv.URL + "/consul/1.13.9/consul", SHA256: sha}}),
		Fetch:  transport.FetchCommand("{{.URL}}", "{{.SHA256}}", filepath.Join(filepath.Dir(r.dir), "{{.Node}}", "consul.new")),
		Swap: []string{"/bin/sh", "-c", `set -e; mv "$0/consul.new" "$0/consul"; printf '%s\n' "$1" > "$0/version"; printf '%s\n' "$2" > "$0/url"`,
			filepath.Join(filepath.Dir(r.dir), "{{.Node}}"), "{{.To}}", "{{.URL}}"},
		Env:     env,
		Timeout: 20 * time.Second,
	}
}

func sha(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

var fetchReq = transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: "1.12.9", To: "1.13.9", StopMode: transport.StopKill}

func TestFetchRunsBeforeSwapWithTheMirrorsURL(t *testing.T) {
	body := []byte("consul 1.13.9 binary")
	r := newFetchRig(t, body)
	tr, err := exec.New(r.config(sha(body)))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Swap(t.Context(), fetchReq); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(r.dir, "consul")); !bytes.Equal(got, body) {
		t.Errorf("installed %q, want the mirror's %q", got, body)
	}
	if got, _ := os.ReadFile(filepath.Join(r.dir, "url")); strings.TrimSpace(string(got)) != r.srv.URL+"/consul/1.13.9/consul" {
		t.Errorf("Swap saw {{.URL}} = %q", got)
	}
	if r.gets.Load() != 1 {
		t.Errorf("mirror served %d downloads, want 1", r.gets.Load())
	}
}

func TestFetchMismatchStopsTheSwapBeforeItsCommand(t *testing.T) {
	body := []byte("consul 1.13.9 binary, tampered")
	r := newFetchRig(t, body)
	want := sha([]byte("consul 1.13.9 binary"))
	tr, err := exec.New(r.config(want))
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Swap(t.Context(), fetchReq)
	var fe *transport.FetchError
	if !errors.As(err, &fe) || fe.Problem != transport.FetchMismatch || fe.Node != "c1" || fe.Want != want || fe.Got != sha(body) || !strings.HasPrefix(fe.URL, r.srv.URL) {
		t.Fatalf("Swap = %v, want a mismatch FetchError naming c1, the URL, want and got", err)
	}
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Phase != transport.PhaseStage {
		t.Errorf("error %v is not a SwapError in phase stage", err)
	}
	if v, _ := os.ReadFile(filepath.Join(r.dir, "version")); string(v) != "1.12.9\n" {
		t.Errorf("the swap command ran despite the mismatch: version %q", v)
	}
	for _, f := range []string{"consul", "consul.new"} {
		if _, err := os.Stat(filepath.Join(r.dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused fetch", f)
		}
	}
}

func TestFetchOnAHostWithoutCurlOrWgetNamesTheFix(t *testing.T) {
	body := []byte("consul")
	r := newFetchRig(t, body)
	// A PATH holding only sha256sum: no downloader.
	bin := t.TempDir()
	p, err := osexec.LookPath("sha256sum")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p, filepath.Join(bin, "sha256sum")); err != nil {
		t.Fatal(err)
	}
	tr, err := exec.New(r.config(sha(body), "PATH="+bin))
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Swap(t.Context(), fetchReq)
	var fe *transport.FetchError
	if !errors.As(err, &fe) || fe.Problem != transport.FetchNoDownloader || !strings.Contains(err.Error(), "node c1") || !strings.Contains(err.Error(), "install one of them") {
		t.Fatalf("Swap = %v, want FetchNoDownloader naming c1 and the fix", err)
	}
	if r.gets.Load() != 0 {
		t.Errorf("mirror served %d downloads, want none", r.gets.Load())
	}
}

func TestFetchWithoutMirrorIsRefusedByNew(t *testing.T) {
	_, err := exec.New(exec.Config{Swap: []string{"true"}, Fetch: transport.FetchCommand("{{.URL}}", "{{.SHA256}}", "/tmp/x")})
	if err == nil || !strings.Contains(err.Error(), "Fetch is set but Mirror is nil") {
		t.Fatalf("New = %v, want a refusal naming the missing Mirror", err)
	}
}
