package rehearsal

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

func TestComparisonNamesEveryEntryNotReadBackEqual(t *testing.T) {
	restored := state{
		KindKV: {
			"app/a":      describeKV(kvEntry{Key: "app/a", Value: []byte("1")}),
			"app/b":      describeKV(kvEntry{Key: "app/b", Value: []byte("2"), Flags: 4}),
			"app/c":      describeKV(kvEntry{Key: "app/c", Value: []byte("3")}),
			"app/gone":   describeKV(kvEntry{Key: "app/gone", Value: []byte("4")}),
			"locks/lead": describeKV(kvEntry{Key: "locks/lead", Value: []byte("me")}),
		},
		KindServices: {
			"ext/db-0": describeService(serviceEntry{Node: "ext", ServiceID: "db-0", ServiceName: "db", ServiceTags: []string{"b", "a"}, ServicePort: 5432}),
			"ext/db-1": describeService(serviceEntry{Node: "ext", ServiceID: "db-1", ServiceName: "db", ServicePort: 5433}),
		},
	}
	back := state{
		KindKV: {
			"app/a":            describeKV(kvEntry{Key: "app/a", Value: []byte("1")}),
			"app/b":            describeKV(kvEntry{Key: "app/b", Value: []byte("2"), Flags: 5}), // flags changed
			"app/c":            describeKV(kvEntry{Key: "app/c", Value: []byte("three")}),       // value changed
			"rehearsal/k1":     describeKV(kvEntry{Key: "rehearsal/k1", Value: []byte("w1")}),   // not restored: ignored
			"app/not-restored": describeKV(kvEntry{Key: "app/not-restored"}),
		},
		KindServices: {
			"ext/db-0": describeService(serviceEntry{Node: "ext", ServiceID: "db-0", ServiceName: "db", ServiceTags: []string{"a", "b"}, ServicePort: 5432}), // tag order is not a difference
			"ext/db-1": describeService(serviceEntry{Node: "ext", ServiceID: "db-1", ServiceName: "db", ServicePort: 6000}),
		},
	}
	got := compareState(restored, back, map[string]string{"locks/lead": "sess-1"})
	var names []string
	for _, d := range got {
		names = append(names, d.Kind+" "+d.Name)
	}
	want := []string{"kv app/b", "kv app/c", "kv app/gone", "kv locks/lead", "services ext/db-1"}
	if strings.Join(names, ", ") != strings.Join(want, ", ") {
		t.Fatalf("differences %v, want %v", names, want)
	}
	if got[2].ReadBack != "" || !strings.Contains(got[2].String(), "read back absent") {
		t.Errorf("a missing key: %q, want it read back absent", got[2])
	}
	if !strings.Contains(got[3].ReadBack, "held by session sess-1") {
		t.Errorf("a missing key held by a session at the restore: %q, want the session named", got[3].ReadBack)
	}
	if !strings.Contains(got[4].Restored, ":5433") || !strings.Contains(got[4].ReadBack, ":6000") {
		t.Errorf("a service whose port changed: %+v", got[4])
	}
	if d := compareState(restored, restored, nil); len(d) != 0 {
		t.Errorf("a state compared with itself has differences: %v", d)
	}
}

func TestKVValuesAreDescribedByLengthAndHashNeverInClear(t *testing.T) {
	d := describeKV(kvEntry{Key: "secret/db", Value: []byte("hunter2"), Flags: 3})
	sum := sha256.Sum256([]byte("hunter2"))
	if strings.Contains(d, "hunter2") || !strings.Contains(d, "flags 3, 7 bytes, sha256 "+hex.EncodeToString(sum[:])[:16]) {
		t.Errorf("describeKV = %q: want flags, length and the SHA-256's prefix, not the value", d)
	}
}

