package rehearsal

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	version "github.com/hashicorp/go-version"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// The kinds of state a rehearsal with data reads back and compares.
const (
	// KindKV is the KV store: every entry's key, flags and value.
	KindKV = "kv"
	// KindServices is the catalog's service instances on nodes that are
	// not agents (registered through /v1/catalog/register, e.g. by
	// consul-esm or by hand): node, service ID and name, tags, address,
	// port and meta. Services of the cluster's agents are not compared:
	// the replica's own agents replace them (a node that is not an agent
	// of the replica is reaped by its leader; one that is, is synced by
	// that agent's anti-entropy), which is the replica being a replica,
	// not the upgrade.
	KindServices = "services"
	// KindACLTokens is the ACL tokens (with Options.Token): accessor ID,
	// description, policy names, local, and the secret by SHA-256.
	KindACLTokens = "acl-tokens"
	// KindACLPolicies is the ACL policies (with Options.Token): ID, name,
	// description, datacenters and the rules by SHA-256.
	KindACLPolicies = "acl-policies"
)

// notCompared names what a Consul snapshot restores that a rehearsal does
// not read back.
const notCompared = "ACL tokens and policies (without Options.Token: the replica then runs without ACLs), intentions, config entries, sessions and prepared queries are restored with a snapshot but not read back"

// notComparedWithACLs is notCompared when the ACLs are compared.
const notComparedWithACLs = "intentions, config entries, sessions and prepared queries are restored with a snapshot but not read back"

// SnapshotFileError is a backup file given in Options.Snapshot that a
// rehearsal cannot restore: it cannot be read, or it is not a verified
// Consul snapshot or logical backup. It is returned before any agent
// starts.
type SnapshotFileError struct {
	Path string
	Err  error
}

func (e *SnapshotFileError) Error() string {
	return fmt.Sprintf("rehearsal: snapshot file %s cannot be restored: %v; give a file saved by `consul snapshot save` (0.7.1 and later) or a consul-upgrade logical backup, or leave Options.Snapshot (-snapshot) empty to take a new backup from the live cluster", e.Path, e.Err)
}

func (e *SnapshotFileError) Unwrap() error { return e.Err }

// DataReport is what a rehearsal on the cluster's own data restored into
// the replica before the upgrade, and what it read back after.
type DataReport struct {
	// Source is where the backup came from: "live cluster" (taken by the
	// rehearsal through Options.Source, read only) or the file of
	// Options.Snapshot.
	Source string `json:"source"`
	// Backup is the verified backup restored (its Kind says a Consul
	// snapshot or a logical backup).
	Backup upgrade.SnapshotInfo `json:"backup"`
	// Restored counts what the replica held once restored, per kind
	// (KindKV, KindServices: the service instances on nodes that are not
	// agents; those on agents are not compared, see KindServices).
	Restored map[string]int `json:"restored"`
	// NotCompared says what was restored, or is in the backup, but is not
	// read back.
	NotCompared []string `json:"not_compared,omitempty"`
	// ReadBack is true when the replica's state was read back after the
	// upgrade; Differences are the entries not read back equal, in kind
	// and name order.
	ReadBack    bool             `json:"read_back"`
	Differences []DataDifference `json:"differences,omitempty"`
	// Target is the version the replica was upgraded to; OnTarget counts
	// its servers that reported it after the run, of Servers. Started is
	// true when every server started on it; StartProblem says otherwise
	// what the servers did (the halt, and the log lines of a server that
	// did not come back: a state the new version cannot load).
	Target       string `json:"target"`
	OnTarget     int    `json:"on_target"`
	Servers      int    `json:"servers"`
	Started      bool   `json:"started"`
	StartProblem string `json:"start_problem,omitempty"`
	// Err is why the data could not be restored or read back.
	Err string `json:"err,omitempty"`
}

