package upgrade

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// SaveBackup takes the backup a run would take before leaving the
// servers' version, and only that: a Consul snapshot from 0.7.1, the
// logical backup below, in a SnapshotDir file it names, and nothing is
// written to the cluster (no lock, no backup record).
func TestSaveBackupTakesTheBackupOfTheVersionsEraAndWritesNothingToTheCluster(t *testing.T) {
	for _, tc := range []struct {
		version string
		opts    []consultest.Option
		kind    planner.BackupKind
	}{
		{"1.12.9", []consultest.Option{consultest.WithSnapshot(makeSnapshot(t, snapshotFiles{}))}, planner.BackupSnapshot},
		{"0.6.4", nil, planner.BackupLogical},
	} {
		t.Run(tc.version, func(t *testing.T) {
			sim := consultest.NewCluster(3, 1, tc.version, tc.opts...)
			cl, err := sim.Client()
			mustDo(t, err)
			if _, err := cl.KV().Put(&api.KVPair{Key: "app/config", Value: []byte("port=80")}, nil); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "backup")
			info, err := SaveBackup(t.Context(), inProcessConsul(t, sim), SnapshotDir(dir), "dc1", tc.version)
			if err != nil {
				t.Fatalf("SaveBackup: %v", err)
			}
			if info.Kind != tc.kind || info.Path == "" || filepath.Dir(info.Path) != dir {
				t.Fatalf("info %+v: want a %s backup saved in %s", info, tc.kind, dir)
			}
			f, err := os.Open(info.Path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
				t.Errorf("backup file mode %o, want 0600 (it holds the cluster's secrets)", fi.Mode().Perm())
			}
			back, err := VerifySnapshot(f)
			if err != nil || back.Kind != tc.kind {
				t.Errorf("the saved file verifies as %s, %v; want a valid %s backup", back.Kind, err, tc.kind)
			}
			if tc.kind == planner.BackupLogical && info.Keys != 1 {
				t.Errorf("logical backup of %d keys, want the 1 key written", info.Keys)
			}
			pairs, _, err := cl.KV().List("", nil)
			if err != nil || len(pairs) != 1 {
				t.Errorf("the cluster's KV after SaveBackup: %d entries (%v), want only app/config: nothing written", len(pairs), err)
			}
		})
	}
}
