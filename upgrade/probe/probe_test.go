package probe_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
)

// fakeConsul answers the few reads the probes make, from fields a test
// sets: a KV key whose index moves on each PUT (a blocking GET waits for
// it), the catalog, a service's instances with their checks' status, and
// the ACL lists.
type fakeConsul struct {
	mu       sync.Mutex
	index    uint64
	changed  chan struct{}
	status   map[string]string // service -> its one instance's check status
	nodes    int
	acl      bool
	noReturn bool // blocking catalog reads never come back
	// streamErr: blocking health reads answer 500 with it (the mixed
	// window of hashicorp/consul#16850).
	streamErr string
	// streamIndex, when set, is the index blocking health reads answer
	// with (a streaming view's, below the raft index of the first read);
	// resetErr: then the read without an index answers 500 with it.
	streamIndex uint64
	resetErr    string
	plainReads  int // health reads without an index so far
	// replication is /v1/acl/replication's answer (nil: 404).
	replication map[string]any
}

func newFake() *fakeConsul {
	return &fakeConsul{index: 10, changed: make(chan struct{}), status: map[string]string{"consul": api.HealthPassing}, nodes: 3, acl: true}
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	idx, changed := f.index, f.changed
	f.mu.Unlock()
	blockOn, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	reply := func(v any) {
		f.mu.Lock()
		w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
		f.mu.Unlock()
		json.NewEncoder(w).Encode(v)
	}
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/v1/kv/") && r.Method == http.MethodPut:
		f.mu.Lock()
		f.index++
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
		json.NewEncoder(w).Encode(true)
	case strings.HasPrefix(p, "/v1/kv/"):
		if blockOn > 0 && blockOn >= idx {
			select {
			case <-changed:
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		reply([]map[string]any{{"Key": strings.TrimPrefix(p, "/v1/kv/"), "Value": "eA=="}})
	case p == "/v1/catalog/services":
		if blockOn > 0 {
			if f.noReturn {
				<-r.Context().Done()
				return
			}
			time.Sleep(50 * time.Millisecond) // the wait, shortened
		}
		reply(map[string][]string{"consul": nil})
	case p == "/v1/catalog/nodes":
		var ns []map[string]any
		for i := range f.nodes {
			ns = append(ns, map[string]any{"Node": "s" + strconv.Itoa(i+1)})
		}
		reply(ns)
	case strings.HasPrefix(p, "/v1/health/service/"):
		name := strings.TrimPrefix(p, "/v1/health/service/")
		if blockOn > 0 {
			if f.streamErr != "" {
				http.Error(w, f.streamErr, http.StatusInternalServerError)
				return
			}
			time.Sleep(50 * time.Millisecond) // the wait, shortened
		}
		f.mu.Lock()
		if blockOn == 0 {
			f.plainReads++
		}
		streamIndex, resetErr, plain := f.streamIndex, f.resetErr, f.plainReads
		f.mu.Unlock()
		switch {
		case streamIndex > 0 && blockOn > 0:
			w.Header().Set("X-Consul-Index", strconv.FormatUint(streamIndex, 10))
			json.NewEncoder(w).Encode([]any{})
			return
		case resetErr != "" && plain == 2: // the watcher's reset read
			http.Error(w, resetErr, http.StatusInternalServerError)
			return
		}
		st, ok := f.status[name]
		var out []map[string]any
		if ok && (r.URL.Query().Has("passing") == false || st == api.HealthPassing) {
			out = append(out, map[string]any{
				"Node":    map[string]any{"Node": "ext"},
				"Service": map[string]any{"ID": name + "-1", "Service": name},
				"Checks":  []map[string]any{{"CheckID": "c", "Status": st}},
			})
		}
		reply(out)
	case p == "/v1/acl/replication":
		if f.replication == nil {
			http.NotFound(w, r)
			return
		}
		reply(f.replication)
	case p == "/v1/acl/token/self":
		if !f.acl {
			http.Error(w, "ACL support disabled", http.StatusUnauthorized)
			return
		}
		reply(map[string]any{"AccessorID": "a", "SecretID": r.Header.Get("X-Consul-Token")})
	case p == "/v1/acl/tokens" || p == "/v1/acl/policies":
		if !f.acl {
			http.Error(w, "ACL support disabled", http.StatusUnauthorized)
			return
		}
		reply([]map[string]any{{"AccessorID": "a", "ID": "p", "Name": "global-management"}})
	default:
		http.NotFound(w, r)
	}
}

func client(t *testing.T, h http.Handler) *api.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := probe.Connect(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func byName(results []probe.Result) map[string]probe.Result {
	m := map[string]probe.Result{}
	for _, r := range results {
		m[r.Probe] = r
	}
	return m
}

func TestEveryReadOnlyProbePassesOnAHealthyCluster(t *testing.T) {
	c := client(t, newFake())
	ps := probe.ReadOnly(c, probe.Options{ACL: true, Wait: time.Second})
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	want := "blocking-catalog health-passing/consul health-blocking/consul catalog-nodes catalog-services acl-tokens acl-policies"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("ReadOnly's probes are %q; want %q", got, want)
	}
	res := probe.RunAll(t.Context(), ps, probe.PhaseBefore, []string{"1.13.9", "1.12.9", "1.13.9"})
	for _, r := range res {
		if !r.OK || r.Phase != "before" || strings.Join(r.Versions, ",") != "1.12.9,1.13.9" || r.Latency <= 0 {
			t.Errorf("%s: want ok in phase before on 1.12.9,1.13.9 with a latency", r)
		}
	}
}

func TestWithoutACLTheACLProbesAreLeftOut(t *testing.T) {
	ps := probe.ReadOnly(client(t, newFake()), probe.Options{Services: []string{"web", "db"}})
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, " "); got != "blocking-catalog health-passing/web health-blocking/web health-passing/db health-blocking/db catalog-nodes catalog-services" {
		t.Errorf("probes %q: want one health probe per service and no ACL probe", got)
	}
}

