package rehearsal

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/anishathalye/porcupine"
	version "github.com/hashicorp/go-version"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// KnownDefect explains a history that is not linearizable by a defect of
// the Consul versions rehearsed, when the history without the operations
// the defect can spoil is linearizable.
type KnownDefect struct {
	ID      string `json:"id"`
	URL     string `json:"url"`
	Summary string `json:"summary"`
	FixedIn string `json:"fixed_in"`
	// Excluded is how many operations were left out of the second check,
	// and Elections the elections whose windows they were called in.
	Excluded  int          `json:"excluded"`
	Elections []LeaderSeen `json:"elections"`
}

// Stale reads from a leader that has just been elected after a restart
// (hashicorp/consul#2644, fixed by #3154 in 0.9.0): before 0.9.0 a server
// answered ?consistent reads as soon as it led, while it was still
// replaying its Raft log into its state store, so a read could miss writes
// acknowledged before the election, or find a key absent. An in-place
// upgrade meets it whenever the swapped leader comes back and wins the
// election again. The window is how long after an election a read is
// left out: the old eras log elections to the second, and the replay of a
// small log takes well under a second.
var (
	defect2644Fixed  = version.Must(version.NewVersion("0.9.0"))
	defect2644Window = 2 * time.Second
)

// explain checks whether the history, without the reads in flight within
// defect2644Window after an election won by a server older than 0.9.0, is
// linearizable; if so it returns the defect.
func (r *Report) explain(h traffic.History, dir string, timeout time.Duration) (*KnownDefect, error) {
	var windows []LeaderSeen
	for _, l := range r.Leaders {
		if l.Elected && before(r.versionAt(l.Leader, l.At), defect2644Fixed) {
			windows = append(windows, l)
		}
	}
	if len(windows) == 0 {
		return nil, nil
	}
	var kept traffic.History
	excluded := 0
	for _, op := range h {
		if op.Kind == traffic.Read && !op.Final && inWindow(op, windows) {
			excluded++
			continue
		}
		kept = append(kept, op)
	}
	if excluded == 0 {
		return nil, nil
	}
	sub := filepath.Join(dir, "without-2644")
	rep, err := traffic.Check(kept, sub, timeout)
	if err != nil {
		return nil, err
	}
	if rep.Result != porcupine.Ok {
		return nil, nil
	}
	os.Remove(sub) // nothing written when Ok; the folder may not exist
	return &KnownDefect{
		ID: "consul#2644", URL: "https://github.com/hashicorp/consul/issues/2644",
		Summary: fmt.Sprintf("before 0.9.0 a newly elected leader answers consistent reads while it is still replaying its Raft log, so a read can miss acknowledged writes; without the %d read(s) in flight within %s after the election(s) of a leader older than 0.9.0 the history is linearizable", excluded, defect2644Window),
		FixedIn: "0.9.0", Excluded: excluded, Elections: windows,
	}, nil
}

// inWindow reports whether op was in flight during the window after one
// of the elections: called before the window ends and not returned before
// it starts. (A read called while no leader was known is held by the
// servers until one is elected, then answered by it.)
func inWindow(op traffic.Op, windows []LeaderSeen) bool {
	for _, w := range windows {
		if op.Call < w.At+defect2644Window && (op.Outcome != traffic.Done || op.Return >= w.At) {
			return true
		}
	}
	return false
}

// versionAt is the version node ran at the offset at: its starting
// version, or the target of its last server swap started before then.
func (r *Report) versionAt(node string, at time.Duration) string {
	v := ""
	for _, a := range r.Servers {
		if a.Name == node {
			v = a.Version
		}
	}
	for _, s := range r.Steps {
		if s.Step.Kind == planner.StepSwapServer && s.Step.Node == node && s.Start <= at {
			v = s.Step.To
		}
	}
	return v
}
