package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// SwapRecord is what a run that holds the upgrade lock keeps in the KV
// store next to the lock (at consul-upgrade/swap for the default lock key)
// while it swaps a server: written right
// before it asks the transport to swap the server, deleted once the step's
// gate passed (or after a completed rollback). A record found by a later
// run is the swap of a run that died (SIGKILL, a lost host) or halted on
// that server. Holding the lock, the later run finishes it before it
// plans (see Run):
//
//   - the server is alive in serf on To: the swap was done; its gate is
//     checked and the record deleted;
//   - the server is alive on another version (From) and healthy: the swap
//     never started; the record is deleted;
//   - the server is not alive in serf (stopped, failed or left) and its
//     last build is From or To: the swap is carried out again (the same
//     SwapRequest; a transport starts a stopped agent), gated, and the
//     record deleted.
//
// Anything else (a server alive but not healthy off To for 30 seconds, down
// on a third version, not a server, a To that is not the run's target or a
// hop to it) is refused with a *SwapRecordError, touching nothing.
//
// Only the recorded server is ever acted on this way.
type SwapRecord struct {
	// Step is the swap-server step as the planner decided it.
	Step planner.Step `json:"step"`
	// Node, Role, Datacenter, From and To repeat the step's, for a reader.
	Node       string         `json:"node"`
	Role       transport.Role `json:"role"`
	Datacenter string         `json:"datacenter,omitempty"`
	From       string         `json:"from"`
	To         string         `json:"to"`
	// Holder names the run that started the swap (the lock's holder).
	Holder  string    `json:"holder,omitempty"`
	Started time.Time `json:"started"`
	// Baseline is the health the run measured in the step's datacenter
	// before its first step: the gate of a finished swap compares with it
	// (a baseline measured with the server down would count one server
	// less of failure tolerance).
	Baseline Baseline `json:"baseline"`
	// Key is the KV key the record was read from (set by ReadSwapRecord;
	// not stored).
	Key string `json:"-"`
}

func swapRecordKey(lockKey string) string { return recordKey(lockKey, "swap") }

// SwapRecordError refuses a run that found a swap record it must not act
// on: one that cannot be read, names a node that is not a server of the
// cluster, or a version that is not this run's target or one of its hops.
// Nothing was touched; Fix says how to go on.
type SwapRecordError struct {
	Key    string
	Node   string // the node the record names ("" when unreadable)
	To     string // the version it names
	Holder string // the run that wrote it
	Reason string
}

func (e *SwapRecordError) Error() string {
	who := ""
	if e.Holder != "" {
		who = fmt.Sprintf(" (written by %q)", e.Holder)
	}
	what := "the swap record " + e.Key
	if e.Node != "" {
		what = fmt.Sprintf("the swap record %s of %s to %s%s", e.Key, e.Node, orUnknown(e.To), who)
	}
	return fmt.Sprintf("%s: %s; nothing was touched. %s", what, e.Reason, e.Fix())
}

// Fix says how to go on.
func (e *SwapRecordError) Fix() string {
	return fmt.Sprintf("Check the node by hand (start it on the version it should run), then delete the record (consul kv delete %s) and run again", e.Key)
}

// ReadSwapRecord reads the swap record next to the lock at lockKey ("":
// DefaultLockKey) through c, which must implement KVStore (NewConsul's
// does). It returns nil and no error when there is none, and a
// *SwapRecordError for a value that is not a swap record.
func ReadSwapRecord(ctx context.Context, c Consul, lockKey string) (*SwapRecord, error) {
	kv, ok := c.(KVStore)
	if !ok {
		return nil, fmt.Errorf("read the swap record: the Consul given (%T) does not implement upgrade.KVStore; pass upgrade.NewConsul(client)", c)
	}
	key := swapRecordKey(lockKey)
	b, found, err := kv.KVGet(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read the swap record %s: %w", key, err)
	}
	if !found {
		return nil, nil
	}
	var rec SwapRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, &SwapRecordError{Key: key, Reason: fmt.Sprintf("its value is not a swap record (%v)", err)}
	}
	if rec.Step.Kind != planner.StepSwapServer || rec.Step.Node == "" || rec.Step.To == "" {
		return nil, &SwapRecordError{Key: key, Node: rec.Step.Node, To: rec.Step.To, Holder: rec.Holder,
			Reason: fmt.Sprintf("its step is %q, not a swap-server step naming a node and a version", rec.Step.String())}
	}
	rec.Key = key
	return &rec, nil
}

