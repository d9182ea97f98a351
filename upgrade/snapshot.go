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
	// planner.BackupLogical (see VerifySnapshot).
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

// VerifySnapshot reads a backup archive to the end and checks it: a Consul
// snapshot (the snapshot API's: gzip-compressed tar holding meta.json,
// state.bin and SHA256SUMS), or a logical backup, which a run takes before
// a hop away from a Consul below 0.7.1 (no snapshot API there): a
// gzip-compressed tar of meta.json (its format, datacenter, version, Raft
// index and counts), kv.json (the whole KV tree as /v1/kv/?recurse returns
// it, values base64), acls.json (the ACL tokens from the legacy
// /v1/acl/list, when ACLs are on) and SHA256SUMS. A logical backup restores
// the KV tree and the ACL tokens through the HTTP API; it cannot restore
// planner.LogicalBackupOmits. Every file's SHA-256 must be the one listed
// in SHA256SUMS, and a logical backup's kv.json and acls.json must hold as
// many entries as its meta.json counts. The info's Kind says which kind the
// archive is. Content errors wrap ErrSnapshotInvalid.
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
	kept := map[string][]byte{} // every file but state.bin, which may be large
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
		if h.Name != "state.bin" {
			w = io.MultiWriter(hash, &keep)
		}
		n, err := io.Copy(w, tr)
		if err != nil {
			return info, invalid("reading %s: %v after %d bytes (truncated or corrupt archive)", h.Name, err, n)
		}
		sums[h.Name] = hex.EncodeToString(hash.Sum(nil))
		if h.Name == "state.bin" {
			haveState = true
			info.StateSize = n
		} else {
			kept[h.Name] = keep.Bytes()
		}
	}
	// Drain the gzip stream so its checksum and length are verified too.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return info, invalid("reading the gzip stream: %v", err)
	}
	meta, listed := kept["meta.json"], kept["SHA256SUMS"]
	var format struct {
		Format string `json:"format"`
	}
	if _, kv := kept["kv.json"]; (kv || json.Unmarshal(meta, &format) == nil && format.Format != "") && !haveState {
		info, _, err := checkLogical(kept, sums)
		return info, err
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

// SnapshotSink is the destination of one backup archive, taken before a
// hop (a snapshot, or a logical backup below 0.7.1). The run writes the
// whole archive to it, verifies it, and then either commits it or aborts
// it:
//
//   - Commit is called once, after the archive was written in full and
//     verified (read back first when the sink is a SnapshotRereader). The
//     sink makes the archive durable and visible under its final name. The
//     backup counts only when Commit returns nil; an error halts the run
//     before the hop's first server swap.
//   - Abort is called once when anything failed before the archive was
//     committed: the archive did not verify (an archive that fails
//     verification is never committed), a write or the read-back failed,
//     the run's context ended, or Commit itself returned an error. The sink
//     discards what it received. Abort gets a context that outlives the
//     run's cancellation, bounded by SinkAbortTimeout.
//
// Exactly one of Commit and Abort ends a sink, except that a failed Commit
// is followed by Abort. SnapshotDir's sinks write to a temporary file,
// rename it on Commit and remove it on Abort.
type SnapshotSink interface {
	io.Writer
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}

// SnapshotRereader is an optional interface of a SnapshotSink: Reread
// returns what was written to the sink so far, read back from where the
// sink keeps it, before Commit. A logical backup is read back through it
// and verified again (SnapshotInfo.Reread), and aborted when what was
// stored differs from what was sent. SnapshotDir's sinks implement it.
type SnapshotRereader interface {
	Reread(ctx context.Context) (io.ReadCloser, error)
}

// SinkAbortTimeout bounds SnapshotSink.Abort, which runs even after the
// run's context was cancelled.
const SinkAbortTimeout = 30 * time.Second

// SnapshotFunc opens the sink of datacenter's backup taken before the hop
// away from version (see SnapshotSink). A run calls it once per observed
// datacenter per hop, the run's own datacenter first; datacenter is the
// name its agents report.
type SnapshotFunc func(ctx context.Context, datacenter, version string) (SnapshotSink, error)

// SnapshotDir returns a SnapshotFunc that writes each backup to a new file
// in dir, named consul-<datacenter>-<version>-<UTC time>.snap
// (consul-<version>-<UTC time>.snap when the datacenter is ""). The file is
// written under that name plus .part, synced and renamed on Commit, so a
// file with the final name is complete and verified; Abort removes it. dir
// (and its parents) is created, with mode 0700, when it does not exist.
func SnapshotDir(dir string) SnapshotFunc {
	return func(_ context.Context, datacenter, version string) (SnapshotSink, error) {
		name := "consul-"
		if datacenter != "" {
			name += safeName(datacenter) + "-"
		}
		name += fmt.Sprintf("%s-%s.snap", safeName(version), time.Now().UTC().Format("20060102T150405.000Z"))
		final := filepath.Join(dir, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("snapshot dir %s: %w", dir, err)
		}
		f, err := os.OpenFile(final+".part", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("snapshot dir %s: %w", dir, err)
		}
		return &fileSink{f: f, final: final}, nil
	}
}

// fileSink is a SnapshotDir sink: a .part file renamed on Commit.
type fileSink struct {
	f     *os.File
	final string
	done  bool // committed or aborted
}

var _ SnapshotRereader = (*fileSink)(nil)

func (s *fileSink) Write(p []byte) (int, error) { return s.f.Write(p) }

// Reread syncs the file and opens it again for reading.
func (s *fileSink) Reread(context.Context) (io.ReadCloser, error) {
	if err := s.f.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.f.Name(), err)
	}
	return os.Open(s.f.Name())
}

