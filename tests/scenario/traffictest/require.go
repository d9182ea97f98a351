// Package traffictest fails a test on a recorded history that is not
// linearizable or loses an acknowledged write. It is apart from package
// traffic so that programs using the recorder (the rehearsal) do not link
// the testing package.
package traffictest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
)

// Require checks h (DefaultCheckTimeout) and fails t when the history is
// not proven linearizable or an acknowledged write is lost, naming the
// files it wrote. The files go to t.ArtifactDir() when the test runs with
// -artifacts (kept under -outputdir); otherwise to a new directory under
// os.TempDir() that is kept for the failure to be looked at.
func Require(t testing.TB, h traffic.History) traffic.Report {
	t.Helper()
	dir := keptDir(t)
	r, err := traffic.Check(h, dir, traffic.DefaultCheckTimeout)
	if err != nil {
		t.Errorf("traffic: writing the failed check's files: %v", err)
	}
	switch r.Result {
	case porcupine.Ok:
	case porcupine.Illegal:
		t.Errorf("traffic: the history is NOT linearizable (%s); history and Porcupine's visualization: %s", r, strings.Join(r.Files, ", "))
	default:
		t.Errorf("traffic: linearizability not decided within %s (%s); history and visualization: %s", traffic.DefaultCheckTimeout, r, strings.Join(r.Files, ", "))
	}
	if len(r.Lost) > 0 {
		var ex []string
		for _, op := range r.Lost[:min(5, len(r.Lost))] {
			ex = append(ex, op.String())
		}
		t.Errorf("traffic: %d acknowledged writes lost, e.g.\n  %s", len(r.Lost), strings.Join(ex, "\n  "))
	}
	return r
}

// keptDir is where a failed check's files go: t.ArtifactDir() under
// -artifacts, else a new directory that outlives the test. It is created
// only when a check fails.
func keptDir(t testing.TB) string {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir()
	}
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, t.Name())
	return filepath.Join(os.TempDir(), fmt.Sprintf("traffic-%s-%d", name, time.Now().UnixNano()))
}
