package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// DefaultBackupMaxAge is how old a recorded backup may be and still spare a
// new run the backup of the same hop (Config.BackupMaxAge 0).
const DefaultBackupMaxAge = 24 * time.Hour

// KVStore is an optional interface of a Consul: single keys of the KV
// store of the agent's datacenter. The Consul that NewConsul returns
// implements it. Run keeps its BackupRecord there.
type KVStore interface {
	// KVGet returns the value of key, and false when there is no such key.
	KVGet(ctx context.Context, key string) (value []byte, ok bool, err error)
	// KVPut sets key to value.
	KVPut(ctx context.Context, key string, value []byte) error
	// KVDelete deletes key (no error when it does not exist).
	KVDelete(ctx context.Context, key string) error
}

// BackupRecord is what a run keeps in the KV store next to the lock (at
// consul-upgrade/backup for the default lock key), after a verified backup: a later run (one that was stopped after MaxSteps
// or a StopHere, or one restarted after a crash) that finds a record of a
// backup taken on the servers' current version, no older than
// Config.BackupMaxAge, does not take another for the same hop. A run that
// reaches the target deletes the record.
type BackupRecord struct {
	// Version is the servers' version the backup was taken on (the
	// snapshot step's From).
	Version string `json:"version"`
	// Target is the target of the run that took it.
	Target string `json:"target"`
	// Holder names the run that took it (the lock's holder).
	Holder string    `json:"holder,omitempty"`
	Taken  time.Time `json:"taken"`
	// Snapshots describes the verified archive of each datacenter, by name.
	Snapshots map[string]SnapshotInfo `json:"snapshots,omitempty"`
	// Key is the KV key the record was read from (set by
	// ReadBackupRecord; not stored).
	Key string `json:"-"`
}

// recordKey is the KV key of the record name ("backup", "swap") next to the
// lock at lockKey ("": DefaultLockKey): "consul-upgrade/backup" for
// "consul-upgrade/lock"; "upgrade-lock-backup" for a key without a "/".
func recordKey(lockKey, name string) string {
	if lockKey == "" {
		lockKey = DefaultLockKey
	}
	i := strings.LastIndex(lockKey, "/")
	if i < 0 || lockKey[i+1:] == name {
		return lockKey + "-" + name
	}
	return lockKey[:i+1] + name
}

func backupKey(lockKey string) string { return recordKey(lockKey, "backup") }

// ReadBackupRecord reads the backup record next to the lock at lockKey
// ("": DefaultLockKey) through c, which must implement KVStore (NewConsul's
// does). It returns nil and no error when there is none.
func ReadBackupRecord(ctx context.Context, c Consul, lockKey string) (*BackupRecord, error) {
	kv, ok := c.(KVStore)
	if !ok {
		return nil, fmt.Errorf("read the backup record: the Consul given (%T) does not implement upgrade.KVStore; pass upgrade.NewConsul(client)", c)
	}
	key := backupKey(lockKey)
	b, found, err := kv.KVGet(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read the backup record %s: %w", key, err)
	}
	if !found {
		return nil, nil
	}
	var rec BackupRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("read the backup record %s: not a backup record (%v); delete the key (consul kv delete %s) and the next run takes a new backup", key, err, key)
	}
	rec.Key = key
	return &rec, nil
}

func (a *apiConsul) KVGet(ctx context.Context, key string) ([]byte, bool, error) {
	p, _, err := a.c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || p == nil {
		return nil, false, err
	}
	return p.Value, true, nil
}

func (a *apiConsul) KVPut(ctx context.Context, key string, value []byte) error {
	_, err := a.c.KV().Put(&api.KVPair{Key: key, Value: value}, (&api.WriteOptions{}).WithContext(ctx))
	return err
}

func (a *apiConsul) KVDelete(ctx context.Context, key string) error {
	_, err := a.c.KV().Delete(key, (&api.WriteOptions{}).WithContext(ctx))
	return err
}