func (s *fileSink) Commit(context.Context) error {
	if s.done {
		return fmt.Errorf("snapshot file %s: already committed or aborted", s.final)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.f.Name(), err)
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.f.Name(), err)
	}
	if err := os.Rename(s.f.Name(), s.final); err != nil {
		return err
	}
	s.done = true
	return nil
}

func (s *fileSink) Abort(context.Context) error {
	if s.done {
		return nil
	}
	s.done = true
	s.f.Close() // a failed Commit may have closed it already
	if err := os.Remove(s.f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// abortSink aborts sink after err, under a context that outlives the run's
// cancellation, and returns err (saying so when the abort failed too).
func abortSink(ctx context.Context, sink SnapshotSink, err error) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), SinkAbortTimeout)
	defer cancel()
	if aerr := sink.Abort(actx); aerr != nil {
		return fmt.Errorf("%w (and the destination could not discard the archive: %v; remove it by hand)", err, aerr)
	}
	return err
}

// sinkWriter remembers the first write error of its sink, so a destination
// that fails is not reported as an invalid archive.
type sinkWriter struct {
	w   io.Writer
	err error
}

func (s *sinkWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
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

// saveSnapshot streams a snapshot of datacenter dc from Consul into the
// sink open returns while verifying it, and commits the sink only when it
// verified (see SnapshotSink).
func saveSnapshot(ctx context.Context, c Consul, open SnapshotFunc, dc, version string) (SnapshotInfo, error) {
	body, err := c.SnapshotSave(ctx)
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer body.Close()
	sink, err := open(ctx, dc, version)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("open snapshot destination for %s: %w", version, err)
	}
	sw := &sinkWriter{w: sink}
	tee := io.TeeReader(body, sw)
	info, verr := VerifySnapshot(tee)
	if verr == nil {
		// Copy anything after the gzip stream too, so the file is the exact answer.
		_, verr = io.Copy(io.Discard, tee)
	}
	switch {
	case sw.err != nil:
		return info, abortSink(ctx, sink, fmt.Errorf("snapshot before leaving %s: write to the destination: %w", version, sw.err))
	case verr != nil:
		return info, abortSink(ctx, sink, fmt.Errorf("snapshot before leaving %s: %w", version, verr))
	}
	if err := sink.Commit(ctx); err != nil {
		return info, abortSink(ctx, sink, fmt.Errorf("snapshot before leaving %s: commit the destination: %w", version, err))
	}
	return info, nil
}
