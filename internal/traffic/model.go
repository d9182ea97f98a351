package traffic

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/anishathalye/porcupine"
)

// register is the state of one key in the model.
//
// A write does not learn the ModifyIndex Consul gave it (PUT answers only
// true or false), so Index is 0 ("not known yet") after a write until a
// read returns the index, or a CAS that matched names it; from then on
// every read of that write must return the same index. Floor is the
// highest index known of an earlier write of the key: Raft indexes grow,
// so a later write's index must be above it.
type register struct {
	Exists bool
	Value  string
	Index  uint64
	Floor  uint64
}

// input and output are an operation as the model sees it.
type input struct {
	Kind           Kind
	Key            string
	Value          string
	CASIndex       uint64
	CASExpect      string
	CASExpectFound bool
}

type output struct {
	Unknown bool // indeterminate: the effect may or may not have happened
	OK      bool
	Found   bool
	Got     string
	Index   uint64
}

// casMatches reports whether a CAS with index i, issued after a read that
// saw (expectFound, expect) at that index, finds the key as it expects.
// Index 0 means "only if the key does not exist". Values are unique per
// write, so the value names the write; the index must agree with what is
// known of it.
func casMatches(s register, in input) bool {
	if in.CASIndex == 0 {
		return !s.Exists
	}
	if !s.Exists || !in.CASExpectFound || s.Value != in.CASExpect {
		return false
	}
	return s.Index == 0 || s.Index == in.CASIndex
}

// write applies a write that replaces the current one. replaced is the
// current write's index when the operation names it (a matching CAS), else
// 0.
func (s register) write(value string, replaced uint64) register {
	floor := max(s.Floor, s.Index, replaced)
	return register{Exists: true, Value: value, Floor: floor}
}

func step(state, in, out any) (bool, any) {
	s := state.(register)
	i := in.(input)
	o := out.(output)
	switch i.Kind {
	case Read:
		if o.Unknown {
			return true, s // a read has no effect
		}
		if !o.Found {
			return !s.Exists, s
		}
		if !s.Exists || s.Value != o.Got || o.Index == 0 {
			return false, s
		}
		if s.Index == 0 {
			if o.Index <= s.Floor {
				return false, s // older than a write this one replaced
			}
			s.Index = o.Index
			return true, s
		}
		return s.Index == o.Index, s
	case Put:
		if o.Unknown || o.OK {
			return true, s.write(i.Value, 0)
		}
		return true, s // a plain PUT that answered false wrote nothing
	case CAS:
		match := casMatches(s, i)
		switch {
		case o.Unknown:
			// Had it happened here, it did what its condition says.
			if match {
				return true, s.write(i.Value, i.CASIndex)
			}
			return true, s
		case o.OK:
			if !match {
				return false, s
			}
			return true, s.write(i.Value, i.CASIndex)
		default:
			return !match, s
		}
	}
	return false, s
}

// Model is the Porcupine model of one Consul KV key as a register of
// (value, ModifyIndex) with check-and-set, partitioned by key.
var Model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return register{} },
	Step: step,
	Hash: func(state any) uint64 {
		s := state.(register)
		h := fnv.New64a()
		fmt.Fprintf(h, "%t|%s|%d|%d", s.Exists, s.Value, s.Index, s.Floor)
		return h.Sum64()
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(input), out.(output)
		var what string
		switch i.Kind {
		case Read:
			what = "read()"
		case Put:
			what = fmt.Sprintf("put(%s)", i.Value)
		case CAS:
			what = fmt.Sprintf("cas(%s, if %d)", i.Value, i.CASIndex)
		}
		switch {
		case o.Unknown:
			return what + " -> ?"
		case i.Kind == Read && !o.Found:
			return what + " -> absent"
		case i.Kind == Read:
			return fmt.Sprintf("%s -> %s@%d", what, o.Got, o.Index)
		default:
			return fmt.Sprintf("%s -> %t", what, o.OK)
		}
	},
	DescribeState: func(state any) string {
		s := state.(register)
		if !s.Exists {
			return "absent"
		}
		idx := "?"
		if s.Index != 0 {
			idx = fmt.Sprint(s.Index)
		}
		return fmt.Sprintf("%s@%s (floor %d)", s.Value, idx, s.Floor)
	},
}

// operations turns a history into Porcupine's operations: not-sent
// operations are left out, indeterminate ones may take effect at any time
// after their call (their return is "never").
//
// Each worker's operations get a client id for the visualization, a new one
// after each indeterminate write (which stays open to the end), so that no
// client has two operations open at once.
func operations(h History) []porcupine.Operation {
	sorted := slices.Clone(h)
	slices.SortStableFunc(sorted, func(a, b Op) int { return cmp.Compare(a.Call, b.Call) })
	ids := map[int]int{} // worker -> its current client id
	next := 0
	ops := make([]porcupine.Operation, 0, len(h))
	for _, op := range sorted {
		if op.Outcome == NotSent {
			continue
		}
		in := input{Kind: op.Kind, Key: op.Key, Value: op.Value, CASIndex: op.CASIndex, CASExpect: op.CASExpect, CASExpectFound: op.CASExpectFound}
		out := output{Unknown: op.Outcome == Indeterminate, OK: op.OK, Found: op.Found, Got: op.Got, Index: op.Index}
		ret := int64(op.Return)
		if op.Outcome == Indeterminate {
			if op.Kind == Read {
				continue // no effect, nothing observed
			}
			ret = never
		}
		id, ok := ids[op.Worker]
		if !ok {
			id, next = next, next+1
			ids[op.Worker] = id
		}
		if ret == never {
			delete(ids, op.Worker)
		}
		ops = append(ops, porcupine.Operation{ClientId: id, Input: in, Call: int64(op.Call), Output: out, Return: ret, Metadata: op.Node})
	}
	return ops
}
