package traffic

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/anishathalye/porcupine"
)

// DefaultCheckTimeout bounds Porcupine's search when the real-cluster tests
// check a recorded history (tests/scenario/traffictest).
const DefaultCheckTimeout = 5 * time.Minute

// Report is what checking a history found.
type Report struct {
	Ops           int // operations recorded
	Indeterminate int // of which indeterminate
	NotSent       int // of which never sent (not checked)
	Acked         int // writes Consul acknowledged (put true, cas true)
	// Answered operations by kind: reads, puts, and CAS that wrote (true)
	// or found another index (false).
	Reads, Puts, CASTrue, CASFalse int
	// Result is Porcupine's verdict: Ok, Illegal (not linearizable) or
	// Unknown (the search timed out).
	Result porcupine.CheckResult
	// Lost are the acknowledged writes the final reads prove lost: the
	// key's final value was written by a write that had returned before
	// they were called (or the key is absent, or holds a value no write
	// wrote).
	Lost      []Op
	CheckTime time.Duration
	// Files are the history (JSON) and Porcupine's visualization (HTML),
	// written when the result is not Ok.
	Files []string
}

func (r Report) String() string {
	return fmt.Sprintf("%d ops (%d indeterminate, %d not sent; answered: %d reads, %d puts, cas %d true / %d false), %d acknowledged writes, %d lost; linearizability %s in %s",
		r.Ops, r.Indeterminate, r.NotSent, r.Reads, r.Puts, r.CASTrue, r.CASFalse, r.Acked, len(r.Lost), r.Result, r.CheckTime.Round(time.Millisecond))
}

// Check checks h for linearizability against Model (timeout 0: no limit)
// and counts the acknowledged writes the final reads prove lost. When the
// result is not Ok it writes history.json and linearizability.html into
// dir. The error is only about writing those files.
func Check(h History, dir string, timeout time.Duration) (Report, error) {
	r := Report{Ops: len(h), Indeterminate: h.Count(Indeterminate), NotSent: h.Count(NotSent)}
	for _, op := range h {
		if op.IsWrite() && op.Outcome == Done && op.OK {
			r.Acked++
		}
		if op.Outcome != Done {
			continue
		}
		switch {
		case op.Kind == Read:
			r.Reads++
		case op.Kind == Put:
			r.Puts++
		case op.OK:
			r.CASTrue++
		default:
			r.CASFalse++
		}
	}
	r.Lost = LostWrites(h)
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(Model, operations(h), timeout)
	r.CheckTime = time.Since(start)
	r.Result = res
	if res == porcupine.Ok {
		return r, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	hist := filepath.Join(dir, "history.json")
	data, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return r, err
	}
	if err := os.WriteFile(hist, data, 0o644); err != nil {
		return r, err
	}
	r.Files = append(r.Files, hist)
	html := filepath.Join(dir, "linearizability.html")
	if err := porcupine.VisualizePath(Model, info, html); err != nil {
		return r, fmt.Errorf("porcupine visualization: %w", err)
	}
	r.Files = append(r.Files, html)
	return r, nil
}

// LostWrites returns the acknowledged writes that the final reads (ops
// with Final set) prove lost. For each key with a successful final read
// returning the value of write W, an acknowledged write called after W
// returned should have replaced W's value: it is lost. When the key is
// absent, or its value was written by no write, every acknowledged write
// of the key is lost. (Writes lost in between, overwritten later, are the
// linearizability check's business.)
func LostWrites(h History) []Op {
	final := map[string]Op{}
	writes := map[string]Op{} // by value
	for _, op := range h {
		if op.Final && op.Kind == Read && op.Outcome == Done {
			final[op.Key] = op
		}
		if op.IsWrite() {
			writes[op.Value] = op
		}
	}
	var lost []Op
	for _, op := range h {
		if !op.IsWrite() || op.Outcome != Done || !op.OK {
			continue
		}
		f, ok := final[op.Key]
		if !ok {
			continue // no final read of the key: nothing proven
		}
		w, known := writes[f.Got]
		switch {
		case !f.Found, !known, w.Key != op.Key:
			lost = append(lost, op)
		case w.Outcome != Indeterminate && op.Call > w.Return:
			lost = append(lost, op)
		}
	}
	return lost
}