// loadBackup makes the run know of a backup an earlier run recorded on the
// servers' current version (whether the version is current is the
// planner's to judge: it compares Cluster.SnapshotVersion with the
// servers' lowest). A record that cannot be read, or is too old, is
// ignored: the run then takes a backup of its own.
func (r *runner) loadBackup(ctx context.Context) {
	if _, ok := r.cfg.Consul.(KVStore); !ok || r.snapshot != "" {
		return
	}
	key := backupKey(r.cfg.LockKey)
	rec, err := ReadBackupRecord(ctx, r.cfg.Consul, r.cfg.LockKey)
	switch {
	case err != nil:
		r.emit(ctx, Event{Kind: EventBackupRecord, Err: err, Detail: "the backup record could not be read; a backup is taken before the next hop's first server swap"})
		return
	case rec == nil || rec.Version == "":
		return
	}
	maxAge := r.cfg.BackupMaxAge
	if maxAge == 0 {
		maxAge = DefaultBackupMaxAge
	}
	if age := time.Since(rec.Taken); age > maxAge {
		r.emit(ctx, Event{Kind: EventBackupRecord, Detail: fmt.Sprintf("the backup on %s recorded in %s is %s old (more than Config.BackupMaxAge %s); a new one is taken before the next hop's first server swap", rec.Version, key, age.Round(time.Second), maxAge)})
		return
	}
	r.snapshot = rec.Version
	r.emit(ctx, Event{Kind: EventBackupRecord, Detail: fmt.Sprintf("a verified backup on %s, taken %s by %q, is recorded in %s; it is not taken again for that version", rec.Version, rec.Taken.UTC().Format(time.RFC3339), rec.Holder, key)})
}

// recordBackup keeps the backup just taken in the KV store. A failure is
// reported, not fatal: a later run then takes the backup again.
func (r *runner) recordBackup(ctx context.Context, rec StepRecord) {
	kv, ok := r.cfg.Consul.(KVStore)
	if !ok {
		return
	}
	key := backupKey(r.cfg.LockKey)
	br := BackupRecord{Version: rec.Step.From, Target: r.cfg.Target, Holder: r.holder(), Taken: time.Now().UTC(), Snapshots: rec.Snapshots}
	b, err := json.Marshal(br)
	if err == nil {
		err = kv.KVPut(ctx, key, b)
	}
	if err != nil {
		r.emit(ctx, Event{Kind: EventBackupRecord, Step: rec.Step, Err: fmt.Errorf("record the backup in %s: %w", key, err), Detail: "a later run takes the backup again"})
		return
	}
	r.emit(ctx, Event{Kind: EventBackupRecord, Step: rec.Step, Detail: fmt.Sprintf("backup on %s recorded in %s", br.Version, key)})
}

// forgetBackup deletes the backup record of a run that reached the target.
func (r *runner) forgetBackup(ctx context.Context) {
	kv, ok := r.cfg.Consul.(KVStore)
	if !ok {
		return
	}
	key := backupKey(r.cfg.LockKey)
	if err := kv.KVDelete(ctx, key); err != nil {
		r.emit(ctx, Event{Kind: EventBackupRecord, Err: fmt.Errorf("delete the backup record %s: %w", key, err), Detail: "delete it by hand (consul kv delete " + key + ")"})
	}
}

// ReadLockHolder reads who holds the upgrade lock at key ("":
// DefaultLockKey) through c, which must implement KVStore (NewConsul's
// does). It returns nil and no error when nobody holds it (a finished run
// leaves no key).
func ReadLockHolder(ctx context.Context, c Consul, key string) (*LockHolder, error) {
	if key == "" {
		key = DefaultLockKey
	}
	kv, ok := c.(KVStore)
	if !ok {
		return nil, fmt.Errorf("read the upgrade lock %s: the Consul given (%T) does not implement upgrade.KVStore; pass upgrade.NewConsul(client)", key, c)
	}
	b, found, err := kv.KVGet(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read the upgrade lock %s: %w", key, err)
	}
	if !found {
		return nil, nil
	}
	var h LockHolder
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("read the upgrade lock %s: its value is not a lock holder (%v); if no run is going on, delete the key (consul kv delete %s)", key, err, key)
	}
	return &h, nil
}
