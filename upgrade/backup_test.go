package upgrade

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
