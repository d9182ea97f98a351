package upgrade

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// A custom sink is aborted, never committed, when the archive Consul sent
// fails verification, and the run halts at the snapshot step with no
// server touched. (Before SnapshotSink, a custom destination was Close()d,
// so kept, whatever the verification said.)
func TestACustomSinkIsAbortedNeverCommittedOnAnArchiveThatFailsVerification(t *testing.T) {
	for name, archive := range map[string]func(t *testing.T) []byte{
		"not gzip":          func(*testing.T) []byte { return []byte("<html>502 Bad Gateway</html>") },
		"truncated":         func(t *testing.T) []byte { good := makeSnapshot(t, snapshotFiles{}); return good[:len(good)-40] },
		"missing state.bin": func(t *testing.T) []byte { return makeSnapshot(t, snapshotFiles{skip: "state.bin"}) },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRunRig(t, 3, 0, consultest.WithSnapshot(archive(t)))
				sink := &memSink{}
				r.cfg.Snapshot = sink.open
				res, err := Run(t.Context(), r.cfg)
				var h *StepRefusedError
				if !errors.As(err, &h) || h.Step.Kind != planner.StepSnapshot || !errors.Is(err, ErrSnapshotInvalid) {
					t.Fatalf("Run = %v, want a *StepRefusedError of the snapshot step wrapping ErrSnapshotInvalid", err)
				}
				if sink.aborted != 1 || sink.committed != 0 {
					t.Errorf("sink aborted %d, committed %d time(s); want aborted once and never committed", sink.aborted, sink.committed)
				}
				if len(r.tr.swapped()) != 0 || len(res.Steps) != 0 {
					t.Errorf("swaps %v, steps %v: want nothing after a backup that failed", r.tr.swapped(), res.Steps)
				}
				if sink.dc != "dc1" || sink.version != "1.12.9" {
					t.Errorf("sink opened for datacenter %q, version %q; want dc1, 1.12.9", sink.dc, sink.version)
				}
			})
		})
	}
}

// A Commit that fails means the backup does not exist: the run halts
// before the hop's first server swap.
func TestASinkWhoseCommitFailsHaltsTheRunBeforeTheFirstServerSwap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		sink := &memSink{commitErr: errors.New("bucket quota exceeded")}
		r.cfg.Snapshot = sink.open
		res, err := Run(t.Context(), r.cfg)
		var h *StepRefusedError
		if !errors.As(err, &h) || h.Step.Kind != planner.StepSnapshot || !strings.Contains(err.Error(), "commit the destination: bucket quota exceeded") {
			t.Fatalf("Run = %v, want a *StepRefusedError of the snapshot step naming the commit's error", err)
		}
		if sink.committed != 1 || sink.aborted != 1 {
			t.Errorf("sink committed %d, aborted %d time(s); want one failed commit, then an abort", sink.committed, sink.aborted)
		}
		if len(r.tr.swapped()) != 0 || len(res.Steps) != 0 {
			t.Errorf("swaps %v, steps %v: want no server swapped without a backup", r.tr.swapped(), res.Steps)
		}
		if _, ok := r.sim.KV(backupKey("")); ok {
			t.Error("a backup record was written for a backup whose commit failed")
		}
	})
}

// rereadSink is a sink that reads back what it stored, changed by damage.
type rereadSink struct {
	memSink
	damage func([]byte) []byte
}

func (s *rereadSink) Reread(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s.damage(bytes.Clone(s.Bytes())))), nil
}

func (s *rereadSink) open(_ context.Context, dc, version string) (SnapshotSink, error) {
	s.dc, s.version = dc, version
	return s, nil
}

// A logical backup read back from its sink is checked again before the
// sink is committed; a copy that differs from the archive sent is aborted.
// (Before SnapshotSink, SnapshotDir's file was renamed into place first and
// only then read back, and any other destination was never read back.)
func TestALogicalBackupThatFailsItsRereadIsAbortedNeverCommitted(t *testing.T) {
	s := consultest.NewCluster(3, 0, "0.6.4", consultest.WithEra(consultest.Era06))
	c := inProcessConsul(t, s)
	for name, damage := range map[string]func([]byte) []byte{
		"one byte flipped": func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b },
		"cut short":        func(b []byte) []byte { return b[:len(b)/2] },
	} {
		t.Run(name, func(t *testing.T) {
			sink := &rereadSink{damage: damage}
			_, err := saveLogicalBackup(t.Context(), c, sink.open, "dc1", "0.6.4")
			var be *backupError
			if !errors.As(err, &be) || be.Part != "re-read" || !errors.Is(err, ErrSnapshotInvalid) {
				t.Fatalf("saveLogicalBackup = %v, want a *backupError in part re-read wrapping ErrSnapshotInvalid", err)
			}
			if sink.aborted != 1 || sink.committed != 0 {
				t.Errorf("sink aborted %d, committed %d time(s); want aborted once and never committed", sink.aborted, sink.committed)
			}
		})
	}
	sink := &rereadSink{damage: func(b []byte) []byte { return b }}
	info, err := saveLogicalBackup(t.Context(), c, sink.open, "dc1", "0.6.4")
	if err != nil || !info.Reread || sink.committed != 1 || sink.aborted != 0 {
		t.Errorf("an intact copy: err %v, reread %v, committed %d, aborted %d; want it read back and committed once", err, info.Reread, sink.committed, sink.aborted)
	}
}

// A write that fails is the destination's fault, not the archive's: it is
// aborted and reported as a write error.
type failingSink struct{ memSink }

