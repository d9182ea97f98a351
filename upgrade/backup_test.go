package upgrade

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// VerifySnapshot is the one check of a backup file: a Consul snapshot or
// a logical backup, each verified to its checksums, the kind reported.
func TestVerifySnapshotChecksALogicalBackupFileAsWellAsASnapshot(t *testing.T) {
	s := consultest.NewCluster(3, 0, "0.4.1", consultest.WithEra(consultest.Era04), consultest.WithACLs(consultest.ACLsLegacy))
	cl, err := s.Client()
	mustDo(t, err)
	for _, k := range []string{"service/web/config", "locks/deploy"} {
		if _, err := cl.KV().Put(&api.KVPair{Key: k, Value: []byte("value of " + k)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	saved, err := saveLogicalBackup(t.Context(), inProcessConsul(t, s), SnapshotDir(dir), "dc1", "0.4.1")
	mustDo(t, err)
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 {
		t.Fatalf("files %v, want one", files)
	}
	b, err := os.ReadFile(files[0])
	mustDo(t, err)
	info, err := VerifySnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("VerifySnapshot of a logical backup: %v", err)
	}
	if info.Kind != planner.BackupLogical || info.Keys != 2 || info.ACLTokens != 2 || info.Index != saved.Index || info.ID != saved.ID || len(info.Files) != 3 {
		t.Errorf("info %+v; want a logical backup of 2 keys and 2 tokens at index %d, 3 files listed in SHA256SUMS", info, saved.Index)
	}
	snap, err := VerifySnapshot(bytes.NewReader(makeSnapshot(t, snapshotFiles{})))
	if err != nil || snap.Kind != planner.BackupSnapshot || snap.StateSize == 0 {
		t.Errorf("VerifySnapshot of a snapshot = %+v, %v; want a snapshot with its state.bin", snap, err)
	}
	for name, archive := range map[string][]byte{
		"truncated": b[:len(b)/2],
		"tampered":  tamperedLogical(t),
	} {
		if _, err := VerifySnapshot(bytes.NewReader(archive)); !errors.Is(err, ErrSnapshotInvalid) {
			t.Errorf("%s logical backup: err = %v, want ErrSnapshotInvalid", name, err)
		} else if name == "tampered" && !strings.Contains(err.Error(), "logical backup: kv.json has SHA-256") {
			t.Errorf("tampered: %v, want the logical backup's kv.json named", err)
		}
	}
}

// tamperedLogical is a logical backup whose kv.json changed after its
// checksum was taken.
func tamperedLogical(t *testing.T) []byte {
	meta := []byte(`{"format":"` + logicalBackupFormat + `","version":"0.4.1","keys":1}`)
	files := []consultest.SnapshotFile{{Name: "meta.json", Data: meta}, {Name: "kv.json", Data: []byte(`[{"Key":"a","Value":"b2s="}]`)}}
	sums := consultest.SnapshotSums(files...)
	files[1].Data = []byte(`[{"Key":"a","Value":"bm8="}]`)
	b, err := consultest.Archive(append(files, consultest.SnapshotFile{Name: "SHA256SUMS", Data: sums})...)
	mustDo(t, err)
	return b
}

// The records say where they were read from (the key an operator deletes
// by hand), and do not store it.
func TestTheRecordsNameTheKeyTheyWereReadFrom(t *testing.T) {
	s := consultest.NewCluster(3, 0, "1.12.9")
	c := inProcessConsul(t, s)
	s.PutKV("ops/upgrades/backup", []byte(`{"version":"1.12.9","target":"1.13.9"}`))
	s.PutKV("ops/upgrades/swap", []byte(`{"step":{"kind":"swap-server","node":"s2","to":"1.13.9"},"node":"s2","to":"1.13.9"}`))
	b, err := ReadBackupRecord(t.Context(), c, "ops/upgrades/lock")
	if err != nil || b == nil || b.Key != "ops/upgrades/backup" {
		t.Errorf("ReadBackupRecord = %+v, %v; want the record with Key ops/upgrades/backup", b, err)
	}
	w, err := ReadSwapRecord(t.Context(), c, "ops/upgrades/lock")
	if err != nil || w == nil || w.Key != "ops/upgrades/swap" {
		t.Errorf("ReadSwapRecord = %+v, %v; want the record with Key ops/upgrades/swap", w, err)
	}
	if data, err := json.Marshal(w); err != nil || strings.Contains(string(data), "ops/upgrades") {
		t.Errorf("the swap record marshals to %s (%v): the key is not part of it", data, err)
	}
}

// A leader elected a moment ago can answer a default read before it has
// applied its log again (CI saw a restarted single server miss a key that
// way). The logical backup's read of the KV tree is ?consistent, so it gets
// the whole tree, or a refusal that fails the backup, never a partial one.
func TestTheLogicalBackupReadsTheKVTreeConsistently(t *testing.T) {
	defer func(w time.Duration) { notReadyWait = w }(notReadyWait)
	notReadyWait = 500 * time.Millisecond
	for _, tc := range []struct {
		name     string
		refusals int // consistent reads refused before the leader is ready
		wantKeys int
		wantErr  string
	}{
		{name: "a ready leader gives the whole tree", refusals: 0, wantKeys: 2},
		{name: "a leader ready after two refusals gives the whole tree", refusals: 2, wantKeys: 2},
		{name: "a leader never ready fails the read, quoting the refusal", refusals: 1000, wantErr: "Not ready to serve consistent reads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var refusedN atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/kv/" {
					t.Errorf("unexpected request %s %s", r.Method, r.URL)
					http.NotFound(w, r)
					return
				}
				_, consistent := r.URL.Query()["consistent"]
				switch {
				case !consistent:
					// What a fresh leader's default read can answer: the
					// tree before its log was applied again.
					w.Write([]byte(`[{"Key":"a","Value":"MQ=="}]`))
				case int(refusedN.Load()) < tc.refusals:
					refusedN.Add(1)
					http.Error(w, "Not ready to serve consistent reads", http.StatusInternalServerError)
				default:
					w.Header().Set("X-Consul-Index", "7")
					w.Write([]byte(`[{"Key":"a","Value":"MQ=="},{"Key":"b","Value":"Mg=="}]`))
				}
			}))
			defer srv.Close()
			client, err := api.NewClient(&api.Config{Address: srv.Listener.Addr().String()})
			if err != nil {
				t.Fatal(err)
			}
			er, err := eraReader(NewConsul(client), "logical backup")
			if err != nil {
				t.Fatal(err)
			}
			pairs, index, err := er.KVList(context.Background())
			refused := int(refusedN.Load())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || refused < 2 {
					t.Fatalf("KVList = %d pairs, %v after %d refusals; want an error quoting %q after more than one", len(pairs), err, refused, tc.wantErr)
				}
				return
			}
			if err != nil || len(pairs) != tc.wantKeys || index != 7 || refused != tc.refusals {
				t.Fatalf("KVList = %d pairs at index %d, %v after %d refusals; want %d pairs at index 7 after %d", len(pairs), index, err, refused, tc.wantKeys, tc.refusals)
			}
		})
	}
}