// swapRecords reports whether this run keeps swap records: it holds the
// lock (a Locker, not NoLock) and its Consul implements KVStore.
func (r *runner) swapRecords() (KVStore, bool) {
	if r.cfg.NoLock || r.cfg.DryRun {
		return nil, false
	}
	if _, ok := r.cfg.Consul.(Locker); !ok {
		return nil, false
	}
	kv, ok := r.cfg.Consul.(KVStore)
	return kv, ok
}

// recordSwap writes the swap record of step, right before the server is
// stopped. A failure halts the step before the node is touched: without
// the record a run that died during the swap would leave a stopped server
// no later run finishes.
func (r *runner) recordSwap(ctx context.Context, step planner.Step) error {
	kv, ok := r.swapRecords()
	if !ok || r.lock == nil {
		return nil
	}
	key := swapRecordKey(r.cfg.LockKey)
	rec := SwapRecord{Step: step, Node: step.Node, Role: transport.RoleServer, Datacenter: step.Datacenter,
		From: step.From, To: step.To, Holder: r.holder(), Started: time.Now().UTC(), Baseline: r.baseline(step.Datacenter)}
	b, err := json.Marshal(rec)
	if err == nil {
		err = kv.KVPut(ctx, key, b)
	}
	if err != nil {
		return fmt.Errorf("%s not stopped: record the swap in %s: %w (the record is what lets a later run finish a swap this run could not)", step.Node, key, err)
	}
	return nil
}

// forgetSwap deletes the swap record once its step is over.
func (r *runner) forgetSwap(ctx context.Context, step planner.Step) {
	kv, ok := r.swapRecords()
	if !ok || r.lock == nil {
		return
	}
	key := swapRecordKey(r.cfg.LockKey)
	if err := kv.KVDelete(ctx, key); err != nil {
		r.emit(ctx, Event{Kind: EventSwapRecord, Step: step, Err: fmt.Errorf("delete the swap record %s: %w", key, err),
			Detail: "the next run checks " + step.Node + " again before it plans; or delete it by hand (consul kv delete " + key + ")"})
	}
}

// peekSwap reads the swap record without the lock: a record (even an
// unreadable one) makes the run take the lock before it plans, since the
// planner refuses the cluster a dead run's swap left behind. A record that
// cannot be read (the KV store does not answer) is reported and the run
// plans as if there were none: the planner refuses a cluster with a server
// down, so nothing unsafe follows.
func (r *runner) peekSwap(ctx context.Context) bool {
	if _, ok := r.swapRecords(); !ok {
		return false
	}
	rec, err := ReadSwapRecord(ctx, r.cfg.Consul, r.cfg.LockKey)
	var se *SwapRecordError
	switch {
	case errors.As(err, &se):
		return true // judged once the lock is held
	case err != nil:
		r.emit(ctx, Event{Kind: EventSwapRecord, Err: err, Detail: "the swap record could not be read; the run plans without it"})
		return false
	}
	return rec != nil
}

