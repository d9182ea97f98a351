package consultest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
)

// SnapshotFile is one file of a snapshot archive.
type SnapshotFile struct {
	Name string
	Data []byte
}

// Snapshot returns a valid Consul snapshot archive: a gzip-compressed tar
// holding meta.json (Raft snapshot metadata for index and term), state as
// state.bin, and SHA256SUMS listing the SHA-256 of both. It is what
// /v1/snapshot streams, and passes upgrade.VerifySnapshot.
func Snapshot(index, term uint64, state []byte) []byte {
	// Archive fails only on a bad header, and these names and sizes are
	// fine; a nil result would still be refused by any verifier.
	b, _ := Archive(SnapshotFiles(index, term, state)...)
	return b
}

// SnapshotFiles returns the files of a valid snapshot archive, in the order
// Consul writes them: meta.json, state.bin, SHA256SUMS. Change or drop one
// and pack them with Archive to build a broken archive on purpose.
func SnapshotFiles(index, term uint64, state []byte) []SnapshotFile {
	meta, _ := json.Marshal(struct {
		Version     int
		ID          string
		Index, Term uint64
		Size        int64
	}{1, fmt.Sprintf("%d-%d-%d", term, index, 0), index, term, int64(len(state))})
	files := []SnapshotFile{{"meta.json", meta}, {"state.bin", state}}
	return append(files, SnapshotFile{"SHA256SUMS", SnapshotSums(files...)})
}

// SnapshotSums returns the content of a SHA256SUMS file listing files, one
// "<hex sha-256>  <name>" line each, as Consul writes it.
func SnapshotSums(files ...SnapshotFile) []byte {
	var b bytes.Buffer
	for _, f := range files {
		fmt.Fprintf(&b, "%x  %s\n", sha256.Sum256(f.Data), f.Name)
	}
	return b.Bytes()
}

// Archive packs files, in order, into a gzip-compressed tar, checking
// nothing about their content.
func Archive(files ...SnapshotFile) ([]byte, error) {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.Name, Mode: 0o600, Size: int64(len(f.Data)), Typeflag: tar.TypeReg}); err != nil {
			return nil, fmt.Errorf("snapshot archive: file %q: %w", f.Name, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("snapshot archive: file %q: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("snapshot archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("snapshot archive: %w", err)
	}
	return out.Bytes(), nil
}