// DataDifference is one entry that was not read back as it was restored.
// Restored and ReadBack describe the entry ("" when absent); KV values
// appear by length and SHA-256, never in clear.
type DataDifference struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Restored string `json:"restored"`
	ReadBack string `json:"read_back"`
	// ByDesign, when set, says why the new version changes this entry
	// on purpose (Consul's leader rewrites the builtin global-management
	// policy to each version's rules); it does not count against Equal.
	ByDesign string `json:"by_design,omitempty"`
}

// builtinManagementPolicy is the ID of Consul's builtin global-management
// policy, whose rules each version's leader rewrites to its own (1.13
// adds peering = "write").
const builtinManagementPolicy = "00000000-0000-0000-0000-000000000001"

func (d DataDifference) String() string {
	restored, back := d.Restored, d.ReadBack
	if restored == "" {
		restored = "absent"
	}
	if back == "" {
		back = "absent"
	}
	return fmt.Sprintf("%s %s: restored %s, read back %s", d.Kind, d.Name, restored, back)
}

// Equal reports whether the data was restored, read back after the
// upgrade, and every entry compared was equal.
func (d *DataReport) Equal() bool {
	return d != nil && d.Err == "" && d.ReadBack && len(d.unexpected()) == 0
}

// unexpected are the differences not made by design.
func (d *DataReport) unexpected() []DataDifference {
	var out []DataDifference
	for _, x := range d.Differences {
		if x.ByDesign == "" {
			out = append(out, x)
		}
	}
	return out
}

// state is the replica's state as compared: per kind, each entry's name
// and its description.
type state map[string]map[string]string

// kvEntry is an entry of /v1/kv/?recurse.
type kvEntry struct {
	Key     string
	Flags   uint64
	Value   []byte
	Session string
}

func describeKV(e kvEntry) string {
	s := sha256.Sum256(e.Value)
	d := fmt.Sprintf("flags %d, %d bytes, sha256 %s", e.Flags, len(e.Value), hex.EncodeToString(s[:])[:16])
	return d
}

// serviceEntry is an instance of /v1/catalog/service/<name>.
type serviceEntry struct {
	Node           string
	ServiceID      string
	ServiceName    string
	ServiceTags    []string
	ServiceAddress string
	ServicePort    int
	ServiceMeta    map[string]string
}

func describeService(e serviceEntry) string {
	tags := slices.Clone(e.ServiceTags)
	slices.Sort(tags)
	d := fmt.Sprintf("%s tags [%s] %s:%d", e.ServiceName, strings.Join(tags, ","), e.ServiceAddress, e.ServicePort)
	if len(e.ServiceMeta) > 0 {
		b, _ := json.Marshal(e.ServiceMeta) // sorted keys
		d += " meta " + string(b)
	}
	return d
}

// compareState returns every entry of restored not read back equal in
// back, in kind and name order. Entries of back that were not restored
// (the rehearsal's own traffic, the replica's agents) are not differences.
// sessions names the KV keys held by a session at the restore: a missing
// one says so (the replica invalidates a session whose node it reaped or
// whose TTL nobody renews).
func compareState(restored, back state, sessions map[string]string) []DataDifference {
	var out []DataDifference
	for _, kind := range slices.Sorted(maps.Keys(restored)) {
		for _, name := range slices.Sorted(maps.Keys(restored[kind])) {
			want := restored[kind][name]
			got, ok := back[kind][name]
			if ok && got == want {
				continue
			}
			if !ok && kind == KindKV && sessions[name] != "" {
				got = "(held by session " + sessions[name] + " at the restore; the replica invalidates a session whose node or TTL it does not keep)"
			}
			diff := DataDifference{Kind: kind, Name: name, Restored: want, ReadBack: got}
			if kind == KindACLPolicies && name == builtinManagementPolicy && ok && strings.HasPrefix(got, "global-management ") {
				diff.ByDesign = "the builtin global-management policy: each version's leader rewrites its rules to the version's own"
			}
			out = append(out, diff)
		}
	}
	return out
}

