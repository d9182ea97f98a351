package upgrade

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// logicalBackupFormat is the format name in a logical backup's meta.json.
const logicalBackupFormat = "consul-upgrade-logical-backup/1"

// logicalBackupMeta is the meta.json of a logical backup (see
// VerifySnapshot): the backup taken before a hop away from a Consul below
// 0.7.1, which has no snapshot API.
type logicalBackupMeta struct {
	Format     string `json:"format"`
	Datacenter string `json:"datacenter,omitempty"`
	// Version is the servers' version the backup was taken on.
	Version string `json:"version"`
	// Index is the Raft index the KV tree was read at (X-Consul-Index).
	Index uint64    `json:"index"`
	Taken time.Time `json:"taken"`
	Keys  int       `json:"keys"`
	// ACLs: the ACL tokens are in acls.json (ACLs were on).
	ACLs      bool `json:"acls"`
	ACLTokens int  `json:"acl_tokens"`
	// NotRestorable is what the backup does not hold.
	NotRestorable string `json:"not_restorable"`
}

// backupError reports a logical backup that failed: Part is the stage
// ("read kv", "read acls", "open", "write", "verify", "re-read", "commit").
type backupError struct {
	Datacenter string
	Version    string
	Part       string
	Err        error
}

func (e *backupError) Error() string {
	where := ""
	if e.Datacenter != "" {
		where = " of " + e.Datacenter
	}
	return fmt.Sprintf("logical backup%s before leaving %s: %s: %v", where, e.Version, e.Part, e.Err)
}

func (e *backupError) Unwrap() error { return e.Err }

// aclsOn reports whether the agent's configuration or the servers' tags say
// ACLs are on: acl_datacenter set (0.4 to 1.3) or the serf "acls" tag
// (1.4 and later).
func aclsOn(self map[string]map[string]any, members []*api.AgentMember) bool {
	if selfString(self, "ACLDatacenter") != "" {
		return true
	}
	for _, m := range members {
		if m != nil && m.Tags["role"] == "consul" && (m.Tags["acls"] == "1" || m.Tags["acls"] == "2") {
			return true
		}
	}
	return false
}