func (s *failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestASinkWhoseWriteFailsIsAbortedAndTheErrorNamesTheWrite(t *testing.T) {
	s := consultest.NewCluster(1, 0, "1.12.9", consultest.WithSnapshot(makeSnapshot(t, snapshotFiles{})))
	sink := &failingSink{}
	_, err := saveSnapshot(t.Context(), inProcessConsul(t, s), func(context.Context, string, string) (SnapshotSink, error) { return sink, nil }, "dc1", "1.12.9")
	if err == nil || !strings.Contains(err.Error(), "write to the destination: disk full") || errors.Is(err, ErrSnapshotInvalid) {
		t.Fatalf("err = %v, want a write error that does not call the archive invalid", err)
	}
	if sink.aborted != 1 || sink.committed != 0 {
		t.Errorf("sink aborted %d, committed %d time(s)", sink.aborted, sink.committed)
	}
}

// A run cancelled while the archive streams aborts the sink, with a
// context of its own: Abort is not handed the cancelled one.
type ctxSink struct {
	memSink
	abortCtxErr error
}

func (s *ctxSink) Abort(ctx context.Context) error {
	s.abortCtxErr = ctx.Err()
	return s.memSink.Abort(ctx)
}

func TestASinkIsAbortedWithALiveContextWhenTheRunIsCancelledMidStream(t *testing.T) {
	good := makeSnapshot(t, snapshotFiles{})
	ctx, cancel := context.WithCancel(t.Context())
	c := &cutStream{Consul: inProcessConsul(t, consultest.NewCluster(1, 0, "1.12.9", consultest.WithSnapshot(good))), cancel: cancel}
	sink := &ctxSink{}
	_, err := saveSnapshot(ctx, c, func(context.Context, string, string) (SnapshotSink, error) { return sink, nil }, "dc1", "1.12.9")
	if err == nil {
		t.Fatal("saveSnapshot of a stream cut by a cancellation succeeded")
	}
	if sink.aborted != 1 || sink.committed != 0 || sink.abortCtxErr != nil {
		t.Errorf("aborted %d, committed %d, Abort's context error %v; want one abort with a live context", sink.aborted, sink.committed, sink.abortCtxErr)
	}
}

// cutStream cancels the run and breaks the snapshot stream half-way.
type cutStream struct {
	Consul
	cancel func()
}

func (c *cutStream) SnapshotSave(ctx context.Context) (io.ReadCloser, error) {
	body, err := c.Consul.SnapshotSave(ctx)
	if err != nil {
		return nil, err
	}
	b, _ := io.ReadAll(body)
	body.Close()
	return io.NopCloser(io.MultiReader(bytes.NewReader(b[:len(b)/2]), readerFunc(func([]byte) (int, error) {
		c.cancel()
		return 0, context.Canceled
	}))), nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestSnapshotDirKeepsAFileOnlyOnCommitAndRemovesItOnAbort(t *testing.T) {
	dir := t.TempDir()
	open := SnapshotDir(dir)
	kept, err := open(t.Context(), "dc1", "1.12.9")
	mustDo(t, err)
	gone, err := open(t.Context(), "dc2", "1.12.9")
	mustDo(t, err)
	for _, s := range []SnapshotSink{kept, gone} {
		if _, err := s.Write([]byte("archive")); err != nil {
			t.Fatal(err)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.snap")); len(files) != 0 {
		t.Fatalf("files %v under their final name before Commit", files)
	}
	rc, err := kept.(SnapshotRereader).Reread(t.Context())
	mustDo(t, err)
	back, _ := io.ReadAll(rc)
	rc.Close()
	if string(back) != "archive" {
		t.Errorf("Reread = %q, want what was written", back)
	}
	mustDo(t, kept.Commit(t.Context()))
	mustDo(t, gone.Abort(t.Context()))
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "consul-dc1-1.12.9-") || !strings.HasSuffix(entries[0].Name(), ".snap") {
		t.Fatalf("dir holds %v, want only the committed consul-dc1-1.12.9-<time>.snap", entries)
	}
	if err := kept.Abort(t.Context()); err != nil {
		t.Errorf("Abort after Commit = %v, want nil (nothing to discard)", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("Abort after Commit removed the committed file: %v", entries)
	}
}

// A 0.7.0 cluster has the Raft configuration but no snapshot API, so its
// backup is a logical one, which needs EraReader: without it the run halts
// at the backup, before any server is touched.
func TestARunOfA070ClusterThroughAConsulWithoutEraReaderHaltsAtTheBackupBeforeAnySwap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.sim = consultest.NewCluster(3, 0, "0.7.0", consultest.WithEra(consultest.Era07), consultest.WithStableSince(time.Now().Add(-time.Hour)))
		r.cfg.Consul = lockAndKV{inProcessConsul(t, r.sim).(*apiConsul)}
		r.cfg.Target = "0.7.5"
		r.cfg.ServerAPI = func(node, addr string) (Consul, error) { return nil, errors.New("not needed before the first swap") }
		sink := &memSink{}
		r.cfg.Snapshot = sink.open
		_, err := Run(t.Context(), r.cfg)
		var be *backupError
		if !errors.Is(err, ErrNoEraReader) || !errors.As(err, &be) {
			t.Fatalf("Run = %v, want a *backupError wrapping ErrNoEraReader", err)
		}
		if len(r.tr.swapped()) != 0 || sink.committed != 0 {
			t.Errorf("swaps %v, commits %d: want nothing touched", r.tr.swapped(), sink.committed)
		}
	})
}