// dataClient reads and writes a replica's state over its HTTP API.
type dataClient struct {
	http  *http.Client
	addr  string // host:port of an agent
	token string // X-Consul-Token ("" none); ACLs are read only with one
}

func newDataClient(addr, token string) *dataClient {
	return &dataClient{http: &http.Client{Timeout: time.Minute}, addr: addr, token: token}
}

func (c *dataClient) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.addr+path, body)
	if err == nil && c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
	return req, err
}

// get decodes the JSON answer of path into v; a 404 leaves v as it is
// (an empty KV tree answers 404).
func (c *dataClient) get(ctx context.Context, path string, v any) error {
	req, err := c.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/v1/kv/") {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

func (c *dataClient) put(ctx context.Context, path string, body io.Reader) error {
	req, err := c.request(ctx, http.MethodPut, path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// kvPath is the /v1/kv path of key, each segment escaped.
func kvPath(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/v1/kv/" + strings.Join(parts, "/")
}

// readState reads the KV tree and the services on nodes that are not
// agents, and returns them with the keys held by a session. Keys under skipPrefix+"/" (the
// rehearsal's traffic) are left out.
func (c *dataClient) readState(ctx context.Context, skipPrefix string) (st state, sessions map[string]string, err error) {
	st = state{KindKV: {}, KindServices: {}}
	sessions = map[string]string{}
	var kv []kvEntry
	if err := c.get(ctx, "/v1/kv/?recurse", &kv); err != nil {
		return nil, nil, err
	}
	for _, e := range kv {
		if skipPrefix != "" && strings.HasPrefix(e.Key, skipPrefix+"/") {
			continue
		}
		st[KindKV][e.Key] = describeKV(e)
		if e.Session != "" {
			sessions[e.Key] = e.Session
		}
	}
	var checks []struct{ Node, CheckID string }
	if err := c.get(ctx, "/v1/health/state/any", &checks); err != nil {
		return nil, nil, err
	}
	agents := map[string]bool{}
	for _, ch := range checks {
		if ch.CheckID == "serfHealth" {
			agents[ch.Node] = true
		}
	}
	var names map[string][]string
	if err := c.get(ctx, "/v1/catalog/services", &names); err != nil {
		return nil, nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		var inst []serviceEntry
		if err := c.get(ctx, "/v1/catalog/service/"+url.PathEscape(name), &inst); err != nil {
			return nil, nil, err
		}
		for _, e := range inst {
			if agents[e.Node] {
				continue
			}
			st[KindServices][e.Node+"/"+e.ServiceID] = describeService(e)
		}
	}
	if c.token == "" {
		return st, sessions, nil
	}
	st[KindACLTokens], st[KindACLPolicies] = map[string]string{}, map[string]string{}
	var tokens []aclToken
	if err := c.get(ctx, "/v1/acl/tokens", &tokens); err != nil {
		return nil, nil, err
	}
	for _, tk := range tokens {
		st[KindACLTokens][tk.AccessorID] = describeToken(tk)
	}
	var policies []struct{ ID string }
	if err := c.get(ctx, "/v1/acl/policies", &policies); err != nil {
		return nil, nil, err
	}
	for _, p := range policies {
		var pol aclPolicy
		if err := c.get(ctx, "/v1/acl/policy/"+url.PathEscape(p.ID), &pol); err != nil {
			return nil, nil, err
		}
		st[KindACLPolicies][p.ID] = describePolicy(pol)
	}
	return st, sessions, nil
}

// aclToken is an entry of /v1/acl/tokens.
type aclToken struct {
	AccessorID  string
	SecretID    string
	Description string
	Policies    []struct{ Name string }
	Local       bool
}

func describeToken(t aclToken) string {
	var names []string
	for _, p := range t.Policies {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	secret := "no secret listed"
	if t.SecretID != "" {
		s := sha256.Sum256([]byte(t.SecretID))
		secret = "secret sha256 " + hex.EncodeToString(s[:])[:16]
	}
	return fmt.Sprintf("%q policies [%s] local %v, %s", t.Description, strings.Join(names, ","), t.Local, secret)
}

// aclPolicy is /v1/acl/policy/<id>.
type aclPolicy struct {
	Name, Description, Rules string
	Datacenters              []string
}

func describePolicy(p aclPolicy) string {
	s := sha256.Sum256([]byte(p.Rules))
	dcs := slices.Clone(p.Datacenters)
	slices.Sort(dcs)
	return fmt.Sprintf("%s %q datacenters [%s], rules %d bytes, sha256 %s", p.Name, p.Description, strings.Join(dcs, ","), len(p.Rules), hex.EncodeToString(s[:])[:16])
}

// agentNodes returns the nodes with a serfHealth check.
func (c *dataClient) agentNodes(ctx context.Context) ([]string, error) {
	var checks []struct{ Node, CheckID string }
	if err := c.get(ctx, "/v1/health/state/any", &checks); err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range checks {
		if ch.CheckID == "serfHealth" && !slices.Contains(out, ch.Node) {
			out = append(out, ch.Node)
		}
	}
	return out, nil
}

// dataRun is a rehearsal's data: the backup file (in a folder only the
// operator can read, removed by cleanup) and what the replica held once
// restored.
type dataRun struct {
	rep      *DataReport
	file     string
	tmp      string // the 0700 folder of a backup taken here ("" for a given file)
	token    string // Options.Token
	restored state
	sessions map[string]string
}

// cleanup removes the backup the rehearsal took (never the operator's
// file).
func (d *dataRun) cleanup() error {
	if d == nil || d.tmp == "" {
		return nil
	}
	return os.RemoveAll(d.tmp)
}

// verifyFile verifies a backup file (Options.Snapshot).
func verifyFile(path string) (upgrade.SnapshotInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return upgrade.SnapshotInfo{}, &SnapshotFileError{Path: path, Err: err}
	}
	defer f.Close()
	info, err := upgrade.VerifySnapshot(f)
	if err != nil {
		return info, &SnapshotFileError{Path: path, Err: err}
	}
	return info, nil
}

// lowestServer is the lowest version among the shape's servers.
func (s shape) lowestServer() string {
	low := ""
	for _, a := range s.servers {
		if lv, err := version.NewVersion(low); low == "" || err == nil && before(a.version, lv) {
			low = a.version
		}
	}
	return low
}

// takeBackup takes the live cluster's backup (read only) into a new
// folder of mode 0700, its file 0600.
func takeBackup(ctx context.Context, r *resolved) (*dataRun, error) {
	d := &dataRun{rep: &DataReport{Target: r.target}, token: r.Token}
	if r.Snapshot != "" {
		d.file, d.rep.Source, d.rep.Backup = r.Snapshot, r.Snapshot, r.snapshotInfo
		return d, nil
	}
	var err error
	d.tmp, err = os.MkdirTemp("", "consul-rehearsal-data-")
	if err != nil {
		return nil, fmt.Errorf("rehearsal: folder for the backup: %w", err)
	}
	if err := os.Chmod(d.tmp, 0o700); err != nil {
		d.cleanup()
		return nil, err
	}
	low := r.shape.lowestServer()
	info, err := upgrade.SaveBackup(ctx, r.Source, upgrade.SnapshotDir(d.tmp), r.shape.datacenter, low)
	if err != nil {
		d.cleanup()
		return nil, fmt.Errorf("rehearsal: backup of the live cluster (%s, read only): %w", low, err)
	}
	d.file, d.rep.Source, d.rep.Backup = info.Path, "live cluster", info
	return d, nil
}

// restore restores the backup into the replica, waits until the replica
// is ready again and its leader has reaped the nodes that are not its
// agents, and reads what it holds (the state compared after the upgrade).
func (d *dataRun) restore(ctx context.Context, rp *replica, servers int) error {
	var server string
	var members []string
	for _, s := range rp.specs {
		members = append(members, s.Name)
		if server == "" && s.Role == transport.RoleServer {
			server = s.HTTPAddr()
		}
	}
	c := newDataClient(server, d.token)
	if d.rep.Backup.Kind == planner.BackupLogical {
		if err := d.restoreLogical(ctx, c); err != nil {
			return err
		}
	} else {
		f, err := os.Open(d.file)
		if err != nil {
			return err
		}
		err = c.put(ctx, "/v1/snapshot", f)
		f.Close()
		if err != nil {
			return fmt.Errorf("restore the snapshot into the replica: %w", err)
		}
		if err := rp.waitReady(ctx, servers); err != nil {
			return err
		}
		// The leader reaps the live cluster's agents, which are not
		// members of the replica, right after the restore.
		// Bounded by 2 minutes; the state read after is what is compared
		// either way.
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		for sctx.Err() == nil {
			nodes, err := c.agentNodes(sctx)
			if err == nil && !slices.ContainsFunc(nodes, func(n string) bool { return !slices.Contains(members, n) }) {
				break
			}
			select {
			case <-sctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		cancel()
		if d.token != "" {
			d.rep.NotCompared = append(d.rep.NotCompared, notComparedWithACLs)
		} else {
			d.rep.NotCompared = append(d.rep.NotCompared, notCompared)
		}
	}
	st, sessions, err := newDataClient(rp.consulAddr(), d.token).readState(ctx, "")
	if err != nil {
		return fmt.Errorf("read the restored state: %w", err)
	}
	d.restored, d.sessions = st, sessions
	d.rep.Restored = map[string]int{}
	for k, v := range st {
		d.rep.Restored[k] = len(v)
	}
	return nil
}

// restoreLogical writes a logical backup's KV tree into the replica
// through the HTTP API (its ACL tokens are counted, not restored: the
// replica runs without ACLs).
func (d *dataRun) restoreLogical(ctx context.Context, c *dataClient) error {
	files, err := readArchive(d.file, "kv.json", "acls.json")
	if err != nil {
		return fmt.Errorf("read the logical backup %s: %w", d.file, err)
	}
	var kv []kvEntry
	if err := json.Unmarshal(files["kv.json"], &kv); err != nil {
		return fmt.Errorf("logical backup %s: kv.json: %w", d.file, err)
	}
	for _, e := range kv {
		if err := c.put(ctx, fmt.Sprintf("%s?flags=%d", kvPath(e.Key), e.Flags), strings.NewReader(string(e.Value))); err != nil {
			return fmt.Errorf("restore KV entry %s: %w", e.Key, err)
		}
	}
	d.rep.NotCompared = append(d.rep.NotCompared, "the catalog, sessions and prepared queries are not in a logical backup")
	if b, ok := files["acls.json"]; ok {
		var acls []json.RawMessage
		if json.Unmarshal(b, &acls) == nil && len(acls) > 0 {
			d.rep.NotCompared = append(d.rep.NotCompared, fmt.Sprintf("%d ACL token(s) in the backup, not restored (the replica runs without ACLs)", len(acls)))
		}
	}
	return nil
}

// readArchive returns the named files of a gzip-compressed tar.
func readArchive(path string, names ...string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if slices.Contains(names, h.Name) {
			if out[h.Name], err = io.ReadAll(tr); err != nil {
				return nil, err
			}
		}
	}
}

// readBack reads the replica's state after the upgrade and compares it
// with what was restored; it also records whether the servers started on
// the target (runErr is the upgrade's error).
func (d *dataRun) readBack(ctx context.Context, rp *replica, skipPrefix string, runErr error) {
	d.rep.Servers, d.rep.OnTarget = 0, 0
	for _, s := range rp.specs {
		if s.Role != transport.RoleServer {
			continue
		}
		d.rep.Servers++
		if a, ok := rp.tr.Agent(s.Name); ok && a.Version == d.rep.Target {
			if v, err := rp.tr.RunningVersion(ctx, s.Name); err == nil && v == d.rep.Target {
				d.rep.OnTarget++
				continue
			}
		}
		if lines := rp.logErrors(s.Name, 3); lines != "" {
			d.rep.StartProblem = joinProblem(d.rep.StartProblem, fmt.Sprintf("%s: %s", s.Name, lines))
		}
	}
	d.rep.Started = d.rep.OnTarget == d.rep.Servers && d.rep.Servers > 0
	if runErr != nil {
		d.rep.StartProblem = joinProblem("the upgrade halted: "+runErr.Error(), d.rep.StartProblem)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var back state
	var err error
	for _, s := range rp.readOrder() {
		back, _, err = newDataClient(s, d.token).readState(rctx, skipPrefix)
		if err == nil {
			break
		}
	}
	if err != nil {
		d.rep.Err = joinProblem(d.rep.Err, "reading the state back after the upgrade: "+err.Error())
		return
	}
	d.rep.ReadBack = true
	d.rep.Differences = compareState(d.restored, back, d.sessions)
}

func joinProblem(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// readOrder are the agents' HTTP addresses to read the state through: the
// first client, then the servers.
func (rp *replica) readOrder() []string {
	out := []string{rp.consulAddr()}
	for _, s := range rp.specs {
		if s.Role == transport.RoleServer && !slices.Contains(out, s.HTTPAddr()) {
			out = append(out, s.HTTPAddr())
		}
	}
	return out
}

// logErrors is the last n lines of node's log that report an error or a
// panic ("" when none).
func (rp *replica) logErrors(node string, n int) string {
	path := ""
	for _, s := range rp.specs {
		if s.Name == node {
			path = s.LogPath
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var hits []string
	for _, l := range strings.Split(string(data), "\n") {
		low := strings.ToLower(l)
		if strings.Contains(low, "panic") || strings.Contains(l, "[ERR]") || strings.Contains(l, "[ERROR]") || strings.Contains(low, "failed to") {
			hits = append(hits, strings.TrimSpace(l))
		}
	}
	return strings.Join(hits[max(0, len(hits)-n):], " / ")
}

// trafficPrefix is a KV folder for the recorded traffic that no restored
// key is under.
func trafficPrefix(restored state) string {
	for i := 0; ; i++ {
		p := "rehearsal"
		if i > 0 {
			p = fmt.Sprintf("rehearsal-traffic-%d", i)
		}
		taken := false
		for k := range restored[KindKV] {
			if k == p || strings.HasPrefix(k, p+"/") {
				taken = true
				break
			}
		}
		if !taken {
			return p
		}
	}
}

// dataRow is the report's | data | cell.
// Row is the data row of report.md in words: what was restored, whether
// every entry read back equal, and whether the replica started on the
// target.
func (d *DataReport) Row() string {
	var b strings.Builder
	src := "a Consul snapshot"
	if d.Backup.Kind == planner.BackupLogical {
		src = "a logical backup"
	}
	if d.Source == "live cluster" {
		src += " of the live cluster (read only)"
	} else {
		src += " from " + filepath.Base(d.Source)
	}
	if d.Restored == nil {
		fmt.Fprintf(&b, "NOT restored from %s: %s", src, d.Err)
		return b.String()
	}
	fmt.Fprintf(&b, "restored from %s: %d KV entries", src, d.Restored[KindKV])
	if d.Backup.Kind != planner.BackupLogical {
		fmt.Fprintf(&b, ", %d service instance(s) on non-agent nodes (those on agents are not compared)", d.Restored[KindServices])
		if n, ok := d.Restored[KindACLTokens]; ok {
			fmt.Fprintf(&b, ", %d ACL token(s), %d ACL polic(ies)", n, d.Restored[KindACLPolicies])
		}
	}
	bad := d.unexpected()
	switch {
	case d.ReadBack && len(bad) == 0:
		fmt.Fprintf(&b, "; after the upgrade every entry read back equal")
	case d.ReadBack:
		var names []string
		for _, x := range bad[:min(len(bad), 5)] {
			names = append(names, x.Kind+" "+x.Name)
		}
		more := ""
		if len(bad) > 5 {
			more = fmt.Sprintf(" and %d more", len(bad)-5)
		}
		fmt.Fprintf(&b, "; after the upgrade %d entr(ies) NOT read back equal: %s%s (see Data)", len(bad), strings.Join(names, ", "), more)
	default:
		fmt.Fprintf(&b, "; NOT read back after the upgrade")
	}
	if n := len(d.Differences) - len(bad); n > 0 && d.ReadBack {
		fmt.Fprintf(&b, ", but %d changed by the new version by design (see Data)", n)
	}
	if d.Err != "" {
		fmt.Fprintf(&b, " (%s)", d.Err)
	}
	if d.Started {
		fmt.Fprintf(&b, "; the replica started on %s (%d of %d servers)", d.Target, d.OnTarget, d.Servers)
	} else {
		fmt.Fprintf(&b, "; the replica did NOT start on %s (%d of %d servers on it)", d.Target, d.OnTarget, d.Servers)
		if d.StartProblem != "" {
			fmt.Fprintf(&b, ": %s", d.StartProblem)
		}
	}
	return b.String()
}

// maxDifferencesListed bounds the differences listed in report.md.
const maxDifferencesListed = 200

// writeDataSection writes the ## Data section of report.md.
func (d *DataReport) writeDataSection(p func(string, ...any)) {
	p("\n## Data\n\n")
	p("The backup restored: %s, ", d.Source)
	if d.Backup.Kind == planner.BackupLogical {
		p("a logical backup (%s) at Raft index %d, %d keys, %d ACL tokens.", d.Backup.ID, d.Backup.Index, d.Backup.Keys, d.Backup.ACLTokens)
	} else {
		p("a Consul snapshot (%s) at Raft index %d, term %d, state.bin %d bytes.", d.Backup.ID, d.Backup.Index, d.Backup.Term, d.Backup.StateSize)
	}
	p(" Compared after the upgrade: KV entries (key, flags, value by length and SHA-256) and service instances on non-agent nodes (node, ID, name, tags, address, port, meta)")
	if _, ok := d.Restored[KindACLTokens]; ok {
		p(", ACL tokens (accessor, description, policy names, local, secret by SHA-256) and ACL policies (ID, name, description, datacenters, rules by SHA-256)")
	}
	p(".")
	for _, n := range d.NotCompared {
		p(" Not compared: %s.", n)
	}
	p("\n\n")
	if len(d.Differences) == 0 {
		if d.ReadBack {
			p("Every entry restored was read back equal.\n")
		}
		return
	}
	if len(d.Differences) > maxDifferencesListed {
		p("The first %d of %d entries not read back equal:\n\n", maxDifferencesListed, len(d.Differences))
	}
	p("| kind | entry | restored | read back | by design |\n|---|---|---|---|---|\n")
	for _, x := range d.Differences[:min(len(d.Differences), maxDifferencesListed)] {
		restored, back, why := x.Restored, x.ReadBack, x.ByDesign
		if restored == "" {
			restored = "absent"
		}
		if back == "" {
			back = "absent"
		}
		if why == "" {
			why = "no: not read back equal"
		}
		p("| %s | %s | %s | %s | %s |\n", x.Kind, mdEscape(x.Name), mdEscape(restored), mdEscape(back), mdEscape(why))
	}
}

// ErrDataNotRestored is wrapped by Run's error when the backup could not
// be restored into the replica (or the restored state not read): the
// upgrade was not rehearsed; Report.Data.Err says why.
var ErrDataNotRestored = errors.New("rehearsal: the cluster's data could not be restored into the replica")
