package upgrade

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// handlerRT serves requests in-process through a handler, without a
// socket, so that tests can run inside a testing/synctest bubble.
type handlerRT struct{ h http.Handler }

func (rt handlerRT) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	rt.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// errRT fails every request as a refused connection would.
type errRT struct{}

func (errRT) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("dial tcp 127.0.0.1:8500: connect: connection refused")
}

func inProcessConsul(t *testing.T, rt http.RoundTripper) Consul {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: "consul.test:8500", HttpClient: &http.Client{Transport: rt}})
	if err != nil {
		t.Fatalf("api.NewClient: %v", err)
	}
	return NewConsul(c)
}

// snapshotFiles is the content of a generated snapshot archive.
type snapshotFiles struct {
	meta, state []byte
	// sums overrides the SHA256SUMS content (nil: computed correctly).
	sums []byte
	// skip leaves a file out of the archive.
	skip string
}

func makeSnapshot(t testing.TB, f snapshotFiles) []byte {
	t.Helper()
	if f.meta == nil {
		f.meta = []byte(`{"Version":1,"ID":"2-1234-5678","Index":1234,"Term":2,"Size":42}`)
	}
	if f.state == nil {
		f.state = bytes.Repeat([]byte("consul state "), 100)
	}
	if f.sums == nil {
		var b bytes.Buffer
		fmt.Fprintf(&b, "%x  meta.json\n", sha256.Sum256(f.meta))
		fmt.Fprintf(&b, "%x  state.bin\n", sha256.Sum256(f.state))
		f.sums = b.Bytes()
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for _, e := range []struct {
		name string
		data []byte
	}{{"meta.json", f.meta}, {"state.bin", f.state}, {"SHA256SUMS", f.sums}} {
		if e.name == f.skip {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(e.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// fakeTransport is a small transport for the runner tests: it records the
// swaps, fails the ones it is told to, and reports every change of a node's
// binary to onSwap (the simulated cluster).
type fakeTransport struct {
	mu        sync.Mutex
	swaps     []transport.SwapRequest
	rollbacks []string
	failNext  map[string]error // node ("*" for any) -> error of its next swap
	prev      map[string]string
	// onSwap is told that node now runs version (ok) or failed to come up
	// on it (!ok).
	onSwap func(node, version string, ok bool)
}

func newFakeTransport(onSwap func(node, version string, ok bool)) *fakeTransport {
	return &fakeTransport{failNext: map[string]error{}, prev: map[string]string{}, onSwap: onSwap}
}

func (f *fakeTransport) Swap(ctx context.Context, req transport.SwapRequest) error {
	f.mu.Lock()
	f.swaps = append(f.swaps, req)
	err, ok := f.failNext[req.Node]
	if ok {
		delete(f.failNext, req.Node)
	} else if err, ok = f.failNext["*"]; ok {
		delete(f.failNext, "*")
	}
	f.prev[req.Node] = req.From
	f.mu.Unlock()
	if err != nil {
		f.onSwap(req.Node, req.To, false)
		return &transport.SwapError{Node: req.Node, Phase: transport.PhaseStart, To: req.To, Err: err}
	}
	f.onSwap(req.Node, req.To, true)
	return nil
}

func (f *fakeTransport) Rollback(ctx context.Context, node string) error {
	f.mu.Lock()
	f.rollbacks = append(f.rollbacks, node)
	v, ok := f.prev[node]
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("rollback %s: no previous swap recorded", node)
	}
	f.onSwap(node, v, true)
	return nil
}

func (f *fakeTransport) swapped() []transport.SwapRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]transport.SwapRequest(nil), f.swaps...)
}
