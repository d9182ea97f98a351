package transport_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// pathWith returns a directory holding links to only the named programs,
// for a PATH on which the others do not exist.
func pathWith(t *testing.T, programs ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range programs {
		full, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("this test needs %s on PATH: %v", p, err)
		}
		if err := os.Symlink(full, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runFetch runs FetchCommand with /bin/sh under the given PATH and returns
// how it ended, as FetchResult reads it.
func runFetch(t *testing.T, path string, f transport.Fetch, dest string) error {
	t.Helper()
	argv := transport.FetchCommand(f.URL, f.SHA256, dest)
	cmd := exec.Command("/bin/sh", argv[1:]...)
	cmd.Env = []string{"PATH=" + path}
	var stdout, combined bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &combined
	err := cmd.Run()
	exit := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		exit = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	known, ferr := transport.FetchResult("c7", "1.13.9", f, exit, stdout.String(), combined.String()+stdout.String())
	if !known {
		t.Fatalf("fetch exited %d, which is none of FetchScript's: %s", exit, combined.String())
	}
	return ferr
}

func TestFetchScriptDownloadsWithCurlOrWgetAndVerifies(t *testing.T) {
	body := []byte("#!/bin/sh\necho consul\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/consul" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	good := transport.Fetch{URL: srv.URL + "/consul", SHA256: sum(body)}
	base := []string{"sha256sum", "rm"}

	for _, dl := range []string{"curl", "wget"} {
		t.Run(dl+" only", func(t *testing.T) {
			path := pathWith(t, append([]string{dl}, base...)...)
			dest := filepath.Join(t.TempDir(), "consul.new")
			if err := runFetch(t, path, good, dest); err != nil {
				t.Fatalf("fetch: %v", err)
			}
			if got, _ := os.ReadFile(dest); !bytes.Equal(got, body) {
				t.Errorf("fetched %q, want %q", got, body)
			}
		})
		t.Run(dl+" only, mismatch", func(t *testing.T) {
			path := pathWith(t, append([]string{dl}, base...)...)
			dest := filepath.Join(t.TempDir(), "consul.new")
			want := strings.Repeat("0", 64)
			err := runFetch(t, path, transport.Fetch{URL: good.URL, SHA256: want}, dest)
			var fe *transport.FetchError
			if !errors.As(err, &fe) || fe.Problem != transport.FetchMismatch || fe.Got != sum(body) || fe.Want != want || fe.Node != "c7" || fe.URL != good.URL {
				t.Fatalf("err = %v, want a mismatch naming c7, the URL, want and got", err)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Errorf("the refused download is still at %s", dest)
			}
		})
		t.Run(dl+" only, not found", func(t *testing.T) {
			path := pathWith(t, append([]string{dl}, base...)...)
			err := runFetch(t, path, transport.Fetch{URL: srv.URL + "/missing", SHA256: good.SHA256}, filepath.Join(t.TempDir(), "x"))
			var fe *transport.FetchError
			// curl prints the status; wget only exits 8.
			says := map[string]string{"curl": "error: 404", "wget": "wget exited 8"}[dl]
			if !errors.As(err, &fe) || fe.Problem != transport.FetchDownload || !strings.Contains(fe.Output, says) {
				t.Fatalf("err = %v, want a download error saying %q", err, says)
			}
		})
	}
	t.Run("neither curl nor wget", func(t *testing.T) {
		path := pathWith(t, base...)
		err := runFetch(t, path, good, filepath.Join(t.TempDir(), "x"))
		var fe *transport.FetchError
		if !errors.As(err, &fe) || fe.Problem != transport.FetchNoDownloader {
			t.Fatalf("err = %v, want FetchNoDownloader", err)
		}
		if !errors.Is(err, transport.ErrArtifact) || !strings.Contains(err.Error(), "node c7") || !strings.Contains(err.Error(), "install one of them") {
			t.Errorf("error %q does not name the node and the fix, or does not wrap ErrArtifact", err)
		}
	})
}

func TestFetchValidateNamesEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    transport.Fetch
		want []string
	}{
		{"good", transport.Fetch{URL: "https://mirror.internal/consul/1.13.9/consul", SHA256: strings.Repeat("a", 64)}, nil},
		{"empty", transport.Fetch{}, []string{"URL is empty", `SHA256 "" is not 64`}},
		{"scheme", transport.Fetch{URL: "file:///tmp/consul", SHA256: strings.Repeat("a", 64)}, []string{"not an absolute http:// or https:// URL"}},
		{"space", transport.Fetch{URL: "https://m/a b", SHA256: strings.Repeat("a", 64)}, []string{"whitespace or a control character"}},
		{"upper-case sum", transport.Fetch{URL: "https://m/c", SHA256: strings.Repeat("A", 64)}, []string{"not 64 lower-case hex digits"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, transport.ErrArtifact) {
				t.Fatalf("Validate = %v, want an error wrapping ErrArtifact", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestMirrorsNamesTheVersionsItHas(t *testing.T) {
	m := transport.Mirrors(map[string]transport.Fetch{"1.13.9": {}, "1.12.9": {}})
	_, err := m(t.Context(), "1.14.8")
	if !errors.Is(err, transport.ErrArtifact) || !strings.Contains(err.Error(), "no consul 1.14.8 (it has 1.12.9, 1.13.9)") {
		t.Fatalf("err = %v", err)
	}
}
