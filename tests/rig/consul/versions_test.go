package consulrig

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testedVersions reads scripts/consul-versions, the one list of the Consul
// versions the tests run (scripts/test.sh builds the same list).
func testedVersions(t *testing.T) []string {
	t.Helper()
	path := filepath.Join(repoRoot(t), "scripts", "consul-versions")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the version list: %v", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if slices.Contains(out, line) {
			t.Fatalf("%s lists %s twice", path, line)
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		t.Fatalf("%s lists no version", path)
	}
	return out
}

// Every listed version, from 0.6.4 on, runs as a real 1-server + 1-client
// cluster: it elects a leader, and a KV write through the client reads back
// through the client.
func TestEveryVersionElectsAndServesKV(t *testing.T) {
	for _, v := range testedVersions(t) {
		t.Run(v, func(t *testing.T) {
			opt := Options{Servers: 1, Clients: 1, Version: v}
			if SupportsRaftMultiplier(v) {
				opt.RaftMultiplier = 1
			}
			c := Start(t, opt)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			leader, err := c.Leader(ctx)
			if err != nil {
				t.Fatalf("leader: %v", err)
			}
			if leader != "s1" {
				t.Fatalf("leader = %q, want s1 (the only server)", leader)
			}
			key, value := "rig/smoke/"+strings.ReplaceAll(v, ".", "-"), fmt.Sprintf("written on %s at %d", v, time.Now().UnixNano())
			if err := c.KVPut(ctx, "c1", key, value); err != nil {
				t.Fatalf("KV write through c1: %v", err)
			}
			got, found, err := c.KVGet(ctx, "c1", key)
			if err != nil || !found || got != value {
				t.Fatalf("KV read through c1 = %q, found %v, err %v; want %q", got, found, err, value)
			}
			pids := c.PIDs()
			c.Stop()
			for _, pid := range pids {
				if ProcessAlive(pid) {
					t.Errorf("agent pid %d still runs after Stop", pid)
				}
			}
		})
	}
}

func TestEraFlags(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		version    string
		server     bool
		multiplier int
		want       []string // "<dir>" stands for dir
	}{
		{"0.6.4", true, 0, []string{"-dc=dc9"}},
		{"0.6.4", false, 0, []string{"-dc=dc9"}},
		{"0.7.5", false, 0, []string{"-datacenter=dc9"}},
		{"0.7.5", true, 0, []string{"-datacenter=dc9"}},
		{"0.9.3", true, 2, []string{"-datacenter=dc9", "-config-file=<dir>/raft-multiplier-2.json"}},
		{"0.9.3", false, 0, []string{"-datacenter=dc9"}},
		{"1.0.8", true, 1, []string{"-datacenter=dc9", "-hcl=performance { raft_multiplier = 1 }"}},
		{"1.12.9", true, 1, []string{"-datacenter=dc9", "-hcl=performance { raft_multiplier = 1 }"}},
		{"1.16.1", false, 0, []string{"-datacenter=dc9"}},
	}
	for _, tc := range cases {
		got, err := eraFlags(tc.version, "dc9", tc.server, tc.multiplier, dir)
		if err != nil {
			t.Errorf("eraFlags(%s, server %v, multiplier %d): %v", tc.version, tc.server, tc.multiplier, err)
			continue
		}
		var want []string
		for _, w := range tc.want {
			want = append(want, strings.ReplaceAll(w, "<dir>", dir))
		}
		if !slices.Equal(got, want) {
			t.Errorf("eraFlags(%s, server %v, multiplier %d) = %q, want %q", tc.version, tc.server, tc.multiplier, got, want)
		}
	}
	if got := readFile(t, filepath.Join(dir, "raft-multiplier-2.json")); got != "{\"performance\": {\"raft_multiplier\": 2}}\n" {
		t.Errorf("raft multiplier config file = %q", got)
	}

	_, err := eraFlags("0.6.4", "dc1", true, 1, dir)
	if err == nil || !strings.Contains(err.Error(), "0.6.4") || !strings.Contains(err.Error(), "RaftMultiplier") {
		t.Errorf("eraFlags(0.6.4, multiplier 1) error = %v, want one naming 0.6.4 and RaftMultiplier", err)
	}
	if _, err := eraFlags("not-a-version", "dc1", false, 0, dir); err == nil {
		t.Error("eraFlags(not-a-version) succeeded, want an error")
	}
	for v, want := range map[string]bool{"0.6.4": false, "0.7.5": true, "1.12.9": true, "junk": false} {
		if got := SupportsRaftMultiplier(v); got != want {
			t.Errorf("SupportsRaftMultiplier(%s) = %v, want %v", v, got, want)
		}
	}
}

// A release the build script has no recipe for (0.5.2 needs modules the
// proxy does not serve) fails with the list of the ones it can build.
func TestBinaryRefusesUnsupportedVersion(t *testing.T) {
	t.Setenv("CONSUL_UPGRADE_BIN_DIR", t.TempDir())
	_, built, err := ensureBinary(repoRoot(t), "0.5.2")
	if err == nil {
		t.Fatal("ensureBinary(0.5.2) succeeded, want an error")
	}
	if built {
		t.Error("ensureBinary(0.5.2) reports a build")
	}
	for _, want := range []string{`"0.5.2"`, "supported versions are 0.6.4 ", " 1.16.1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