// fakeReplica answers the reads of readState: a KV tree with a key of the
// traffic and one held by a session, a catalog with services on an agent
// node and on an external node.
func fakeReplica(t *testing.T, emptyKV bool) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/kv/", func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.Query().Has("recurse") || r.URL.Path != "/v1/kv/" {
			http.Error(w, "want /v1/kv/?recurse", http.StatusBadRequest)
			return
		}
		if emptyKV {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode([]map[string]any{
			{"Key": "app/x", "Flags": 2, "Value": []byte("v")},
			{"Key": "locks/lead", "Value": []byte("me"), "Session": "sess-9"},
			{"Key": "rehearsal/k0", "Value": []byte("w")},
		})
	})
	mux.HandleFunc("/v1/health/state/any", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]map[string]string{{"Node": "s1", "CheckID": "serfHealth"}, {"Node": "ext", "CheckID": "db-alive"}})
	})
	mux.HandleFunc("/v1/catalog/services", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string][]string{"consul": {}, "db": {"primary"}})
	})
	mux.HandleFunc("/v1/catalog/service/", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/catalog/service/consul":
			json.NewEncoder(w).Encode([]map[string]any{{"Node": "s1", "ServiceID": "consul", "ServiceName": "consul", "ServicePort": 8300}})
		case "/v1/catalog/service/db":
			json.NewEncoder(w).Encode([]map[string]any{{"Node": "ext", "ServiceID": "db-0", "ServiceName": "db", "ServiceTags": []string{"primary"}, "ServicePort": 5432}})
		default:
			http.NotFound(w, r)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestReadStateComparesServicesOfNonAgentNodesAndSkipsTheTraffic(t *testing.T) {
	srv := fakeReplica(t, false)
	st, sessions, err := newDataClient(strings.TrimPrefix(srv.URL, "http://"), "").readState(t.Context(), "rehearsal")
	if err != nil {
		t.Fatal(err)
	}
	if len(st[KindKV]) != 2 || st[KindKV]["app/x"] == "" || st[KindKV]["rehearsal/k0"] != "" {
		t.Errorf("KV read %v: want app/x and locks/lead, not the traffic's rehearsal/k0", st[KindKV])
	}
	if sessions["locks/lead"] != "sess-9" || len(sessions) != 1 {
		t.Errorf("sessions %v: want locks/lead held by sess-9", sessions)
	}
	if len(st[KindServices]) != 1 || !strings.Contains(st[KindServices]["ext/db-0"], "db tags [primary] :5432") {
		t.Errorf("services read %v: want ext's db-0 only (s1 is an agent: its consul service is the replica's own)", st[KindServices])
	}

	empty := fakeReplica(t, true)
	st, _, err = newDataClient(strings.TrimPrefix(empty.URL, "http://"), "").readState(t.Context(), "")
	if err != nil || len(st[KindKV]) != 0 {
		t.Errorf("an empty KV tree (404): %v, %v; want no entries and no error", st[KindKV], err)
	}
}

func TestTheTrafficUsesAFolderNoRestoredKeyIsUnder(t *testing.T) {
	if p := trafficPrefix(state{KindKV: {"app/x": ""}}); p != "rehearsal" {
		t.Errorf("prefix %q, want rehearsal", p)
	}
	if p := trafficPrefix(state{KindKV: {"rehearsal/k1": "", "rehearsal-traffic-1": ""}}); p != "rehearsal-traffic-2" {
		t.Errorf("prefix %q, want rehearsal-traffic-2 (rehearsal and rehearsal-traffic-1 are taken)", p)
	}
}

func dataReport() *DataReport {
	return &DataReport{
		Source: "live cluster", Backup: upgrade.SnapshotInfo{Kind: planner.BackupSnapshot, ID: "2-1234-5678", Index: 1234, Term: 2, StateSize: 9000},
		Restored: map[string]int{KindKV: 60, KindServices: 3}, NotCompared: []string{notCompared},
		ReadBack: true, Target: "1.13.9", OnTarget: 3, Servers: 3, Started: true,
	}
}

func TestTheDataRowSaysWhatWasRestoredReadBackAndStarted(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*DataReport)
		want string
		eq   bool
	}{
		{"every entry equal", func(*DataReport) {},
			"restored from a Consul snapshot of the live cluster (read only): 60 KV entries, 3 service instance(s) on non-agent nodes (those on agents are not compared); after the upgrade every entry read back equal; the replica started on 1.13.9 (3 of 3 servers)", true},
		{"a logical backup from a file", func(d *DataReport) {
			d.Source, d.Backup.Kind, d.Restored = "/backups/old.snap", planner.BackupLogical, map[string]int{KindKV: 40}
			d.Target = "0.7.5"
		}, "restored from a logical backup from old.snap: 40 KV entries; after the upgrade every entry read back equal; the replica started on 0.7.5 (3 of 3 servers)", true},
		{"entries not equal", func(d *DataReport) {
			for i := range 7 {
				d.Differences = append(d.Differences, DataDifference{Kind: KindKV, Name: fmt.Sprintf("app/k%d", i), Restored: "flags 0, 1 bytes"})
			}
		}, "after the upgrade 7 entr(ies) NOT read back equal: kv app/k0, kv app/k1, kv app/k2, kv app/k3, kv app/k4 and 2 more (see Data)", false},
		{"a state the new version cannot load", func(d *DataReport) {
			d.OnTarget, d.Started = 1, false
			d.StartProblem = "the upgrade halted: step 2 (swap-server s2): start consul 1.13.9: exited; s2: panic: object missing primary index"
		}, "the replica did NOT start on 1.13.9 (1 of 3 servers on it): the upgrade halted: step 2 (swap-server s2): start consul 1.13.9: exited; s2: panic: object missing primary index", true},
		{"the builtin management policy rewritten by the new version", func(d *DataReport) {
			d.Restored[KindACLTokens], d.Restored[KindACLPolicies] = 2, 1
			d.Differences = compareState(
				state{KindACLPolicies: {builtinManagementPolicy: describePolicy(aclPolicy{Name: "global-management", Rules: "acl = \"write\""})}},
				state{KindACLPolicies: {builtinManagementPolicy: describePolicy(aclPolicy{Name: "global-management", Rules: "acl = \"write\"\npeering = \"write\""})}}, nil)
		}, "2 ACL token(s), 1 ACL polic(ies); after the upgrade every entry read back equal, but 1 changed by the new version by design (see Data)", true},
		{"another policy changed", func(d *DataReport) {
			d.Differences = compareState(
				state{KindACLPolicies: {"p-1": describePolicy(aclPolicy{Name: "app", Rules: "a"})}},
				state{KindACLPolicies: {"p-1": describePolicy(aclPolicy{Name: "app", Rules: "b"})}}, nil)
		}, "after the upgrade 1 entr(ies) NOT read back equal: acl-policies p-1 (see Data)", false},
		{"not restored", func(d *DataReport) { d.Restored, d.ReadBack, d.Err = nil, false, "PUT /v1/snapshot: 500" },
			"NOT restored from a Consul snapshot of the live cluster (read only): PUT /v1/snapshot: 500", false},
		{"not read back", func(d *DataReport) {
			d.ReadBack, d.Err = false, "reading the state back after the upgrade: connection refused"
		},
			"; NOT read back after the upgrade (reading the state back after the upgrade: connection refused)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dataReport()
			tc.edit(d)
			if row := d.Row(); !strings.Contains(row, tc.want) {
				t.Errorf("row %q\nlacks %q", row, tc.want)
			}
			if d.Equal() != tc.eq {
				t.Errorf("Equal() = %v, want %v", d.Equal(), tc.eq)
			}
		})
	}
}