func TestAServiceWhoseCheckIsCriticalFailsThePassingProbeNamingItsState(t *testing.T) {
	f := newFake()
	f.status["db"] = api.HealthCritical
	res := probe.RunAll(t.Context(), []probe.Probe{probe.HealthPassing(client(t, f), "db")}, probe.AfterStep(0), []string{"1.12.9"})
	r := res[0]
	if r.OK || r.Probe != "health-passing/db" || r.Phase != "step 1" {
		t.Fatalf("%s: want health-passing/db failed in step 1", r)
	}
	if want := "returned no instance of the 1 registered (db-1 on ext: critical)"; !strings.Contains(r.Err, want) {
		t.Errorf("error %q does not say %q", r.Err, want)
	}
}

func TestAServiceNotRegisteredFailsThePassingProbe(t *testing.T) {
	r := probe.RunAll(t.Context(), []probe.Probe{probe.HealthPassing(client(t, newFake()), "nope")}, "before", nil)[0]
	if r.OK || !strings.Contains(r.Err, "none is registered") {
		t.Errorf("%s: want a failure saying none is registered", r)
	}
}

func TestTheBlockingKVProbePassesWhenTheWriteWakesIt(t *testing.T) {
	f := newFake()
	c := client(t, f)
	write := func(ctx context.Context) error {
		_, err := c.KV().Put(&api.KVPair{Key: "probe/k", Value: []byte("x")}, (&api.WriteOptions{}).WithContext(ctx))
		return err
	}
	r := probe.RunAll(t.Context(), []probe.Probe{probe.BlockingKV(c, "probe/k", time.Second, write)}, "before", nil)[0]
	if !r.OK {
		t.Errorf("%s: want ok", r)
	}
}

func TestTheBlockingKVProbeFailsWhenTheReadDoesNotAdvance(t *testing.T) {
	c := client(t, newFake())
	noWrite := func(context.Context) error { return nil } // the index never moves: the fake answers at its 5 s bound with the same index
	r := probe.RunAll(t.Context(), []probe.Probe{probe.BlockingKV(c, "probe/k", 500*time.Millisecond, noWrite)}, "before", nil)[0]
	if r.OK || !strings.Contains(r.Err, "blocking read of probe/k at index 10") {
		t.Errorf("%s: want a failure naming the key and the index it blocked on", r)
	}
}

