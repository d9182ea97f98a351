package upgrade

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// ErrSnapshotInvalid is wrapped by every VerifySnapshot error about the
// archive's content (as opposed to a failing reader).
var ErrSnapshotInvalid = errors.New("snapshot archive invalid")

// SnapshotInfo describes a verified snapshot archive.
type SnapshotInfo struct {
	// ID, Index and Term come from meta.json (the Raft snapshot metadata).
	ID    string `json:"id"`
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// StateSize is the size of state.bin in bytes.
	StateSize int64 `json:"state_size"`
	// Files maps each archived file to its verified SHA-256 (hex).
	Files map[string]string `json:"files"`
	// Kind is the kind of backup: planner.BackupSnapshot (Consul's
	// snapshot API; "" in records from before logical backups existed) or
	// planner.BackupLogical (see LogicalBackupMeta).
	Kind planner.BackupKind `json:"kind,omitempty"`
	// Keys and ACLTokens count what a logical backup holds.
	Keys      int `json:"keys,omitempty"`
	ACLTokens int `json:"acl_tokens,omitempty"`
	// SHA256 is the SHA-256 (hex) of the whole logical backup archive as
	// written.
	SHA256 string `json:"sha256,omitempty"`
	// Reread: the written logical backup was read back from its
	// destination and verified again (SnapshotDir's files).
	Reread bool `json:"reread,omitempty"`
	// Path is the file the archive was saved to, when the destination is
	// SnapshotDir's ("" for another destination).
	Path string `json:"path,omitempty"`
}

// VerifySnapshot reads a Consul snapshot archive to the end and checks it:
// gzip-compressed tar, holding meta.json, state.bin and SHA256SUMS, with the
// SHA-256 of every file listed in SHA256SUMS matching. Content errors wrap
// ErrSnapshotInvalid.
func VerifySnapshot(r io.Reader) (SnapshotInfo, error) {
	info := SnapshotInfo{Kind: planner.BackupSnapshot}
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrSnapshotInvalid, fmt.Sprintf(format, a...))
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return info, invalid("not gzip-compressed (%v); a Consul snapshot is a .tar.gz from /v1/snapshot", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	sums := map[string]string{}
	var meta []byte
	var listed []byte
	haveState := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return info, invalid("reading the tar stream: %v (truncated or corrupt archive)", err)
		}
		hash := sha256.New()
		var keep bytes.Buffer
		var w io.Writer = hash
		if h.Name == "meta.json" || h.Name == "SHA256SUMS" {
			w = io.MultiWriter(hash, &keep)
		}
		n, err := io.Copy(w, tr)
		if err != nil {
			return info, invalid("reading %s: %v after %d bytes (truncated or corrupt archive)", h.Name, err, n)
		}
		sums[h.Name] = hex.EncodeToString(hash.Sum(nil))
		switch h.Name {
		case "meta.json":
			meta = keep.Bytes()
		case "SHA256SUMS":
			listed = keep.Bytes()
		case "state.bin":
			haveState = true
			info.StateSize = n
		}
	}
	// Drain the gzip stream so its checksum and length are verified too.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return info, invalid("reading the gzip stream: %v", err)
	}
	var missing []string
	if meta == nil {
		missing = append(missing, "meta.json")
	}
	if !haveState {
		missing = append(missing, "state.bin")
	}
	if listed == nil {
		missing = append(missing, "SHA256SUMS")
	}
	if len(missing) > 0 {
		return info, invalid("missing %s (want meta.json, state.bin and SHA256SUMS)", strings.Join(missing, ", "))
	}
	files, err := checkSums(listed, sums)
	if err != nil {
		return info, invalid("%v", err)
	}
	info.Files = files
	for _, name := range []string{"meta.json", "state.bin"} {
		if _, ok := info.Files[name]; !ok {
			return info, invalid("SHA256SUMS does not list %s", name)
		}
	}
	var m struct {
		ID    string
		Index uint64
		Term  uint64
	}
	if err := json.Unmarshal(meta, &m); err != nil {
		return info, invalid("meta.json is not JSON: %v", err)
	}
	info.ID, info.Index, info.Term = m.ID, m.Index, m.Term
	return info, nil
}