// noteSwap tells a dry run of a swap record: the run proper finishes that
// swap before it plans, so the preview may differ (a refused plan, or the
// swap first). It returns the record as the plan's basis records it (nil
// when there is none).
func (r *runner) noteSwap(ctx context.Context) *planner.UnfinishedSwap {
	if r.cfg.NoLock {
		return nil
	}
	if _, ok := r.cfg.Consul.(Locker); !ok {
		return nil
	}
	if _, ok := r.cfg.Consul.(KVStore); !ok {
		return nil
	}
	rec, err := ReadSwapRecord(ctx, r.cfg.Consul, r.cfg.LockKey)
	switch {
	case err != nil:
		r.emit(ctx, Event{Kind: EventSwapRecord, Err: err, Detail: "a run refuses this record, touching nothing"})
	case rec != nil:
		r.emit(ctx, Event{Kind: EventSwapRecord, Step: rec.Step, Detail: fmt.Sprintf("%s holds the swap of %s to %s started by %q at %s and not finished; a run (not a dry run) finishes it before it plans",
			swapRecordKey(r.cfg.LockKey), rec.Node, rec.To, rec.Holder, rec.Started.Format(time.RFC3339))})
	}
	return rec.Unfinished()
}

// Unfinished is the record as a planner.UnfinishedSwap (nil for a nil
// record), as a plan's basis records it (planner.Cluster.UnfinishedSwap).
func (rec *SwapRecord) Unfinished() *planner.UnfinishedSwap {
	if rec == nil {
		return nil
	}
	return &planner.UnfinishedSwap{Node: rec.Node, Datacenter: rec.Datacenter, From: rec.From, To: rec.To, Holder: rec.Holder}
}

// swapResumeSettle bounds how long a recorded server that is alive in serf
// on From but not yet healthy (an agent just killed, before serf has
// found it failed) is observed again before the run refuses.
const swapResumeSettle = 30 * time.Second