func TestABlockingCatalogReadThatNeverReturnsFails(t *testing.T) {
	f := newFake()
	f.noReturn = true
	r := probe.RunAll(t.Context(), []probe.Probe{probe.BlockingCatalog(client(t, f), 100*time.Millisecond)}, "before", nil)[0]
	if r.OK || !strings.Contains(r.Err, "did not come back within") {
		t.Errorf("%s: want a failure saying it did not come back", r)
	}
}

func TestACLReadsFailWhenTheClusterRefusesThem(t *testing.T) {
	f := newFake()
	f.acl = false
	c := client(t, f)
	res := byName(probe.RunAll(t.Context(), []probe.Probe{probe.ACLTokens(c), probe.ACLPolicies(c)}, "before", nil))
	for _, n := range []string{"acl-tokens", "acl-policies"} {
		if r := res[n]; r.OK || !strings.Contains(r.Err, "401") {
			t.Errorf("%s: want a failure carrying the 401", r)
		}
	}
}

func TestAProbeThatBreaksInTheMixedWindowIsAFindingNamingItsVersions(t *testing.T) {
	results := []probe.Result{
		{Probe: "catalog-nodes", Phase: "before", Versions: []string{"1.12.9"}, OK: true},
		{Probe: "health-passing/web", Phase: "before", Versions: []string{"1.12.9"}, OK: true},
		{Probe: "catalog-nodes", Phase: "step 1", Versions: []string{"1.12.9", "1.13.9"}, OK: true},
		{Probe: "health-passing/web", Phase: "step 1", Versions: []string{"1.12.9", "1.13.9"}, Err: "no instance"},
		{Probe: "health-passing/web", Phase: "step 2", Versions: []string{"1.12.9", "1.13.9"}, Err: "still none"},
		{Probe: "health-passing/web", Phase: "after", Versions: []string{"1.13.9"}, OK: true},
		{Probe: "acl-tokens", Phase: "before", Versions: []string{"1.9.0"}, Err: "403"},
		{Probe: "acl-tokens", Phase: "after", Versions: []string{"1.10.12"}, Err: "403"},
	}
	fs := probe.Findings(results)
	if len(fs) != 2 {
		t.Fatalf("findings %v: want health-passing/web and acl-tokens", fs)
	}
	if got, want := fs[0].String(), "probe health-passing/web broke on 1.12.9 + 1.13.9 (step 1, step 2): no instance"; got != want {
		t.Errorf("finding %q; want %q", got, want)
	}
	if got, want := fs[1].String(), "probe acl-tokens failed on 1.9.0 + 1.10.12 (before, after): 403"; got != want {
		t.Errorf("finding %q; want %q (versions in version order, not text order)", got, want)
	}
}

