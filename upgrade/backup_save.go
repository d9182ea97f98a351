package upgrade

import (
	"context"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// SaveBackup takes one verified backup of datacenter through c, the one a
// run takes before a hop away from version (the servers' lowest): a
// Consul snapshot through /v1/snapshot from 0.7.1, the logical backup
// below it (see VerifySnapshot for both formats), written to the sink
// open returns and committed only when it verified (see SnapshotSink). It
// only reads the cluster: no lock, no record, no write. It is what a
// rehearsal on the cluster's own data restores into its replica. The
// info's Kind says which backup was taken; with SnapshotDir, Path names
// the file. Errors name the version and the stage that failed; content
// errors wrap ErrSnapshotInvalid.
func SaveBackup(ctx context.Context, c Consul, open SnapshotFunc, datacenter, version string) (SnapshotInfo, error) {
	var dest SnapshotSink
	opened := func(ctx context.Context, dc, v string) (SnapshotSink, error) {
		s, err := open(ctx, dc, v)
		dest = s
		return s, err
	}
	save := saveSnapshot
	if backupKind(planner.Step{From: version}) == planner.BackupLogical {
		save = saveLogicalBackup
	}
	info, err := save(ctx, c, opened, datacenter, version)
	if err == nil {
		if f, ok := dest.(*fileSink); ok {
			info.Path = f.final
		}
	}
	return info, err
}