func TestReportMarkdownHasTheDataRowAndListsEveryDifference(t *testing.T) {
	r := synthetic()
	r.Data = dataReport()
	r.Data.Differences = []DataDifference{
		{Kind: KindKV, Name: "app/b|c", Restored: "flags 0, 1 bytes, sha256 aa", ReadBack: "flags 0, 2 bytes, sha256 bb"},
		{Kind: KindServices, Name: "ext/db-1", Restored: "db tags [] :5433"},
	}
	var b strings.Builder
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| run | done |\n| data | restored from a Consul snapshot of the live cluster (read only): 60 KV entries",
		"2 entr(ies) NOT read back equal: kv app/b\\|c, services ext/db-1 (see Data)",
		"## Data\n\nThe backup restored: live cluster, a Consul snapshot (2-1234-5678) at Raft index 1234, term 2",
		"Not compared: " + notCompared,
		"| kv | app/b\\|c | flags 0, 1 bytes, sha256 aa | flags 0, 2 bytes, sha256 bb | no: not read back equal |",
		"| services | ext/db-1 | db tags [] :5433 | absent | no: not read back equal |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q\n%s", want, md)
		}
	}
	r.Data = nil
	b.Reset()
	r.WriteMarkdown(&b)
	if strings.Contains(b.String(), "| data |") || strings.Contains(b.String(), "## Data") {
		t.Error("a rehearsal without data has a data row")
	}
}