// buildLogicalBackup reads the KV tree (and the ACL tokens when ACLs are on)
// through c and returns the archive.
func buildLogicalBackup(ctx context.Context, c Consul, dc, ver string) ([]byte, logicalBackupMeta, error) {
	meta := logicalBackupMeta{Format: logicalBackupFormat, Datacenter: dc, Version: ver, NotRestorable: planner.LogicalBackupOmits}
	fail := func(part string, err error) ([]byte, logicalBackupMeta, error) {
		return nil, meta, &backupError{Datacenter: dc, Version: ver, Part: part, Err: err}
	}
	self, err := c.AgentSelf(ctx)
	if err != nil {
		return fail("read agent self", err)
	}
	members, err := c.Members(ctx)
	if err != nil {
		return fail("read members", err)
	}
	er, err := eraReader(c, "logical backup")
	if err != nil {
		return fail("read kv", err)
	}
	pairs, index, err := er.KVList(ctx)
	if err != nil {
		return fail("read kv", err)
	}
	if pairs == nil {
		pairs = []*api.KVPair{}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].Key < pairs[j].Key })
	meta.Index, meta.Keys, meta.Taken = index, len(pairs), time.Now().UTC()
	files := map[string][]byte{}
	if files["kv.json"], err = json.MarshalIndent(pairs, "", " "); err != nil {
		return fail("encode kv", err)
	}
	if aclsOn(self, members) {
		acls, err := er.ACLList(ctx)
		if err != nil {
			return fail("read acls", fmt.Errorf("%w (ACLs are on: the backup needs a management token, e.g. CONSUL_HTTP_TOKEN)", err))
		}
		if acls == nil {
			acls = []*api.ACLEntry{}
		}
		meta.ACLs, meta.ACLTokens = true, len(acls)
		if files["acls.json"], err = json.MarshalIndent(acls, "", " "); err != nil {
			return fail("encode acls", err)
		}
	}
	if files["meta.json"], err = json.MarshalIndent(meta, "", " "); err != nil {
		return fail("encode meta", err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var sums strings.Builder
	for _, n := range names {
		h := sha256.Sum256(files[n])
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h[:]), n)
	}
	files["SHA256SUMS"] = []byte(sums.String())
	names = append(names, "SHA256SUMS")

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(files[n])), ModTime: meta.Taken}); err != nil {
			return fail("archive", err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			return fail("archive", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fail("archive", err)
	}
	if err := zw.Close(); err != nil {
		return fail("archive", err)
	}
	return buf.Bytes(), meta, nil
}

// verifyLogicalBackup reads a logical backup archive to the end and checks
// it: gzip-compressed tar with meta.json (of logicalBackupFormat), kv.json
// and SHA256SUMS (and acls.json when meta.json says ACLs), every file's
// SHA-256 as listed, kv.json and acls.json decoding to as many entries as
// meta.json counts. Content errors wrap ErrSnapshotInvalid. The returned
// info has Kind planner.BackupLogical; its SHA256 is left to the caller.
func verifyLogicalBackup(r io.Reader) (SnapshotInfo, logicalBackupMeta, error) {
	info := SnapshotInfo{Kind: planner.BackupLogical}
	var meta logicalBackupMeta
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: logical backup: %s", ErrSnapshotInvalid, fmt.Sprintf(format, a...))
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return info, meta, invalid("not gzip-compressed (%v)", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	content := map[string][]byte{}
	sums := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return info, meta, invalid("reading the tar stream: %v (truncated or corrupt archive)", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return info, meta, invalid("reading %s: %v (truncated or corrupt archive)", h.Name, err)
		}
		s := sha256.Sum256(b)
		content[h.Name], sums[h.Name] = b, hex.EncodeToString(s[:])
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return info, meta, invalid("reading the gzip stream: %v", err)
	}
	return checkLogical(content, sums)
}

// checkLogical checks the files of a logical backup archive: content holds
// meta.json, kv.json, acls.json and SHA256SUMS, sums the SHA-256 of every
// file of the archive.
func checkLogical(content map[string][]byte, sums map[string]string) (SnapshotInfo, logicalBackupMeta, error) {
	info := SnapshotInfo{Kind: planner.BackupLogical}
	var meta logicalBackupMeta
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: logical backup: %s", ErrSnapshotInvalid, fmt.Sprintf(format, a...))
	}
	for _, n := range []string{"meta.json", "kv.json", "SHA256SUMS"} {
		if _, ok := content[n]; !ok {
			return info, meta, invalid("missing %s (want meta.json, kv.json and SHA256SUMS)", n)
		}
	}
	files, err := checkSums(content["SHA256SUMS"], sums)
	if err != nil {
		return info, meta, invalid("%v", err)
	}
	info.Files = files
	for n := range sums {
		if _, ok := files[n]; !ok && n != "SHA256SUMS" {
			return info, meta, invalid("SHA256SUMS does not list %s", n)
		}
	}
	if err := json.Unmarshal(content["meta.json"], &meta); err != nil {
		return info, meta, invalid("meta.json is not JSON: %v", err)
	}
	if meta.Format != logicalBackupFormat {
		return info, meta, invalid("meta.json format is %q, want %q", meta.Format, logicalBackupFormat)
	}
	var pairs []*api.KVPair
	if err := json.Unmarshal(content["kv.json"], &pairs); err != nil {
		return info, meta, invalid("kv.json is not a list of KV pairs: %v", err)
	}
	if len(pairs) != meta.Keys {
		return info, meta, invalid("kv.json holds %d keys, meta.json says %d", len(pairs), meta.Keys)
	}
	if meta.ACLs {
		b, ok := content["acls.json"]
		if !ok {
			return info, meta, invalid("meta.json says ACLs but acls.json is missing")
		}
		var acls []*api.ACLEntry
		if err := json.Unmarshal(b, &acls); err != nil {
			return info, meta, invalid("acls.json is not a list of ACL tokens: %v", err)
		}
		if len(acls) != meta.ACLTokens {
			return info, meta, invalid("acls.json holds %d tokens, meta.json says %d", len(acls), meta.ACLTokens)
		}
	}
	info.ID = fmt.Sprintf("logical-%s-%d", meta.Version, meta.Index)
	info.Index, info.Keys, info.ACLTokens = meta.Index, meta.Keys, meta.ACLTokens
	return info, meta, nil
}

