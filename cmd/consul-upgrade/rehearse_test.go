package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const threeServers = `{"servers": [
  {"name": "s1", "version": "1.15.4", "voter": true, "healthy": true, "leader": true},
  {"name": "s2", "version": "1.15.4", "voter": true, "healthy": true},
  {"name": "s3", "version": "1.15.4", "voter": true, "healthy": true}],
 "clients": [{"name": "web1", "version": "1.15.4"}], "features": {}}`

func TestRehearseIsACommandWithItsFlags(t *testing.T) {
	if _, ok := commands["rehearse"]; !ok {
		t.Fatal("rehearse is not in the command table")
	}
	code, out, _ := cli(t, "help")
	if code != exitOK || !strings.Contains(out, "rehearse") {
		t.Errorf("help (exit %d) does not list rehearse:\n%s", code, out)
	}
	code, _, errOut := cli(t, "rehearse", "-h")
	if code != exitOK {
		t.Errorf("rehearse -h: exit %d", code)
	}
	for _, flag := range []string{"-plan", "-cluster", "-to", "-clients", "-out", "-bin-dir", "-policy", "-with-data", "-snapshot"} {
		if !strings.Contains(errOut, flag) {
			t.Errorf("rehearse -h does not document %s:\n%s", flag, errOut)
		}
	}
}

func TestRehearseRefusesBadFlagsBeforeStartingAnything(t *testing.T) {
	cluster := writeFile(t, "cluster.json", threeServers)
	corrupt := writeFile(t, "corrupt.snap", "not a snapshot")
	aclCluster := writeFile(t, "acl-cluster.json", strings.Replace(threeServers, `"features": {}`, `"features": {"acls": true}`, 1))
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
	out := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"no output folder", []string{"-cluster", cluster, "-to", "1.16.1"}, "-out is required"},
		{"no target", []string{"-cluster", cluster, "-out", out}, "-to is required"},
		{"a target that is not a version", []string{"-cluster", cluster, "-to", "v1.16.1", "-out", out}, "-to"},
		{"a plan and a target", []string{"-plan", cluster, "-to", "1.16.1", "-out", out}, "-plan carries its target"},
		{"a negative client count", []string{"-cluster", cluster, "-to", "1.16.1", "-out", out, "-clients", "-1"}, "-clients -1 is negative"},
		{"too many clients", []string{"-cluster", cluster, "-to", "1.16.1", "-out", out, "-clients", "99"}, "Options.Clients 99"},
		{"a cluster file that is not one", []string{"-cluster", writeFile(t, "bad.json", `{"servers": 3}`), "-to", "1.16.1", "-out", out}, "-cluster"},
		{"data without a live cluster to take it from", []string{"-cluster", cluster, "-to", "1.16.1", "-out", out, "-with-data"}, "-with-data takes its backup from the live cluster"},
		{"data of a cluster with ACLs and no token", []string{"-cluster", aclCluster, "-to", "1.16.1", "-out", out, "-snapshot", corrupt}, "the cluster has ACLs on: set CONSUL_HTTP_TOKEN"},
		{"a snapshot file that is not one", []string{"-cluster", cluster, "-to", "1.16.1", "-out", out, "-snapshot", corrupt}, "snapshot file " + corrupt + " cannot be restored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := cli(t, append([]string{"rehearse"}, tc.args...)...)
			if code != exitUsage || !strings.Contains(errOut, tc.says) {
				t.Errorf("exit %d, stderr %q: want exit %d saying %q", code, errOut, exitUsage, tc.says)
			}
		})
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a refused rehearsal wrote into the output folder: %v", entries)
	}
}

func TestRehearseNamesTheCommandThatBuildsAMissingBinary(t *testing.T) {
	bin := t.TempDir()
	// A saved plan: its shape (s1..s3 on 1.15.4) and target are rehearsed.
	var c planner.Cluster
	if err := readJSON(writeFile(t, "cluster.json", threeServers), &c); err != nil {
		t.Fatal(err)
	}
	p, err := planner.Plan(c, "1.16.1", planner.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	plan := writeFile(t, "plan.json", string(data))
	code, _, errOut := cli(t, "rehearse", "-plan", plan, "-out", t.TempDir(), "-bin-dir", bin)
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	for _, v := range []string{"1.15.4", "1.16.1"} {
		if want := "CONSUL_UPGRADE_BIN_DIR=" + bin + " scripts/build-consul.sh " + v; !strings.Contains(errOut, want) {
			t.Errorf("stderr does not name %q:\n%s", want, errOut)
		}
	}
}
