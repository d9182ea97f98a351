// Package traffic records concurrent client traffic against a Consul
// cluster's KV store and checks the recorded history for linearizability
// with Porcupine (github.com/anishathalye/porcupine).
//
// The traffic is a few registers (KV keys) that several workers put, check
// and set (?cas=<index>) and read with ?consistent, each through its own
// agent (a client agent or a server). Every operation is recorded with the
// times it was called and returned and its outcome. An operation whose
// answer never came (a timeout, a reset connection, a 5xx) is
// indeterminate: its effect may or may not have happened, and the checker
// lets it take effect at any point after its call, or never.
//
// The model (see model.go) is a register holding (value, ModifyIndex):
// Consul's check-and-set compares the ModifyIndex, which is the Raft index
// of the write that last changed the key. A plain PUT does not return that
// index, so every write puts a value no other write puts, and a read that
// returns (value, index) tells the model which index that write got.
//
// Only endpoints every Consul era answers alike are used (PUT
// /v1/kv/<key>[?cas=], GET /v1/kv/<key>?consistent), so the recorder
// serves the tests of every version.
package traffic

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Kind is an operation's kind.
type Kind string

const (
	// Read is GET /v1/kv/<key>?consistent (?stale with ReadStale).
	Read Kind = "read"
	// Put is PUT /v1/kv/<key> with a value no other write uses.
	Put Kind = "put"
	// CAS is PUT /v1/kv/<key>?cas=<index>: it writes only when the key's
	// ModifyIndex is <index> (0: only when the key does not exist).
	CAS Kind = "cas"
)

// Outcome says what is known about an operation's effect.
type Outcome string

const (
	// Done: Consul answered; the answer is the operation's result.
	Done Outcome = "done"
	// Indeterminate: the request may have reached Consul but no answer
	// came (timeout, reset, a 5xx such as "No cluster leader"): a write may
	// or may not have taken effect, at any time after its call.
	Indeterminate Outcome = "indeterminate"
	// NotSent: the connection could not even be opened (the agent was
	// down), so the request never reached Consul and had no effect. Such
	// operations are kept in the history for the figures but not checked.
	NotSent Outcome = "not-sent"
)

// Op is one recorded operation.
type Op struct {
	Worker int    `json:"worker"`
	Node   string `json:"node"` // the agent the request went to
	Key    string `json:"key"`
	Kind   Kind   `json:"kind"`

	// Value is what a Put or CAS writes (unique in the history).
	Value string `json:"value,omitempty"`
	// CASIndex is a CAS's ?cas= index; CASExpect and CASExpectFound are
	// what the worker's read that returned this index saw: the value at
	// that index, or that the key did not exist (index 0).
	CASIndex       uint64 `json:"cas_index,omitempty"`
	CASExpect      string `json:"cas_expect,omitempty"`
	CASExpectFound bool   `json:"cas_expect_found,omitempty"`

	// Call and Return are offsets from the start of the recording
	// (monotonic clock). Return is meaningless for an indeterminate op.
	Call   time.Duration `json:"call"`
	Return time.Duration `json:"return"`

	Outcome Outcome `json:"outcome"`
	// OK is a write's answer (true: written; false: a CAS whose index did
	// not match).
	OK bool `json:"ok,omitempty"`
	// Found, Got and Index are a read's answer.
	Found bool   `json:"found,omitempty"`
	Got   string `json:"got,omitempty"`
	Index uint64 `json:"index,omitempty"`
	// Err is why an operation is indeterminate or not sent.
	Err string `json:"err,omitempty"`
	// Final marks the reads made after the traffic stopped, one per key,
	// that LostWrites compares the acknowledged writes with.
	Final bool `json:"final,omitempty"`
}

// IsWrite reports whether the op is a Put or a CAS.
func (o Op) IsWrite() bool { return o.Kind == Put || o.Kind == CAS }

func (o Op) String() string {
	var what string
	switch o.Kind {
	case Read:
		what = fmt.Sprintf("read %s", o.Key)
	case Put:
		what = fmt.Sprintf("put %s=%s", o.Key, o.Value)
	case CAS:
		what = fmt.Sprintf("cas %s=%s if index %d", o.Key, o.Value, o.CASIndex)
	}
	var res string
	switch {
	case o.Outcome != Done:
		res = fmt.Sprintf("%s (%s)", o.Outcome, o.Err)
	case o.Kind == Read && !o.Found:
		res = "absent"
	case o.Kind == Read:
		res = fmt.Sprintf("%s@%d", o.Got, o.Index)
	default:
		res = fmt.Sprint(o.OK)
	}
	return fmt.Sprintf("worker %d via %s [%s..%s]: %s -> %s", o.Worker, o.Node, o.Call, o.Return, what, res)
}

// History is a recorded history, in the order the operations returned.
type History []Op

// Count returns how many operations have the given outcome.
func (h History) Count(o Outcome) int {
	n := 0
	for _, op := range h {
		if op.Outcome == o {
			n++
		}
	}
	return n
}

// never is the return time of an indeterminate operation for Porcupine:
// it may be linearized at any point after its call (at the very end, where
// nothing observes it, is the same as never).
const never = math.MaxInt64

// ByNode summarises the history per agent, in the order agents first
// appear: "c1 812 (3 indeterminate, 0 not sent), s1 ...".
func (h History) ByNode() string {
	type counts struct{ all, indet, unsent int }
	var order []string
	by := map[string]*counts{}
	for _, op := range h {
		c, ok := by[op.Node]
		if !ok {
			c = &counts{}
			by[op.Node] = c
			order = append(order, op.Node)
		}
		c.all++
		switch op.Outcome {
		case Indeterminate:
			c.indet++
		case NotSent:
			c.unsent++
		}
	}
	parts := make([]string, 0, len(order))
	for _, n := range order {
		c := by[n]
		parts = append(parts, fmt.Sprintf("%s %d (%d indeterminate, %d not sent)", n, c.all, c.indet, c.unsent))
	}
	return strings.Join(parts, ", ")
}