// checkSums compares a SHA256SUMS listing with the SHA-256 of each file and
// returns the listed files with their verified sums.
func checkSums(listed []byte, sums map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for line := range strings.SplitSeq(string(listed), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		want, name, ok := strings.Cut(line, " ")
		name = strings.TrimLeft(strings.TrimSpace(name), "*")
		if !ok || name == "" {
			return nil, fmt.Errorf("SHA256SUMS line %q is not \"<sha256>  <file>\"", line)
		}
		got, present := sums[name]
		if !present {
			return nil, fmt.Errorf("SHA256SUMS lists %s, which is not in the archive", name)
		}
		if !strings.EqualFold(got, want) {
			return nil, fmt.Errorf("%s has SHA-256 %s, SHA256SUMS says %s (corrupt archive)", name, got, want)
		}
		out[name] = got
	}
	return out, nil
}

// saveLogicalBackup takes a logical backup of datacenter dc through c (the
// KV tree, and the ACL tokens when ACLs are on; see logicalBackupMeta),
// verifies the archive and writes it to the sink open returns for dc and
// version. When the sink is a SnapshotRereader (SnapshotDir's are), what
// was written is read back and verified again, its SHA-256 compared with
// the archive's. The sink is committed only when all of that passed, and
// aborted otherwise (see SnapshotSink). It is the backup Run takes before
// a hop away from a version below 0.7.1, which has no snapshot API. Errors
// are *backupError.
func saveLogicalBackup(ctx context.Context, c Consul, open SnapshotFunc, dc, version string) (SnapshotInfo, error) {
	fail := func(part string, err error) (SnapshotInfo, error) {
		return SnapshotInfo{Kind: planner.BackupLogical}, &backupError{Datacenter: dc, Version: version, Part: part, Err: err}
	}
	archive, _, err := buildLogicalBackup(ctx, c, dc, version)
	if err != nil {
		return SnapshotInfo{Kind: planner.BackupLogical}, err
	}
	sum := sha256.Sum256(archive)
	digest := hex.EncodeToString(sum[:])
	info, _, err := verifyLogicalBackup(bytes.NewReader(archive))
	if err != nil {
		return fail("verify", err)
	}
	info.SHA256 = digest
	sink, err := open(ctx, dc, version)
	if err != nil {
		return fail("open", fmt.Errorf("open the destination for %s: %w", version, err))
	}
	abort := func(part string, err error) (SnapshotInfo, error) {
		return fail(part, abortSink(ctx, sink, err))
	}
	if _, err := sink.Write(archive); err != nil {
		return abort("write", err)
	}
	if rr, ok := sink.(SnapshotRereader); ok {
		if err := reread(ctx, rr, digest); err != nil {
			return abort("re-read", err)
		}
		info.Reread = true
	}
	if err := sink.Commit(ctx); err != nil {
		return abort("commit", err)
	}
	return info, nil
}

// reread reads back what a sink stored and checks it is the archive whose
// SHA-256 is digest, a valid logical backup.
func reread(ctx context.Context, rr SnapshotRereader, digest string) error {
	rc, err := rr.Reread(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	back, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if _, _, err := verifyLogicalBackup(bytes.NewReader(back)); err != nil {
		return err
	}
	if got := sha256.Sum256(back); hex.EncodeToString(got[:]) != digest {
		return fmt.Errorf("%w: what was read back has SHA-256 %s, the archive written %s", ErrSnapshotInvalid, hex.EncodeToString(got[:]), digest)
	}
	return nil
}
