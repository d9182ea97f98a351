package consulrig

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	version "github.com/hashicorp/go-version"
)

// The agent flags that differ between Consul releases, by era:
//
//   - 0.6.x: the datacenter flag is -dc (-datacenter came in 0.7), and there
//     is no performance.raft_multiplier (also 0.7), so RaftMultiplier is
//     refused rather than silently ignored.
//   - 0.7.x to 0.9.x: -datacenter; raft_multiplier only in a config file
//     (there is no -hcl flag before 1.0).
//   - 1.0 and later: -datacenter and -hcl.
//
// Every era has -bootstrap-expect, -advertise, -retry-join, -retry-interval
// and -log-level, and the readiness checks use only endpoints every era has
// (/v1/status/leader, /v1/agent/members, /v1/agent/self).
var (
	firstDatacenterFlag = version.Must(version.NewVersion("0.7.0"))
	firstRaftMultiplier = version.Must(version.NewVersion("0.7.0"))
	firstHCLFlag        = version.Must(version.NewVersion("1.0.0"))
)

// SupportsRaftMultiplier reports whether the agents of a Consul version
// take performance.raft_multiplier (0.7 and later), that is whether
// Options.RaftMultiplier may be set for it.
func SupportsRaftMultiplier(v string) bool {
	pv, err := version.NewVersion(v)
	return err == nil && !pv.LessThan(firstRaftMultiplier)
}

// eraFlags returns the flags of the agent arguments whose spelling depends
// on the era of Consul version v (see above): the datacenter for every agent
// and, when server and multiplier is not 0, the Raft timing multiplier.
// A multiplier for an era before 0.7 is an error. For 0.7-0.9 the
// multiplier goes into a JSON config file it writes in dir.
func eraFlags(v, datacenter string, server bool, multiplier int, dir string) ([]string, error) {
	pv, err := version.NewVersion(v)
	if err != nil {
		return nil, fmt.Errorf("consul version %q: %w", v, err)
	}
	if server && multiplier != 0 && pv.LessThan(firstRaftMultiplier) {
		return nil, fmt.Errorf("consul %s has no performance.raft_multiplier (it came in 0.7); leave Options.RaftMultiplier at 0 for this version", v)
	}
	if pv.LessThan(firstDatacenterFlag) { // 0.6.x
		return []string{"-dc=" + datacenter}, nil
	}
	flags := []string{"-datacenter=" + datacenter}
	if !server || multiplier == 0 {
		return flags, nil
	}
	if pv.LessThan(firstHCLFlag) { // 0.7.x - 0.9.x
		path := filepath.Join(dir, fmt.Sprintf("raft-multiplier-%d.json", multiplier))
		body := fmt.Sprintf("{\"performance\": {\"raft_multiplier\": %d}}\n", multiplier)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return nil, fmt.Errorf("raft multiplier config for consul %s: %w", v, err)
		}
		return append(flags, "-config-file="+path), nil
	}
	return append(flags, fmt.Sprintf("-hcl=performance { raft_multiplier = %d }", multiplier)), nil
}

// argsFor returns the local.Agent.ArgsFor of a server or client: the era's
// flags for the version being started (so a swap across eras gets the new
// spelling) and, for servers, Options.ServerArgsFor.
func (c *Cluster) argsFor(server bool) func(version string) ([]string, error) {
	return func(v string) ([]string, error) {
		mult := 0
		if server {
			mult = c.opt.RaftMultiplier
		}
		flags, err := eraFlags(v, c.opt.Datacenter, server, mult, c.dir)
		if err != nil {
			return nil, err
		}
		if server && c.opt.ServerArgsFor != nil {
			flags = append(flags, c.opt.ServerArgsFor(v)...)
		}
		return flags, nil
	}
}

// writeNodeID gives an agent a node ID of its own before its first start:
// <dataDir>/node-id, which agents from 0.7.3 on read (older ones ignore
// it). Without it, 0.7.3 to 0.8.4 derive the ID from the host, so agents
// sharing one host share an ID, keep it in their data dirs, and 0.8.5 and
// later refuse each other's joins ("conflicting node ID"). A file is used
// rather than -node-id because an ID given by flag is not persisted, and a
// later version started without the flag would pick a new one.
func writeNodeID(dataDir, dir, name string) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dataDir, "node-id"), []byte(nodeID(dir, name)), 0o644)
}

// nodeID is a UUID of the agent's own: derived from the cluster's
// directory and the agent's name.
func nodeID(dir, name string) string {
	h := sha256.Sum256([]byte(dir + "\x00" + name))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
