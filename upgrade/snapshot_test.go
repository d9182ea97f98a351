package upgrade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func TestVerifySnapshot(t *testing.T) {
	good := makeSnapshot(t, snapshotFiles{})
	cases := []struct {
		name    string
		archive []byte
		wantErr string // "" for success
	}{
		{"a complete archive with matching checksums is accepted", good, ""},
		{"a state.bin whose checksum does not match is rejected", makeSnapshot(t, snapshotFiles{sums: []byte(
			"0000000000000000000000000000000000000000000000000000000000000000  state.bin\n" + sumLine([]byte(`{"Version":1,"ID":"2-1234-5678","Index":1234,"Term":2,"Size":42}`), "meta.json"))}),
			"state.bin has SHA-256"},
		{"a truncated archive is rejected", good[:len(good)/2], "truncated"},
		{"a stream that is not gzip is rejected", []byte("this is not a snapshot"), "not gzip-compressed"},
		{"an archive without state.bin is rejected", makeSnapshot(t, snapshotFiles{skip: "state.bin"}), "missing state.bin"},
		{"an archive without SHA256SUMS is rejected", makeSnapshot(t, snapshotFiles{skip: "SHA256SUMS"}), "missing SHA256SUMS"},
		{"a SHA256SUMS that leaves out state.bin is rejected", makeSnapshot(t, snapshotFiles{sums: []byte(sumLine([]byte(`{"Version":1,"ID":"2-1234-5678","Index":1234,"Term":2,"Size":42}`), "meta.json"))}), "does not list state.bin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := VerifySnapshot(bytes.NewReader(tc.archive))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifySnapshot: %v", err)
				}
				if info.Index != 1234 || info.Term != 2 || info.ID != "2-1234-5678" || info.StateSize != int64(len("consul state "))*100 {
					t.Errorf("info = %+v", info)
				}
				if len(info.Files) != 2 {
					t.Errorf("verified files = %v, want meta.json and state.bin", info.Files)
				}
				return
			}
			if err == nil {
				t.Fatalf("VerifySnapshot accepted it (%+v)", info)
			}
			if !errors.Is(err, ErrSnapshotInvalid) {
				t.Errorf("err %v does not wrap ErrSnapshotInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err %q does not say %q", err, tc.wantErr)
			}
		})
	}
}

func TestVerifySnapshotReportsAFailingReader(t *testing.T) {
	good := makeSnapshot(t, snapshotFiles{})
	r := io.MultiReader(bytes.NewReader(good[:100]), iotest.ErrReader(errors.New("connection reset")))
	if _, err := VerifySnapshot(r); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("err = %v, want the reader's error", err)
	}
}

func sumLine(b []byte, name string) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]) + "  " + name + "\n"
}

func TestSnapshotDirKeepsOnlyCompleteFilesUnderTheirFinalName(t *testing.T) {
	dir := t.TempDir()
	archive := makeSnapshot(t, snapshotFiles{})
	s := consultest.NewCluster(1, 0, "1.12.9", consultest.WithSnapshot(archive))
	info, err := saveSnapshot(context.Background(), inProcessConsul(t, s), SnapshotDir(dir), "dc1", "1.12.9")
	if err != nil {
		t.Fatalf("saveSnapshot: %v", err)
	}
	if info.Index != 1234 {
		t.Errorf("info = %+v", info)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || !strings.HasPrefix(filepath.Base(files[0]), "consul-dc1-1.12.9-") || !strings.HasSuffix(files[0], ".snap") {
		t.Fatalf("files in dir = %v, want one consul-dc1-1.12.9-*.snap", files)
	}
	saved, _ := os.ReadFile(files[0])
	if !bytes.Equal(saved, archive) {
		t.Errorf("the saved file (%d bytes) is not the archive Consul sent (%d bytes)", len(saved), len(archive))
	}
}

func TestSaveSnapshotFailsOnACorruptArchive(t *testing.T) {
	good := makeSnapshot(t, snapshotFiles{})
	s := consultest.NewCluster(1, 0, "1.12.9", consultest.WithSnapshot(good[:len(good)-40]))
	sink := &memSink{}
	_, err := saveSnapshot(context.Background(), inProcessConsul(t, s), sink.open, "dc1", "1.12.9")
	if !errors.Is(err, ErrSnapshotInvalid) {
		t.Fatalf("err = %v, want ErrSnapshotInvalid", err)
	}
	if sink.aborted != 1 || sink.committed != 0 {
		t.Errorf("the sink was aborted %d and committed %d time(s), want aborted once, never committed", sink.aborted, sink.committed)
	}
}

func TestSnapshotDirRemovesAnArchiveThatFailsVerification(t *testing.T) {
	dir := t.TempDir()
	good := makeSnapshot(t, snapshotFiles{})
	s := consultest.NewCluster(1, 0, "1.12.9", consultest.WithSnapshot(good[:len(good)/2]))
	if _, err := saveSnapshot(context.Background(), inProcessConsul(t, s), SnapshotDir(dir), "dc1", "1.12.9"); !errors.Is(err, ErrSnapshotInvalid) {
		t.Fatalf("err = %v, want ErrSnapshotInvalid", err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 0 {
		t.Errorf("files left in dir: %v, want none", files)
	}
}
