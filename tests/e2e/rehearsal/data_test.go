package rehearsal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/rehearsal"
)

// httpDo sends one request to an agent of the live cluster and decodes
// its JSON answer into out (when not nil).
func httpDo(t *testing.T, method, addr, path string, body []byte, out any) {
	t.Helper()
	httpDoToken(t, "", method, addr, path, body, out)
}

// httpDoToken is httpDo with an ACL token.
func httpDoToken(t *testing.T, token, method, addr, path string, body []byte, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// fillKV writes n KV entries through addr: nested keys, flags, an empty
// value, a binary one, a key with a space; it returns the keys.
func fillKV(t *testing.T, addr string, n int) []string {
	t.Helper()
	var keys []string
	for i := range n {
		key := fmt.Sprintf("app/%d/config-%d", i%5, i)
		val := []byte(fmt.Sprintf("value %d %s", i, strings.Repeat("x", i)))
		switch i {
		case 0:
			key, val = "app/empty", nil
		case 1:
			key, val = "app/binary", []byte{0, 1, 2, 0xff, 0xfe, '\n'}
		case 2:
			key = "app/with space"
		}
		httpDo(t, http.MethodPut, addr, fmt.Sprintf("/v1/kv/%s?flags=%d", strings.ReplaceAll(key, " ", "%20"), i*7), val, nil)
		keys = append(keys, key)
	}
	return keys
}

// registerServices registers n service instances on an external node (no
// agent: /v1/catalog/register, as consul-esm does) and m on the agent
// node's own agent.
func registerServices(t *testing.T, addr string, n, m int) {
	t.Helper()
	for i := range n {
		body, _ := json.Marshal(map[string]any{
			"Node": "ext-db", "Address": "10.1.2.3",
			"Service": map[string]any{"ID": fmt.Sprintf("db-%d", i), "Service": "db", "Tags": []string{"primary", fmt.Sprintf("shard-%d", i)}, "Port": 5432 + i, "Meta": map[string]string{"zone": "z1"}},
		})
		httpDo(t, http.MethodPut, addr, "/v1/catalog/register", body, nil)
	}
	for i := range m {
		body, _ := json.Marshal(map[string]any{"ID": fmt.Sprintf("web-%d", i), "Name": "web", "Port": 8080 + i})
		httpDo(t, http.MethodPut, addr, "/v1/agent/service/register", body, nil)
	}
}

// liveState is the live cluster's KV tree and catalog services, to show
// that the rehearsal only read it.
func liveState(t *testing.T, addr string) string {
	t.Helper()
	var kv []map[string]any
	httpDo(t, http.MethodGet, addr, "/v1/kv/?recurse", nil, &kv)
	var services map[string][]string
	httpDo(t, http.MethodGet, addr, "/v1/catalog/services", nil, &services)
	for _, tags := range services {
		slices.Sort(tags) // a union of the instances' tags, in no set order
	}
	b, _ := json.Marshal(map[string]any{"kv": kv, "services": services})
	return string(b)
}

// dataDirs are the folders a rehearsal with data keeps its backup in.
func dataDirs() []string {
	m, _ := filepath.Glob(filepath.Join(os.TempDir(), "consul-rehearsal-data-*"))
	return m
}

// backupModes records, when the rehearsal says it is restoring, the mode
// of the backup folder and its files (the backup exists only then).
type backupModes struct{ dir, files []string }

func (b *backupModes) logf(t *testing.T, before []string) func(string, ...any) {
	return func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		t.Log(line)
		if !strings.HasPrefix(line, "restoring live cluster") {
			return
		}
		for _, d := range dataDirs() {
			if slices.Contains(before, d) {
				continue
			}
			if fi, err := os.Stat(d); err == nil {
				b.dir = append(b.dir, fmt.Sprintf("%s %o", d, fi.Mode().Perm()))
			}
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				if fi, err := e.Info(); err == nil {
					b.files = append(b.files, fmt.Sprintf("%s %o", e.Name(), fi.Mode().Perm()))
				}
			}
		}
	}
}