// SnapshotFunc opens the destination of the snapshot taken before the hop
// away from version. The runner writes the archive to it, verifies it and
// then closes it.
type SnapshotFunc func(version string) (io.WriteCloser, error)

// SnapshotDCFunc opens the destination of datacenter's snapshot taken before
// the hop away from version (Config.SnapshotDC). The runner writes the
// archive to it, verifies it and then closes it.
type SnapshotDCFunc func(datacenter, version string) (io.WriteCloser, error)

// SnapshotDir returns a SnapshotFunc that writes each snapshot to a new file
// in dir, named consul-<version>-<UTC time>.snap. The file is written under a
// .part name and renamed on Close, so a file with the final name is complete;
// an archive that fails verification is removed. dir (and its parents) is
// created, with mode 0700, when it does not exist.
//
// In a run that observes several datacenters (Config.Datacenters), Run saves
// one snapshot per datacenter and names each file with its datacenter:
// consul-<datacenter>-<version>-<UTC time>.snap.
func SnapshotDir(dir string) SnapshotFunc {
	return func(version string) (io.WriteCloser, error) {
		rest := fmt.Sprintf("%s-%s.snap", safeName(version), time.Now().UTC().Format("20060102T150405.000Z"))
		final := filepath.Join(dir, "consul-"+rest)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("snapshot dir %s: %w", dir, err)
		}
		f, err := os.OpenFile(final+".part", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("snapshot dir %s: %w", dir, err)
		}
		return &renameOnClose{File: f, final: final, dir: dir, rest: rest}, nil
	}
}

type renameOnClose struct {
	*os.File
	final     string
	dir, rest string // final is dir/consul-[<datacenter>-]<rest>
}

// datacenterNamer is a destination that can put the datacenter in its name
// (SnapshotDir's files); the runner tells it when it saves several.
type datacenterNamer interface{ nameDatacenter(dc string) }

func (r *renameOnClose) nameDatacenter(dc string) {
	r.final = filepath.Join(r.dir, "consul-"+safeName(dc)+"-"+r.rest)
}

func (r *renameOnClose) Close() error {
	if err := r.File.Sync(); err != nil {
		r.File.Close()
		return err
	}
	if err := r.File.Close(); err != nil {
		return err
	}
	return os.Rename(r.File.Name(), r.final)
}

// aborter is a destination that can discard what was written instead of
// keeping it (SnapshotDir's files).
type aborter interface{ abort() error }

// reopen reads back the closed (renamed) file.
func (r *renameOnClose) reopen() (io.ReadCloser, error) { return os.Open(r.final) }

func (r *renameOnClose) abort() error {
	r.File.Close()
	return os.Remove(r.File.Name())
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '+':
			return r
		}
		return '_'
	}, s)
}

// saveSnapshot streams a snapshot from Consul into the caller's writer while
// verifying it.
func saveSnapshot(ctx context.Context, c Consul, open SnapshotFunc, version string) (SnapshotInfo, error) {
	body, err := c.SnapshotSave(ctx)
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer body.Close()
	w, err := open(version)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("open snapshot destination for %s: %w", version, err)
	}
	tee := io.TeeReader(body, w)
	info, verr := VerifySnapshot(tee)
	if verr == nil {
		// Copy anything after the gzip stream too, so the file is the exact answer.
		_, verr = io.Copy(io.Discard, tee)
	}
	if a, ok := w.(aborter); ok && verr != nil {
		a.abort() // SnapshotDir: remove the partial file rather than keep a bad archive
		return info, fmt.Errorf("snapshot before leaving %s: %w", version, verr)
	}
	cerr := w.Close()
	if verr != nil {
		return info, fmt.Errorf("snapshot before leaving %s: %w", version, verr)
	}
	if cerr != nil {
		return info, fmt.Errorf("snapshot before leaving %s: close destination: %w", version, cerr)
	}
	return info, nil
}
