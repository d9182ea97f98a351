package upgrade_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// Validate reports every problem at once, each as a *upgrade.ConfigError.
func ExampleConfig_Validate() {
	cfg := upgrade.Config{Target: "latest", GateTimeout: -1}
	err := cfg.Validate()
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Println(line)
	}
	var ce *upgrade.ConfigError
	fmt.Println(errors.As(err, &ce), ce.Field)
	// Output:
	// config Consul: is nil; pass upgrade.NewConsul(client) for an *api.Client
	// config Target = "latest": is not a version number; name the exact release as X.Y.Z, optionally -pre or +build (e.g. 1.13.9, 1.14.0-rc1, 1.10.12+ent)
	// config Transport: is nil; a run that is not a dry run needs a transport to swap nodes
	// config Snapshot: is nil while Policy.NoSnapshot is false; set Snapshot (e.g. upgrade.SnapshotDir(dir)) or opt out with Policy.NoSnapshot
	// config GateTimeout = -1ns: is negative; use 0 for the default (5m0s) or a positive duration
	// true Consul
}

// VerifySnapshot refuses a stream that is not a Consul snapshot archive.
func ExampleVerifySnapshot() {
	_, err := upgrade.VerifySnapshot(strings.NewReader("not a snapshot"))
	fmt.Println(errors.Is(err, upgrade.ErrSnapshotInvalid))
	fmt.Println(err)
	// Output:
	// true
	// snapshot archive invalid: not gzip-compressed (gzip: invalid header); a Consul snapshot is a .tar.gz from /v1/snapshot
}
