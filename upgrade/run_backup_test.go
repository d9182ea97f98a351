package upgrade

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

func TestBackupKeyIsNextToTheLock(t *testing.T) {
	for lock, want := range map[string]string{
		"":                    "consul-upgrade/backup",
		"consul-upgrade/lock": "consul-upgrade/backup",
		"ops/upgrades/lock":   "ops/upgrades/backup",
		"upgrade-lock":        "upgrade-lock-backup",
		"ops/backup":          "ops/backup-backup",
	} {
		if got := backupKey(lock); got != want {
			t.Errorf("backupKey(%q) = %q, want %q", lock, got, want)
		}
	}
}

// A run stepped one step at a time takes the hop's backup once: the second
// run finds it recorded next to the lock.
func TestSteppedRunsTakeTheHopsBackupOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		r.cfg.MaxSteps = 1
		runs := 0
		for ; runs < 10; runs++ {
			res, err := Run(t.Context(), r.cfg)
			if err != nil {
				t.Fatalf("run %d: %v", runs, err)
			}
			if runs == 0 {
				b, ok := r.sim.KV("consul-upgrade/backup")
				var rec BackupRecord
				if !ok || json.Unmarshal(b, &rec) != nil || rec.Version != "1.12.9" || rec.Target != "1.13.9" || rec.Snapshots["dc1"].ID == "" {
					t.Fatalf("after the first run's snapshot, the record is %q (found %v), want the backup on 1.12.9 with its snapshot", b, ok)
				}
			}
			if !res.Stopped {
				break
			}
		}
		if len(r.snapshots) != 1 || r.snapshots[0] != "1.12.9" {
			t.Errorf("snapshots taken on %v over %d runs, want one, on 1.12.9", r.snapshots, runs+1)
		}
		if v := r.sim.Version("s1"); v != "1.13.9" {
			t.Errorf("s1 runs %s, want 1.13.9", v)
		}
		if _, ok := r.sim.KV("consul-upgrade/backup"); ok {
			t.Errorf("the backup record is still there after the run reached the target")
		}
	})
}

func TestARecordedBackupOlderThanBackupMaxAgeIsTakenAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		old, _ := json.Marshal(BackupRecord{Version: "1.12.9", Target: "1.13.9", Taken: time.Now().Add(-48 * time.Hour)})
		r.sim.PutKV("consul-upgrade/backup", old)
		r.cfg.MaxSteps = 1
		res, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Steps) != 1 || res.Steps[0].Step.Kind != planner.StepSnapshot || len(r.snapshots) != 1 {
			t.Fatalf("steps %v, snapshots %v: want a new snapshot for a 48h-old record", res.Steps, r.snapshots)
		}
	})
}

func TestARecentlyRecordedBackupSparesTheSnapshotAndShowsInTheDryRunPlan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		rec, _ := json.Marshal(BackupRecord{Version: "1.12.9", Target: "1.13.9", Taken: time.Now().Add(-time.Hour)})
		r.sim.PutKV("consul-upgrade/backup", rec)
		cfg := r.cfg
		cfg.DryRun = true
		res, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Plan.Steps[0].Kind != planner.StepSwapServer {
			t.Errorf("dry-run plan starts with %s, want a server swap: the backup is recorded", res.Plan.Steps[0])
		}
		// A record of another version does not count.
		other, _ := json.Marshal(BackupRecord{Version: "1.11.1", Target: "1.13.9", Taken: time.Now()})
		r.sim.PutKV("consul-upgrade/backup", other)
		if res, err = Run(t.Context(), cfg); err != nil || res.Plan.Steps[0].Kind != planner.StepSnapshot {
			t.Errorf("with a record on 1.11.1 the plan starts with %v (err %v), want a snapshot", res.Plan.Steps[0], err)
		}
	})
}

func TestReadLockHolderSaysWhoHoldsTheLockDuringARun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.LockHolder = "alice on ops-1"
		var during *LockHolder
		r.cfg.BeforeStep = func(ctx context.Context, s StepInfo) (StepDecision, error) {
			h, err := ReadLockHolder(ctx, r.cfg.Consul, "")
			if err != nil {
				t.Error(err)
			}
			during = h
			return StopHere, nil
		}
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatal(err)
		}
		if during == nil || during.Holder != "alice on ops-1" || during.Target != "1.13.9" {
			t.Errorf("holder during the run = %+v, want alice's, for 1.13.9", during)
		}
		if h, err := ReadLockHolder(t.Context(), r.cfg.Consul, ""); err != nil || h != nil {
			t.Errorf("after the run: holder %+v, err %v; want none", h, err)
		}
	})
}