func (b *backupModes) check(t *testing.T, before []string) {
	t.Helper()
	if len(b.dir) != 1 || !strings.HasSuffix(b.dir[0], " 700") || len(b.files) != 1 || !strings.HasSuffix(b.files[0], " 600") {
		t.Errorf("backup while restoring: folders %v, files %v; want one folder 0700 holding one file 0600", b.dir, b.files)
	}
	for _, d := range dataDirs() {
		if !slices.Contains(before, d) {
			t.Errorf("the backup folder %s is left after the rehearsal", d)
		}
	}
}

// A real 1.12.9 cluster (3 servers, 1 client) holding KV entries and
// services is rehearsed to 1.13.9 on its own data: its snapshot (taken
// read only) is restored into the replica on 1.12.9, the replica upgraded
// under traffic, and every KV entry and every service on a non-agent node
// read back equal; the replica's servers all run 1.13.9.
func TestRehearseWithDataRestoresUpgradesAndReadsBackEveryEntry(t *testing.T) {
	live := consulrig.Start(t, consulrig.Options{Version: "1.12.9"})
	addr := live.HTTPAddr(live.Clients()[0])
	keys := fillKV(t, addr, 60)
	registerServices(t, addr, 3, 2)
	src, err := upgrade.ConnectAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	c, err := upgrade.Discover(ctx, src)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	before := liveState(t, addr)
	dirsBefore := dataDirs()
	var modes backupModes

	out := t.TempDir()
	rep, err := rehearsal.Run(t.Context(), rehearsal.Options{
		Cluster: &c, Target: "1.13.9", Clients: 1, OutDir: out,
		WithData: true, Source: src, Logf: modes.logf(t, dirsBefore),
	})
	checkRehearsal(t, rep, err, out, false)
	d := rep.Data
	if d == nil {
		t.Fatal("no data in the report of a rehearsal with data")
	}
	t.Logf("DATA ROW | data | %s |", d.Row())
	if d.Backup.Kind != planner.BackupSnapshot || d.Source != "live cluster" {
		t.Errorf("backup %s from %q: want a Consul snapshot of the live cluster", d.Backup.Kind, d.Source)
	}
	if d.Restored[rehearsal.KindKV] != len(keys) || d.Restored[rehearsal.KindServices] != 3 {
		t.Errorf("restored %v: want %d KV entries and the 3 service instances of ext-db", d.Restored, len(keys))
	}
	if !d.Equal() || !d.Started || d.OnTarget != 3 {
		t.Errorf("data equal %v (differences %v, err %q), started %v (%d of %d on %s): want every entry equal and 3 servers on 1.13.9",
			d.Equal(), d.Differences, d.Err, d.Started, d.OnTarget, d.Servers, d.Target)
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	want := fmt.Sprintf("| data | restored from a Consul snapshot of the live cluster (read only): %d KV entries, 3 service instance(s) on non-agent nodes (those on agents are not compared)", len(keys))
	if !strings.Contains(string(md), want) || !strings.Contains(string(md), "every entry read back equal; the replica started on 1.13.9 (3 of 3 servers) |") {
		t.Errorf("report.md's data row is not %q ... every entry read back equal ...:\n%s", want, md)
	}
	if after := liveState(t, addr); after != before {
		t.Errorf("the live cluster's KV or catalog changed during the rehearsal:\nbefore %s\nafter  %s", before, after)
	}
	modes.check(t, dirsBefore)
}

// The 2015-era hop through the logical backup: a real 0.6.4 cluster has no
// snapshot API, so its KV tree is exported through the HTTP API, restored
// into the replica on 0.6.4 and read back equal after the upgrade to 0.7.5.
func TestRehearseWithDataOn064ThroughTheLogicalBackup(t *testing.T) {
	live := consulrig.Start(t, consulrig.Options{Version: "0.6.4"})
	addr := live.HTTPAddr(live.Clients()[0])
	keys := fillKV(t, addr, 40)
	src, err := upgrade.ConnectAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	c, err := upgrade.Discover(ctx, src)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	before := liveState(t, addr)
	dirsBefore := dataDirs()
	var modes backupModes

	out := t.TempDir()
	rep, err := rehearsal.Run(t.Context(), rehearsal.Options{
		Cluster: &c, Target: "0.7.5", Clients: 1, OutDir: out,
		Policy:   planner.Policy{StopMode: planner.StopKill},
		WithData: true, Source: src, Logf: modes.logf(t, dirsBefore),
	})
	checkRehearsal(t, rep, err, out, true)
	d := rep.Data
	if d == nil {
		t.Fatal("no data in the report of a rehearsal with data")
	}
	t.Logf("DATA ROW | data | %s |", d.Row())
	if d.Backup.Kind != planner.BackupLogical || d.Backup.Keys != len(keys) {
		t.Errorf("backup %s of %d keys: want a logical backup of the %d keys", d.Backup.Kind, d.Backup.Keys, len(keys))
	}
	if d.Restored[rehearsal.KindKV] != len(keys) || !d.Equal() || !d.Started {
		t.Errorf("restored %v, equal %v (differences %v, err %q), started %v: want the %d keys restored, read back equal, on 0.7.5",
			d.Restored, d.Equal(), d.Differences, d.Err, d.Started, len(keys))
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	if !strings.Contains(string(md), fmt.Sprintf("| data | restored from a logical backup of the live cluster (read only): %d KV entries; after the upgrade every entry read back equal; the replica started on 0.7.5 (3 of 3 servers) |", len(keys))) {
		t.Errorf("report.md's data row:\n%s", md)
	}
	if after := liveState(t, addr); after != before {
		t.Errorf("the live cluster's KV or catalog changed during the rehearsal:\nbefore %s\nafter  %s", before, after)
	}
	modes.check(t, dirsBefore)
}

// A real snapshot with one byte changed in its compressed stream is
// refused with a *SnapshotFileError naming the file and the fix, before
// any agent starts: no report, no output folder, and not even the
// progress line that precedes starting the replica.
func TestACorruptedSnapshotIsRefusedBeforeAnyAgentStarts(t *testing.T) {
	live := consulrig.Start(t, consulrig.Options{Version: "1.12.9", Clients: -1})
	addr := live.HTTPAddr(live.Servers()[0])
	fillKV(t, addr, 10)
	resp, err := http.Get("http://" + addr + "/v1/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("snapshot: %s %v", resp.Status, err)
	}
	if _, err := upgrade.VerifySnapshot(bytes.NewReader(snap)); err != nil {
		t.Fatalf("the real snapshot does not verify before it is corrupted: %v", err)
	}
	snap[len(snap)/2] ^= 0x55
	file := filepath.Join(t.TempDir(), "corrupt.snap")
	if err := os.WriteFile(file, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	var lines []string
	rep, err := rehearsal.Run(t.Context(), rehearsal.Options{
		Cluster: cluster("1.12.9", 3, 1), Target: "1.13.9", OutDir: out, Snapshot: file,
		Logf: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) },
	})
	var se *rehearsal.SnapshotFileError
	if !errors.As(err, &se) || se.Path != file || !errors.Is(err, upgrade.ErrSnapshotInvalid) {
		t.Fatalf("error %v: want a *SnapshotFileError on %s wrapping upgrade.ErrSnapshotInvalid", err, file)
	}
	t.Logf("REFUSED: %v", err)
	for _, says := range []string{file, "consul snapshot save", "-snapshot"} {
		if !strings.Contains(err.Error(), says) {
			t.Errorf("error %q does not say %q", err, says)
		}
	}
	if rep != nil || len(lines) > 0 {
		t.Errorf("report %v, progress %q: a refused rehearsal starts nothing", rep, lines)
	}
	if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("the refused rehearsal created its output folder (%v)", serr)
	}
}

