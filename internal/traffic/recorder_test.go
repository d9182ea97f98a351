package traffic

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// fakeKV is a KV store behind Consul's KV endpoints (PUT with ?cas=, GET
// with 404 for a missing key), with one Raft-like index for all writes.
// Its faults are on purpose:
//   - stale: reads answer from a copy refreshed only every 20 ms, as a
//     follower's "stale" read would;
//   - slowEvery: every n-th write is applied and then answered too late
//     for the client (indeterminate, but it happened).
type fakeKV struct {
	mu        sync.Mutex
	index     uint64
	data      map[string]entry
	copy      map[string]entry
	copied    time.Time
	stale     bool
	slowEvery int
	writes    int
	slowDelay time.Duration
}

type entry struct {
	value string
	index uint64
}

func (f *fakeKV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
	f.mu.Lock()
	if f.data == nil {
		f.data, f.copy = map[string]entry{}, map[string]entry{}
	}
	switch r.Method {
	case http.MethodGet:
		view := f.data
		if f.stale {
			if time.Since(f.copied) > 20*time.Millisecond {
				f.copy = map[string]entry{}
				for k, v := range f.data {
					f.copy[k] = v
				}
				f.copied = time.Now()
			}
			view = f.copy
		}
		e, ok := view[key]
		f.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode([]map[string]any{{"Key": key, "Value": []byte(e.value), "ModifyIndex": e.index}})
	case http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		ok := true
		if c := r.URL.Query().Get("cas"); c != "" {
			want, _ := strconv.ParseUint(c, 10, 64)
			cur, exists := f.data[key]
			ok = (want == 0 && !exists) || (exists && cur.index == want)
		}
		if ok {
			f.index++
			f.data[key] = entry{string(body), f.index}
		}
		f.writes++
		slow := f.slowEvery > 0 && f.writes%f.slowEvery == 0
		f.mu.Unlock()
		if slow {
			time.Sleep(f.slowDelay)
		}
		io.WriteString(w, strconv.FormatBool(ok))
	default:
		f.mu.Unlock()
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// record runs 700 ms of traffic (6 workers, 3 keys, 1000 ops/s) against
// kv through two endpoints and the extra ones.
func record(t *testing.T, kv *fakeKV, opTimeout time.Duration, extra ...Endpoint) History {
	t.Helper()
	srv := httptest.NewServer(kv)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	eps := append([]Endpoint{{Name: "a1", Addr: addr}, {Name: "a2", Addr: addr}}, extra...)
	const maxDuration = 700 * time.Millisecond
	rec, err := Start(Config{Endpoints: eps, Keys: 3, Workers: 6, Rate: 1000, OpTimeout: opTimeout, MaxDuration: maxDuration})
	if err != nil {
		t.Fatal(err)
	}
	// The recorder stops by itself after MaxDuration (and the requests
	// in flight then).
	stopped := make(chan struct{})
	go func() { rec.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(maxDuration + opTimeout + 5*time.Second):
		t.Fatalf("the recorder still runs %s after its MaxDuration of %s", opTimeout+5*time.Second, maxDuration)
	}
	h, err := rec.Stop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(h) < 100 {
		t.Fatalf("only %d operations recorded", len(h))
	}
	return h
}

func TestRecorderOnACorrectStore(t *testing.T) {
	h := record(t, &fakeKV{}, 2*time.Second)
	r := check(t, h)
	t.Logf("%s", r)
	if r.Result != porcupine.Ok || len(r.Lost) != 0 {
		t.Errorf("report %s, want Ok and nothing lost; files %v", r, r.Files)
	}
	kinds := map[Kind]int{}
	casOK, casFalse := 0, 0
	for _, op := range h {
		kinds[op.Kind]++
		if op.Kind == CAS && op.Outcome == Done {
			if op.OK {
				casOK++
			} else {
				casFalse++
			}
		}
	}
	if kinds[Read] == 0 || kinds[Put] == 0 || casOK == 0 || casFalse == 0 {
		t.Errorf("operations by kind %v, cas true %d, false %d: want every kind and both cas answers", kinds, casOK, casFalse)
	}
	if r.Indeterminate != 0 || r.NotSent != 0 {
		t.Errorf("a healthy store gave %d indeterminate and %d unsent operations", r.Indeterminate, r.NotSent)
	}
}

func TestRecorderCatchesStaleReads(t *testing.T) {
	h := record(t, &fakeKV{stale: true}, 2*time.Second)
	r := check(t, h)
	t.Logf("%s", r)
	if r.Result != porcupine.Illegal {
		t.Errorf("result %s on a store that serves stale reads, want Illegal", r.Result)
	}
}

func TestRecorderWritesThatAnswerTooLateAreIndeterminate(t *testing.T) {
	// A closed port: every request to it fails to connect (not sent).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	h := record(t, &fakeKV{slowEvery: 7, slowDelay: 300 * time.Millisecond}, 100*time.Millisecond, Endpoint{Name: "down", Addr: down})
	r := check(t, h)
	t.Logf("%s", r)
	if r.Result != porcupine.Ok || len(r.Lost) != 0 {
		t.Errorf("report %s, want Ok: the late writes happened, and may", r)
	}
	if r.Indeterminate == 0 || r.NotSent == 0 {
		t.Errorf("report %s, want indeterminate writes (answered too late) and unsent ones (port closed)", r)
	}
	for _, op := range h {
		if op.Node == "down" && op.Outcome != NotSent {
			t.Errorf("an operation on the closed port is %s, want not sent: %s", op.Outcome, op)
			break
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Endpoints is empty"},
		{Config{Endpoints: []Endpoint{{"c1", "127.0.0.1"}}}, `"127.0.0.1" is not host:port`},
		{Config{Endpoints: []Endpoint{{"c1", "127.0.0.1:8500"}}, Workers: 100}, "Workers is 100; use 1..64"},
		{Config{Endpoints: []Endpoint{{"c1", "127.0.0.1:8500"}}, Rate: -1}, "Rate is -1 ops/s"},
		{Config{Endpoints: []Endpoint{{"c1", "127.0.0.1:8500"}}, Prefix: "/x"}, `Prefix "/x"`},
		{Config{Endpoints: []Endpoint{{"c1", "127.0.0.1:8500"}}, Reads: "default"}, `Reads is "default"`},
	}
	for _, c := range cases {
		_, err := Start(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Start(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}
