package traffictest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func put(w int, key, v string, call, ret int) traffic.Op {
	return traffic.Op{Worker: w, Node: "c1", Key: key, Kind: traffic.Put, Value: v, Call: ms(call), Return: ms(ret), Outcome: traffic.Done, OK: true}
}

func read(w int, key, got string, index uint64, call, ret int) traffic.Op {
	return traffic.Op{Worker: w, Node: "s1", Key: key, Kind: traffic.Read, Call: ms(call), Return: ms(ret), Outcome: traffic.Done, Found: got != "", Got: got, Index: index}
}

func TestRequireFailsTheTestAndNamesTheFiles(t *testing.T) {
	h := traffic.History{
		put(0, "k", "v1", 0, 1),
		put(0, "k", "v2", 2, 3),
		read(1, "k", "v1", 5, 10, 11),
	}
	ft := &fakeT{TB: t}
	r := Require(ft, h)
	if !ft.failed || r.Result != porcupine.Illegal {
		t.Fatalf("Require on a stale read: failed %v, result %s", ft.failed, r.Result)
	}
	for _, f := range r.Files {
		if !strings.Contains(ft.msg, f) {
			t.Errorf("the failure does not name %s: %s", f, ft.msg)
		}
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	os.RemoveAll(filepath.Dir(r.Files[0]))
}

// fakeT records Errorf instead of failing the real test.
type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.failed = true
	f.msg += " " + fmt.Sprintf(format, args...)
}

func (f *fakeT) Helper() {}