// snapshotArchive is a Consul snapshot archive as VerifySnapshot accepts it.
func snapshotArchive(t *testing.T) []byte {
	t.Helper()
	files := map[string][]byte{"meta.json": []byte(`{"ID":"2-9-1","Index":9,"Term":2}`), "state.bin": []byte("state")}
	var sums strings.Builder
	for _, n := range []string{"meta.json", "state.bin"} {
		s := sha256.Sum256(files[n])
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(s[:]), n)
	}
	files["SHA256SUMS"] = []byte(sums.String())
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, n := range []string{"meta.json", "state.bin", "SHA256SUMS"} {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(files[n]))})
		tw.Write(files[n])
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestABackupFileIsVerifiedBeforeAnythingStarts(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.snap")
	if err := os.WriteFile(good, snapshotArchive(t), 0o600); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.snap")
	b := snapshotArchive(t)
	b[len(b)/2] ^= 0xff
	os.WriteFile(corrupt, b, 0o600)
	bins := t.TempDir() // no binaries: a refusal for the file must come first

	for _, tc := range []struct {
		name string
		file string
		is   error
	}{
		{"a corrupted file", corrupt, upgrade.ErrSnapshotInvalid},
		{"a missing file", filepath.Join(dir, "nope.snap"), os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			var logged []string
			rep, err := Run(t.Context(), Options{Cluster: cluster("1.12.9", 3, 1), Target: "1.13.9", OutDir: out, BinDir: bins, Snapshot: tc.file,
				Logf: func(f string, a ...any) { logged = append(logged, f) }})
			var se *SnapshotFileError
			if !errors.As(err, &se) || se.Path != tc.file || !errors.Is(err, tc.is) {
				t.Fatalf("error %v: want a *SnapshotFileError on %s wrapping %v", err, tc.file, tc.is)
			}
			if !strings.Contains(err.Error(), "consul snapshot save") || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("error %q does not name the file and the fix", err)
			}
			if rep != nil || len(logged) > 0 {
				t.Errorf("report %v, progress %v: a refused rehearsal starts nothing", rep, logged)
			}
			if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("the output folder was created: %v", serr)
			}
		})
	}

	t.Run("a Consul snapshot for servers before 0.7.1", func(t *testing.T) {
		_, err := Run(t.Context(), Options{Cluster: cluster("0.6.4", 3, 0), Target: "0.7.5", OutDir: t.TempDir(), BinDir: bins, Snapshot: good})
		var oe *OptionsError
		if !errors.As(err, &oe) || oe.Field != "Snapshot" || !strings.Contains(err.Error(), "0.7.1") {
			t.Errorf("error %v: want an *OptionsError on Snapshot naming 0.7.1", err)
		}
	})

	t.Run("with data and no source", func(t *testing.T) {
		_, err := Run(t.Context(), Options{Cluster: cluster("1.12.9", 3, 0), Target: "1.13.9", OutDir: t.TempDir(), BinDir: bins, WithData: true})
		var oe *OptionsError
		if !errors.As(err, &oe) || oe.Field != "Source" {
			t.Errorf("error %v: want an *OptionsError on Source", err)
		}
	})
}