// resumeSwap finishes the swap a swap record holds; the run holds the lock.
// It returns the step when this run swapped the node (case c), for
// Result.Steps.
func (r *runner) resumeSwap(ctx context.Context, c planner.Cluster) (*StepRecord, error) {
	if _, ok := r.swapRecords(); !ok || r.lock == nil {
		return nil, nil
	}
	rec, err := ReadSwapRecord(ctx, r.cfg.Consul, r.cfg.LockKey)
	var se *SwapRecordError
	switch {
	case errors.As(err, &se):
		return nil, err
	case err != nil:
		r.emit(ctx, Event{Kind: EventSwapRecord, Err: err, Detail: "the swap record could not be read; the run plans without it"})
		return nil, nil
	case rec == nil:
		return nil, nil
	}
	key := swapRecordKey(r.cfg.LockKey)
	step := rec.Step
	refuse := func(reason string) error {
		return &SwapRecordError{Key: key, Node: step.Node, To: step.To, Holder: rec.Holder, Reason: reason}
	}
	if err := r.swapTargetKnown(step, c.Features); err != nil {
		return nil, refuse(err.Error())
	}
	dc := step.Datacenter
	if _, ok := r.cfg.Datacenters[dc]; dc != "" && dc != r.ownDC && !ok {
		return nil, refuse(fmt.Sprintf("it is in datacenter %s, which this run does not observe (Config.Datacenters)", dc))
	}
	consul := r.consul(dc)
	r.bases = map[string]Baseline{dc: rec.Baseline}
	r.base = rec.Baseline
	defer func() { r.bases, r.base = nil, Baseline{} }() // measured anew once the swap is over
	r.idx, r.total = 0, 1
	if p := r.cfg.Plan; p != nil {
		if i := slices.IndexFunc(p.Steps, func(s planner.Step) bool { return sameStep(s, step) }); i >= 0 {
			r.idx, r.total = i, len(p.Steps)
		}
	}

	deadline := time.Now().Add(swapResumeSettle)
	for {
		members, err := consul.Members(ctx)
		if err != nil {
			return nil, fmt.Errorf("observe %s for the swap record %s: %w", step.Node, key, err)
		}
		m := findMember(members, step.Node)
		if m == nil {
			return nil, refuse(fmt.Sprintf("%s is missing: serf lists no such member (a server removed and reaped since, or a record of another cluster); servers: %s", step.Node, serverNames(c)))
		}
		if m.Tags["role"] != "consul" {
			return nil, refuse(fmt.Sprintf("%s is not a server of the cluster (servers: %s)", step.Node, serverNames(c)))
		}
		healthy := slices.ContainsFunc(c.Servers, func(s planner.Server) bool { return s.Name == step.Node && s.Healthy })
		running := buildVersion(m.Tags["build"])
		switch {
		case m.Status == serfAlive && planner.SameVersion(running, step.To):
			// (a) The swap was done; nobody gated it.
			r.emit(ctx, Event{Kind: EventSwapRecord, Step: step, Detail: fmt.Sprintf("%s, whose swap to %s was started by %q at %s, runs %s: the swap was done; its gate is checked before the run plans",
				step.Node, step.To, rec.Holder, rec.Started.Format(time.RFC3339), running)})
			done := StepRecord{Step: step, Started: time.Now()}
			if _, herr := r.gate(ctx, step, done, nil); herr != nil {
				return nil, herr
			}
			r.gatedResume = &step
			return nil, nil // the gate deleted the record
		case m.Status == serfAlive && healthy:
			// (b) The swap never stopped the server (or someone finished
			// it otherwise): nothing is half done.
			r.emit(ctx, Event{Kind: EventSwapRecord, Step: step, Detail: fmt.Sprintf("%s, whose swap to %s was started by %q at %s, runs %s and is healthy: the swap never happened; the record is deleted and the run plans as usual",
				step.Node, step.To, rec.Holder, rec.Started.Format(time.RFC3339), running)})
			r.forgetSwap(ctx, step)
			return nil, nil
		case m.Status != serfAlive && running != "" && !planner.SameVersion(running, step.From) && !planner.SameVersion(running, step.To):
			return nil, refuse(fmt.Sprintf("%s is %s in serf on %s, neither the swap's from (%s) nor its to: the record is not about the node as it is", step.Node, serfStatus(m.Status), running, orUnknown(step.From)))
		case m.Status != serfAlive:
			// (c) The server is down: the run that stopped it died.
			r.emit(ctx, Event{Kind: EventSwapRecord, Step: step, Detail: fmt.Sprintf("resuming the swap of %s to %s that an earlier run left unfinished (it died or halted): %q started it at %s and %s is %s in serf (build %s); it is swapped again and gated before the run plans",
				step.Node, step.To, rec.Holder, rec.Started.Format(time.RFC3339), step.Node, serfStatus(m.Status), orUnknown(running))})
			done, herr := r.do(ctx, c, step)
			if herr != nil {
				return nil, herr
			}
			return &done, nil
		}
		if !time.Now().Before(deadline) {
			return nil, refuse(fmt.Sprintf("%s is alive in serf on %s but not healthy, after %s: neither the swap's version nor a healthy old agent", step.Node, orUnknown(running), swapResumeSettle))
		}
		if !sleepCtx(ctx, 2*time.Second) {
			return nil, ctx.Err()
		}
		if c, err = r.observe(ctx); err != nil {
			return nil, err
		}
	}
}

// swapTargetKnown checks that a recorded swap goes to this run's target or
// to one of the hops on the way (the path of a cluster with features f).
func (r *runner) swapTargetKnown(step planner.Step, f planner.Features) error {
	if planner.SameVersion(step.To, r.cfg.Target) {
		return nil
	}
	if step.From != "" {
		if hops, err := planner.PathFor(step.From, r.cfg.Target, r.cfg.Policy, f); err == nil {
			for _, h := range hops {
				if planner.SameVersion(h.To, step.To) {
					return nil
				}
			}
			// In a cluster of several versions a node may stop short of its
			// own first stepping stone, on one that a newer node must not
			// skip (the planner's cluster path): a version above From and
			// not beyond that first stone is on the way too.
			if len(hops) > 0 {
				from, err1 := planner.ParseVersion(step.From)
				to, err2 := planner.ParseVersion(step.To)
				first, err3 := planner.ParseVersion(hops[0].To)
				if err1 == nil && err2 == nil && err3 == nil && from.LessThan(to) && !first.LessThan(to) {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("%s is neither this run's target %s nor a hop on the way to it", step.To, r.cfg.Target)
}
