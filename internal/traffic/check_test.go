package traffic

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// ms is a time offset in milliseconds, to write histories by hand.
func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func put(w int, key, v string, call, ret int, ok bool) Op {
	return Op{Worker: w, Node: "c1", Key: key, Kind: Put, Value: v, Call: ms(call), Return: ms(ret), Outcome: Done, OK: ok}
}

func read(w int, key, got string, index uint64, call, ret int) Op {
	return Op{Worker: w, Node: "s1", Key: key, Kind: Read, Call: ms(call), Return: ms(ret), Outcome: Done, Found: got != "", Got: got, Index: index}
}

func cas(w int, key, v string, index uint64, expect string, call, ret int, ok bool) Op {
	return Op{Worker: w, Node: "s2", Key: key, Kind: CAS, Value: v, CASIndex: index, CASExpect: expect, CASExpectFound: expect != "",
		Call: ms(call), Return: ms(ret), Outcome: Done, OK: ok}
}

func indeterminate(op Op) Op {
	op.Outcome, op.OK, op.Err = Indeterminate, false, "context deadline exceeded"
	op.Return = op.Call + 2*time.Second
	return op
}

func final(op Op) Op { op.Final = true; op.Worker = 9; return op }

func check(t *testing.T, h History) Report {
	t.Helper()
	r, err := Check(h, t.TempDir(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAStaleReadIsNotLinearizableAndTheVisualizationIsWritten(t *testing.T) {
	// w0 puts v1 and then v2, each acknowledged; w1 reads v2's value after
	// the second put returned, then v1 again: a stale read.
	h := History{
		put(0, "k", "v1", 0, 10, true),
		read(1, "k", "v1", 5, 11, 12),
		put(0, "k", "v2", 13, 20, true),
		read(1, "k", "v2", 7, 21, 22),
		read(1, "k", "v1", 5, 23, 24),
	}
	dir := filepath.Join(t.TempDir(), "out")
	r, err := Check(h, dir, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != porcupine.Illegal {
		t.Fatalf("result %s, want Illegal for a stale read", r.Result)
	}
	if len(r.Files) != 2 {
		t.Fatalf("files written: %v, want the history and the visualization", r.Files)
	}
	html, err := os.ReadFile(filepath.Join(dir, "linearizability.html"))
	if err != nil {
		t.Fatal(err)
	}
	// The visualization embeds the operations as the model describes them.
	if !strings.Contains(string(html), `read() -\u003e v1@5`) {
		t.Errorf("the visualization does not show the stale read; %d bytes", len(html))
	}
	js, err := os.ReadFile(filepath.Join(dir, "history.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"got": "v1"`) {
		t.Errorf("history.json does not hold the reads: %.300s", js)
	}
}

func TestACorrectConcurrentHistoryIsLinearizable(t *testing.T) {
	h := History{
		// k: two concurrent puts; concurrent reads may see either, but
		// once v2 is read, v1 is never read again.
		put(0, "k", "v1", 0, 30, true),
		put(1, "k", "v2", 5, 25, true),
		read(2, "k", "", 0, 1, 3), // before any put took effect
		read(3, "k", "v1", 10, 8, 12),
		read(2, "k", "v2", 11, 13, 20),
		read(3, "k", "v2", 11, 31, 32),
		// A CAS with the index just read succeeds; a second one with the
		// same index fails.
		cas(3, "k", "v3", 11, "v2", 33, 40, true),
		cas(2, "k", "v4", 11, "v2", 41, 45, false),
		read(2, "k", "v3", 14, 46, 47),
		// CAS with index 0 creates a key that does not exist.
		cas(0, "j", "j1", 0, "", 0, 5, true),
		cas(1, "j", "j2", 0, "", 6, 8, false),
		read(0, "j", "j1", 3, 9, 10),
	}
	r := check(t, h)
	if r.Result != porcupine.Ok {
		t.Fatalf("result %s, want Ok; files %v", r.Result, r.Files)
	}
	if r.Files != nil {
		t.Errorf("files written for a linearizable history: %v", r.Files)
	}
	if r.Ops != len(h) || r.Acked != 4 {
		t.Errorf("report %s, want %d ops and 4 acknowledged writes", r, len(h))
	}
}

func TestIndeterminateWrites(t *testing.T) {
	t.Run("a timed-out put may take effect long after its call", func(t *testing.T) {
		h := History{
			indeterminate(put(0, "k", "v1", 0, 0, false)),
			read(1, "k", "", 0, 2100, 2101), // not yet
			read(1, "k", "v1", 9, 5000, 5001),
		}
		if r := check(t, h); r.Result != porcupine.Ok || r.Indeterminate != 1 {
			t.Errorf("report %s, want Ok with 1 indeterminate", r)
		}
	})
	t.Run("a timed-out put may never take effect", func(t *testing.T) {
		h := History{
			put(1, "k", "v0", 0, 1, true),
			indeterminate(put(0, "k", "v1", 2, 0, false)),
			read(1, "k", "v0", 4, 5000, 5001),
		}
		if r := check(t, h); r.Result != porcupine.Ok {
			t.Errorf("report %s, want Ok", r)
		}
	})
	t.Run("a timed-out cas whose index no longer matches may not take effect", func(t *testing.T) {
		h := History{
			put(0, "k", "v0", 0, 1, true),
			read(1, "k", "v0", 4, 2, 3),
			put(0, "k", "v1", 4, 5, true),
			indeterminate(cas(1, "k", "v2", 4, "v0", 6, 0, false)),
			read(0, "k", "v2", 9, 5000, 5001),
		}
		if r := check(t, h); r.Result != porcupine.Illegal {
			t.Errorf("report %s, want Illegal: the cas expected index 4 but v1 had replaced it", r)
		}
	})
	t.Run("no write is seen before it was called", func(t *testing.T) {
		h := History{
			read(1, "k", "v1", 9, 0, 1),
			indeterminate(put(0, "k", "v1", 2, 0, false)),
		}
		if r := check(t, h); r.Result != porcupine.Illegal {
			t.Errorf("report %s, want Illegal", r)
		}
	})
	t.Run("a read that failed says nothing", func(t *testing.T) {
		h := History{
			put(0, "k", "v1", 0, 1, true),
			indeterminate(read(1, "k", "zzz", 1, 2, 3)),
			{Worker: 2, Node: "s3", Key: "k", Kind: Put, Value: "v9", Call: ms(4), Return: ms(4), Outcome: NotSent, Err: "dial tcp: connection refused"},
			read(1, "k", "v1", 3, 10, 11),
		}
		r := check(t, h)
		if r.Result != porcupine.Ok || r.NotSent != 1 {
			t.Errorf("report %s, want Ok with 1 not sent", r)
		}
	})
}

func TestTheModelFollowsConsulsModifyIndex(t *testing.T) {
	cases := []struct {
		name string
		h    History
		want porcupine.CheckResult
	}{
		{"a write's index never changes", History{
			put(0, "k", "v1", 0, 1, true),
			read(1, "k", "v1", 5, 2, 3),
			read(1, "k", "v1", 6, 4, 5),
		}, porcupine.Illegal},
		{"a later write has a higher index", History{
			put(0, "k", "v1", 0, 1, true),
			read(1, "k", "v1", 5, 2, 3),
			put(0, "k", "v2", 4, 5, true),
			read(1, "k", "v2", 4, 6, 7),
		}, porcupine.Illegal},
		{"a cas that matched was acknowledged false", History{
			put(0, "k", "v1", 0, 1, true),
			read(1, "k", "v1", 5, 2, 3),
			cas(1, "k", "v2", 5, "v1", 4, 5, false),
		}, porcupine.Illegal},
		{"a cas with a stale index succeeded", History{
			put(0, "k", "v1", 0, 1, true),
			read(1, "k", "v1", 5, 2, 3),
			put(0, "k", "v2", 4, 5, true),
			cas(1, "k", "v3", 5, "v1", 6, 7, true),
		}, porcupine.Illegal},
		{"cas 0 on an existing key succeeded", History{
			put(0, "k", "v1", 0, 1, true),
			cas(1, "k", "v2", 0, "", 2, 3, true),
		}, porcupine.Illegal},
		{"a read of a value nobody wrote", History{
			read(1, "k", "ghost", 5, 2, 3),
		}, porcupine.Illegal},
		{"keys are independent", History{
			put(0, "a", "a1", 0, 10, true),
			put(1, "b", "b1", 0, 10, true),
			read(2, "a", "a1", 11, 11, 12),
			read(2, "b", "b1", 12, 13, 14),
		}, porcupine.Ok},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r := check(t, c.h); r.Result != c.want {
				t.Errorf("result %s, want %s", r.Result, c.want)
			}
		})
	}
}

func TestLostWrites(t *testing.T) {
	t.Run("an acknowledged write after the surviving one is lost", func(t *testing.T) {
		h := History{
			put(0, "k", "v1", 0, 1, true),
			put(0, "k", "v2", 2, 3, true),
			final(read(1, "k", "v1", 5, 10, 11)),
		}
		lost := LostWrites(h)
		if len(lost) != 1 || lost[0].Value != "v2" {
			t.Errorf("lost %v, want the put of v2", lost)
		}
		if r := check(t, h); r.Result != porcupine.Illegal {
			t.Errorf("result %s, want Illegal too", r.Result)
		}
	})
	t.Run("writes concurrent with the survivor are not proven lost", func(t *testing.T) {
		h := History{
			put(0, "k", "v1", 0, 5, true),
			put(1, "k", "v2", 2, 3, true),
			final(read(1, "k", "v1", 5, 10, 11)),
		}
		if lost := LostWrites(h); len(lost) != 0 {
			t.Errorf("lost %v, want none", lost)
		}
	})
	t.Run("an absent key lost every acknowledged write", func(t *testing.T) {
		h := History{
			put(0, "k", "v1", 0, 1, true),
			indeterminate(put(0, "k", "v2", 2, 0, false)),
			put(0, "k", "v3", 2, 3, true),
			final(read(1, "k", "", 0, 10, 11)),
		}
		if lost := LostWrites(h); len(lost) != 2 {
			t.Errorf("lost %v, want v1 and v3", lost)
		}
	})
	t.Run("a survivor that timed out may have landed last", func(t *testing.T) {
		h := History{
			indeterminate(put(0, "k", "v1", 0, 0, false)),
			put(1, "k", "v2", 2500, 2600, true),
			final(read(1, "k", "v1", 5, 3000, 3001)),
		}
		if lost := LostWrites(h); len(lost) != 0 {
			t.Errorf("lost %v, want none", lost)
		}
		if r := check(t, h); r.Result != porcupine.Ok {
			t.Errorf("result %s, want Ok", r.Result)
		}
	})
}