// Live adds the ACL reads only when a token is given and the cluster
// returns its record; otherwise its note says why they are left out.
func TestLiveAddsTheACLReadsOnlyWithATokenTheClusterKnows(t *testing.T) {
	names := func(ps []probe.Probe) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return strings.Join(out, " ")
	}
	on, off := newFake(), newFake()
	off.acl = false
	srvOn, srvOff := httptest.NewServer(on), httptest.NewServer(off)
	t.Cleanup(srvOn.Close)
	t.Cleanup(srvOff.Close)

	t.Setenv("CONSUL_HTTP_TOKEN", "")
	ps, note, err := probe.Live(t.Context(), srvOn.URL, nil)
	if err != nil || strings.Contains(names(ps), "acl-") || !strings.Contains(note, "no ACL token given") {
		t.Errorf("without a token: probes %q, note %q, err %v; want no ACL read and a note saying no token", names(ps), note, err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN", "secret")
	ps, note, err = probe.Live(t.Context(), srvOn.URL, []string{"web"})
	if err != nil || names(ps) != "blocking-catalog health-passing/web health-blocking/web catalog-nodes catalog-services acl-tokens acl-policies" || note != "" {
		t.Errorf("with a token ACLs accept: probes %q, note %q, err %v; want the ACL reads and no note", names(ps), note, err)
	}
	ps, note, err = probe.Live(t.Context(), srvOff.URL, nil)
	if err != nil || strings.Contains(names(ps), "acl-") || !strings.Contains(note, "401") {
		t.Errorf("with a token ACLs off: probes %q, note %q, err %v; want no ACL read and a note carrying the 401", names(ps), note, err)
	}
}

// A blocking health query answering 500 in the mixed window (streaming's
// "Key is required", hashicorp/consul#16850) fails health-blocking with
// Consul's answer.
func TestABlockingHealthQueryAnsweringAnErrorFailsItsProbe(t *testing.T) {
	f := newFake()
	f.streamErr = "Key is required"
	res := probe.RunAll(t.Context(), []probe.Probe{probe.HealthBlocking(client(t, f), "consul", time.Second)}, probe.AfterStep(1), []string{"1.12.9", "1.13.9"})
	if len(res) != 1 || res[0].OK || !strings.Contains(res[0].Err, "Key is required") || res[0].Probe != "health-blocking/consul" {
		t.Errorf("results %v: want health-blocking/consul failed with Consul's 500", res)
	}
	f.streamErr = ""
	if res := probe.RunAll(t.Context(), []probe.Probe{probe.HealthBlocking(client(t, f), "consul", time.Second)}, probe.PhaseAfter, nil); !res[0].OK {
		t.Errorf("%s: want ok once the query answers", res[0])
	}
}

// Consul documents that a blocking index may go backwards and that a
// watcher then resets it: a streaming view answering below the first read's
// raft index passes when the reset read answers, and fails when it does not.
func TestABlockingHealthQueryWhoseIndexGoesBackwardsPassesWhenTheResetReadAnswers(t *testing.T) {
	f := newFake()
	f.streamIndex = 3 // below the fake's index of 10
	res := probe.RunAll(t.Context(), []probe.Probe{probe.HealthBlocking(client(t, f), "consul", time.Second)}, probe.PhaseAfter, nil)
	if len(res) != 1 || !res[0].OK {
		t.Errorf("results %v: want health-blocking/consul ok, the reset read having answered", res)
	}
	f = newFake()
	f.streamIndex, f.resetErr = 3, "rpc error: No cluster leader"
	res = probe.RunAll(t.Context(), []probe.Probe{probe.HealthBlocking(client(t, f), "consul", time.Second)}, probe.PhaseAfter, nil)
	if len(res) != 1 || res[0].OK || !strings.Contains(res[0].Err, "No cluster leader") || !strings.Contains(res[0].Err, "came back at index 3") {
		t.Errorf("results %v: want health-blocking/consul failed on the reset read, naming both indexes' answer and Consul's error", res)
	}
}

// In a secondary datacenter (ACL replication enabled) Live adds
// acl-replication, which fails when replication stopped or its last error
// is newer than its last success.
func TestACLReplicationIsProbedInASecondaryAndFailsWhenItStopsSucceeding(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Setenv("CONSUL_HTTP_TOKEN", "secret")
	ps, _, err := probe.Live(t.Context(), srv.URL, nil)
	if err != nil || slices.ContainsFunc(ps, func(p probe.Probe) bool { return p.Name == "acl-replication" }) {
		t.Fatalf("a primary (no replication): probes %v, err %v; want no acl-replication", ps, err)
	}
	ok := "2026-12-04T10:00:00Z"
	f.replication = map[string]any{"Enabled": true, "Running": true, "SourceDatacenter": "dc1", "LastSuccess": ok, "LastError": "2026-12-04T09:00:00Z"}
	ps, _, err = probe.Live(t.Context(), srv.URL, nil)
	i := slices.IndexFunc(ps, func(p probe.Probe) bool { return p.Name == "acl-replication" })
	if err != nil || i < 0 {
		t.Fatalf("a secondary: probes %v, err %v; want acl-replication", ps, err)
	}
	rep := ps[i]
	if res := probe.RunAll(t.Context(), []probe.Probe{rep}, probe.PhaseBefore, nil); !res[0].OK {
		t.Errorf("%s: want ok while replication succeeds", res[0])
	}
	f.replication["LastError"] = "2026-12-04T11:00:00Z"
	if res := probe.RunAll(t.Context(), []probe.Probe{rep}, probe.AfterStep(0), nil); res[0].OK || !strings.Contains(res[0].Err, "newer than the last success") {
		t.Errorf("%s: want a failure naming the newer error", res[0])
	}
	f.replication["Running"] = false
	if res := probe.RunAll(t.Context(), []probe.Probe{rep}, probe.PhaseAfter, nil); res[0].OK || !strings.Contains(res[0].Err, "not running") {
		t.Errorf("%s: want a failure saying replication is not running", res[0])
	}
}
