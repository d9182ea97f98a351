package upgrade

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// inProcessConsul returns a Consul whose every call is served by h
// in-process, without a socket, so that tests can run inside a
// testing/synctest bubble. For a *consultest.Cluster it is the cluster's own
// client, which honours SetUnreachable.
func inProcessConsul(t *testing.T, h http.Handler) Consul {
	t.Helper()
	c, err := consultest.NewClient(h)
	if err != nil {
		t.Fatalf("consultest.NewClient: %v", err)
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
	files := []consultest.SnapshotFile{{Name: "meta.json", Data: f.meta}, {Name: "state.bin", Data: f.state}}
	if f.sums == nil {
		f.sums = consultest.SnapshotSums(files...)
	}
	files = append(files, consultest.SnapshotFile{Name: "SHA256SUMS", Data: f.sums})
	files = slices.DeleteFunc(files, func(sf consultest.SnapshotFile) bool { return sf.Name == f.skip })
	b, err := consultest.Archive(files...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// memSink is a SnapshotSink in memory that counts how it was ended.
type memSink struct {
	bytes.Buffer
	committed, aborted int
	// commitErr is Commit's answer.
	commitErr error
	// dc and version are those it was opened for (open).
	dc, version string
}

func (m *memSink) Commit(context.Context) error {
	m.committed++
	return m.commitErr
}

func (m *memSink) Abort(context.Context) error {
	m.aborted++
	return nil
}

// open is a SnapshotFunc that opens m.
func (m *memSink) open(_ context.Context, dc, version string) (SnapshotSink, error) {
	m.dc, m.version = dc, version
	return m, nil
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

// mustDo fails the test at once on an error setting up the simulation.
func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