// The second case of the issue: a real 1.12.9 cluster with ACLs on (a
// management token, policies and tokens made through the API) rehearsed
// to 1.13.9 on its own data: the replica runs with ACLs enabled and the
// operator's token as its initial management token, and after the
// upgrade every KV entry, ACL token and ACL policy is read back equal,
// but for the builtin global-management policy, whose rules 1.13's leader
// rewrites (a change by design, which the report names as such).
func TestRehearseWithDataReadsBackACLTokensAndPolicies(t *testing.T) {
	const root = "4e6f7421-0000-4000-8000-726f6f74746b"
	acl := `-hcl=acl { enabled = true default_policy = "allow" tokens { initial_management = "` + root + `" } }`
	live := consulrig.Start(t, consulrig.Options{Version: "1.12.9", ExtraServerArgs: []string{acl}, ExtraClientArgs: []string{acl}})
	addr := live.HTTPAddr(live.Servers()[0])
	keys := fillKV(t, addr, 20)
	for i := range 3 {
		body, _ := json.Marshal(map[string]any{"Name": fmt.Sprintf("app-%d", i), "Description": "app policy", "Rules": fmt.Sprintf(`key_prefix "app/%d/" { policy = "write" }`, i)})
		var pol struct{ ID string }
		httpDoToken(t, root, http.MethodPut, addr, "/v1/acl/policy", body, &pol)
		body, _ = json.Marshal(map[string]any{"Description": fmt.Sprintf("token of app %d", i), "Policies": []map[string]string{{"ID": pol.ID}}})
		httpDoToken(t, root, http.MethodPut, addr, "/v1/acl/token", body, nil)
	}
	var tokens, policies []json.RawMessage
	httpDoToken(t, root, http.MethodGet, addr, "/v1/acl/tokens", nil, &tokens)
	httpDoToken(t, root, http.MethodGet, addr, "/v1/acl/policies", nil, &policies)
	cfg := api.DefaultConfig()
	cfg.Address, cfg.Token = addr, root
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := upgrade.NewConsul(client)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	c, err := upgrade.Discover(ctx, src)
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	rep, err := rehearsal.Run(t.Context(), rehearsal.Options{
		Cluster: &c, Target: "1.13.9", Clients: 1, OutDir: out,
		WithData: true, Source: src, Token: root, Logf: t.Logf,
	})
	checkRehearsal(t, rep, err, out, false)
	d := rep.Data
	if d == nil {
		t.Fatal("no data in the report of a rehearsal with data")
	}
	t.Logf("DATA ROW | data | %s |", d.Row())
	if d.Restored[rehearsal.KindKV] != len(keys) || d.Restored[rehearsal.KindACLTokens] != len(tokens) || d.Restored[rehearsal.KindACLPolicies] != len(policies) {
		t.Errorf("restored %v: want %d KV entries, the live cluster's %d ACL tokens and %d policies", d.Restored, len(keys), len(tokens), len(policies))
	}
	if !d.Equal() || !d.Started {
		t.Errorf("data equal %v (differences %v, err %q), started %v: want every entry equal on 1.13.9", d.Equal(), d.Differences, d.Err, d.Started)
	}
	// The one change allowed: 1.13's leader rewrites the builtin
	// global-management policy's rules (it adds peering).
	for _, x := range d.Differences {
		t.Logf("BY DESIGN %s (%s)", x, x.ByDesign)
		if x.Kind != rehearsal.KindACLPolicies || x.Name != "00000000-0000-0000-0000-000000000001" {
			t.Errorf("difference %s: only the builtin global-management policy may change", x)
		}
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	if !strings.Contains(string(md), fmt.Sprintf("%d ACL token(s), %d ACL polic(ies); after the upgrade every entry read back equal", len(tokens), len(policies))) {
		t.Errorf("report.md's data row:\n%s", md)
	}
}
