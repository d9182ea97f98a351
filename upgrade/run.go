package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// StepRecord is one step that was carried out and passed its gate.
type StepRecord struct {
	Step    planner.Step `json:"step"`
	Started time.Time    `json:"started"`
	Ended   time.Time    `json:"ended"`
	// Snapshot describes the verified archive of a snapshot step.
	Snapshot *SnapshotInfo `json:"snapshot,omitempty"`
}

// Result is what a run did. Run returns it even with an error: it then holds
// what was done before the run stopped.
type Result struct {
	// Steps are the steps done, in order.
	Steps []StepRecord `json:"steps"`
	// Baseline is the cluster's health before the first step (zero for a
	// dry run).
	Baseline Baseline `json:"baseline"`
	// Cluster is the last cluster observed.
	Cluster planner.Cluster `json:"cluster"`
	// Plan is the preview of a dry run (nil otherwise).
	Plan *planner.UpgradePlan `json:"plan,omitempty"`
}

// Run upgrades the cluster behind cfg.Consul to cfg.Target, one step at a
// time: Discover, planner.Next, act, Gate; until Next says done.
//
// A refused plan (*planner.RefusedError) is returned before anything is
// touched. A failed act or gate halts the run with a *HaltError; nothing
// after the failed step is touched (halt, never cascade). With cfg.Rollback,
// the failed node is rolled back through the transport first and Run waits
// until the cluster is healthy again. A step chosen again right after it
// succeeded halts with a *StuckError, and MaxSteps bounds the run
// (*StepLimitError).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	res := &Result{}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	r := &runner{cfg: cfg, em: emitter{on: cfg.OnEvent, log: cfg.Logger}, res: res}
	return res, r.run(ctx)
}

type runner struct {
	cfg      Config
	em       emitter
	res      *Result
	base     Baseline
	snapshot string // the version the last verified snapshot of this run was taken on
	lock     *Lock  // held from the first action until the run ends
	lost     <-chan struct{}
}

func (r *runner) takeLock(ctx context.Context, lk Locker) (*Lock, error) {
	key := r.cfg.LockKey
	if key == "" {
		key = DefaultLockKey
	}
	holder := r.cfg.LockHolder
	if holder == "" {
		host, _ := os.Hostname()
		holder = fmt.Sprintf("consul-upgrade on %s, pid %d", host, os.Getpid())
	}
	lock, err := lk.Lock(ctx, key, LockHolder{Holder: holder, Target: r.cfg.Target, Since: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	r.em.emit(Event{Kind: EventLocked, Detail: fmt.Sprintf("upgrade lock %s taken by %q", key, holder)})
	return lock, nil
}

// unlock gives the lock back (once), even when ctx has ended.
func (r *runner) unlock(ctx context.Context) {
	l := r.lock
	if l == nil {
		return
	}
	r.lock = nil
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := l.Release(rctx); err != nil {
		r.em.emit(Event{Kind: EventUnlocked, Err: err, Detail: "the lock could not be given back; it expires with its session"})
		return
	}
	r.em.emit(Event{Kind: EventUnlocked, Detail: "upgrade lock " + l.Key + " released"})
}

func (r *runner) gateOptions(onWait func(cond planner.GateCheck, node, detail string)) GateOptions {
	return GateOptions{Timeout: r.cfg.GateTimeout, MaxInterval: r.cfg.GateMaxInterval, OnWaiting: onWait}
}

func (r *runner) run(ctx context.Context) error {
	r.em.emit(Event{Kind: EventRunStarted, Detail: "target " + r.cfg.Target})
	c, err := Discover(ctx, r.cfg.Consul)
	if err != nil {
		r.em.emit(Event{Kind: EventHalted, Err: err})
		return err
	}
	r.res.Cluster = c

	if r.cfg.DryRun {
		plan, err := planner.Plan(c, r.cfg.Target, r.cfg.Policy)
		r.res.Plan = plan
		if err != nil {
			r.em.emit(Event{Kind: EventHalted, Err: err})
			return err
		}
		r.em.emit(Event{Kind: EventDone, Detail: fmt.Sprintf("dry run: %d step(s) planned, nothing touched", len(plan.Steps))})
		return nil
	}

	// Decide once before measuring anything, so that a refused plan returns
	// having only read.
	step, err := planner.Next(c, r.cfg.Target, r.cfg.Policy)
	if err != nil {
		r.em.emit(Event{Kind: EventHalted, Err: err})
		return err
	}
	if lk, ok := r.cfg.Consul.(Locker); ok && !r.cfg.NoLock {
		lock, err := r.takeLock(ctx, lk)
		if err != nil {
			r.em.emit(Event{Kind: EventHalted, Err: err})
			return err
		}
		r.lock, r.lost = lock, lock.Lost
		defer r.unlock(ctx) // on every path; halt and done unlock first, so their event is the last
		// Another run may have acted between the first look and the lock:
		// look again, holding it.
		if c, err = Discover(ctx, r.cfg.Consul); err == nil {
			step, err = planner.Next(c, r.cfg.Target, r.cfg.Policy)
		}
		if err != nil {
			r.em.emit(Event{Kind: EventHalted, Err: err})
			return err
		}
		r.res.Cluster = c
	}
	r.base, err = MeasureBaseline(ctx, r.cfg.Consul)
	if err != nil {
		r.em.emit(Event{Kind: EventHalted, Err: err})
		return err
	}
	r.res.Baseline = r.base

	maxSteps := r.cfg.MaxSteps
	if maxSteps == 0 {
		maxSteps = DefaultMaxSteps
	}
	var prev *planner.Step
	for first := true; ; first = false {
		if !first {
			c, err = r.discover(ctx)
			if err != nil {
				return r.halt(&HaltError{Step: *prev, Err: fmt.Errorf("observe the cluster after the step: %w", err)})
			}
			c.SnapshotVersion = r.snapshot
			r.res.Cluster = c
			step, err = planner.Next(c, r.cfg.Target, r.cfg.Policy)
			if err != nil {
				return r.halt(&HaltError{Step: *prev, Err: fmt.Errorf("decide the step after: %w", err)})
			}
		}
		if step.Kind == planner.StepDone {
			r.unlock(ctx)
			r.em.emit(Event{Kind: EventDone, Step: step, Detail: fmt.Sprintf("%d step(s) done; every agent runs %s", len(r.res.Steps), r.cfg.Target)})
			return nil
		}
		if prev != nil && sameStep(*prev, step) {
			return r.halt(&HaltError{Step: step, Err: &StuckError{Step: step}})
		}
		select {
		case <-r.lost:
			return r.halt(&HaltError{Step: step, Err: fmt.Errorf("%w: its session was invalidated, so another run could now act on this cluster; nothing more is touched", ErrLockLost)})
		default:
		}
		if len(r.res.Steps) >= maxSteps {
			return r.halt(&HaltError{Step: step, Err: &StepLimitError{Max: maxSteps}})
		}
		rec, herr := r.do(ctx, c, step)
		if herr != nil {
			return r.halt(herr)
		}
		r.res.Steps = append(r.res.Steps, rec)
		s := step
		prev = &s
	}
}

func (r *runner) halt(h *HaltError) error {
	r.unlock(context.Background())
	r.em.emit(Event{Kind: EventHalted, Step: h.Step, Condition: gateCondition(h.Err), Err: h})
	return h
}

func gateCondition(err error) planner.GateCheck {
	var ge *GateError
	if errors.As(err, &ge) {
		return ge.Condition
	}
	return ""
}

// discover retries Discover for a while: right after a server swap the API
// may answer "no cluster leader" for a moment.
func (r *runner) discover(ctx context.Context) (planner.Cluster, error) {
	timeout := r.cfg.GateTimeout
	if timeout <= 0 {
		timeout = DefaultGateTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 250 * time.Millisecond
	b.MaxInterval = DefaultGateMaxInterval
	if r.cfg.GateMaxInterval > 0 {
		b.MaxInterval = r.cfg.GateMaxInterval
	}
	b.MaxElapsedTime = 0
	var c planner.Cluster
	var last error
	err := backoff.Retry(func() error {
		var err error
		c, err = Discover(dctx, r.cfg.Consul)
		if err != nil {
			last = err
		}
		return err
	}, backoff.WithContext(b, dctx))
	if err != nil && last != nil {
		return c, last
	}
	return c, err
}

// do acts on one step and gates it; on failure it rolls back if asked to.
func (r *runner) do(ctx context.Context, c planner.Cluster, step planner.Step) (StepRecord, *HaltError) {
	rec := StepRecord{Step: step, Started: time.Now()}
	r.em.emit(Event{Kind: EventStepStarted, Step: step, Detail: step.Reason})

	var failed []string
	var err error
	switch step.Kind {
	case planner.StepSnapshot:
		var info SnapshotInfo
		info, err = saveSnapshot(ctx, r.cfg.Consul, r.cfg.Snapshot, step.From)
		if err == nil {
			rec.Snapshot = &info
			r.snapshot = step.From
			r.em.emit(Event{Kind: EventSnapshotSaved, Step: step, Detail: fmt.Sprintf("snapshot of %s verified: raft index %d, term %d, state.bin %d bytes", step.From, info.Index, info.Term, info.StateSize)})
		}
	case planner.StepSwapServer:
		err = r.cfg.Transport.Swap(ctx, transport.SwapRequest{
			Node: step.Node, Role: transport.RoleServer, From: step.From, To: step.To,
			StopMode: transport.StopMode(step.StopMode),
		})
		if err != nil {
			failed = []string{step.Node}
		}
	case planner.StepTransferLeader:
		err = r.transferLeader(ctx, step)
	case planner.StepSwapClients:
		failed, err = r.swapClients(ctx, c, step)
	default:
		err = fmt.Errorf("step kind %q is not one the runner can carry out (known: snapshot, swap-server, transfer-leader, swap-clients)", step.Kind)
	}
	if err != nil {
		return rec, r.fail(ctx, step, err, failed)
	}

	opt := r.gateOptions(func(cond planner.GateCheck, node, detail string) {
		r.em.emit(Event{Kind: EventGateWaiting, Step: step, Condition: cond, Detail: detail})
	})
	opt.Since = time.Now() // the swapped agent has just started: stability counts from here
	gerr := Gate(ctx, r.cfg.Consul, step, r.base, opt)
	if gerr != nil {
		var ge *GateError
		if errors.As(gerr, &ge) && ge.Node != "" && (step.Kind == planner.StepSwapServer || step.Kind == planner.StepSwapClients) {
			failed = []string{ge.Node}
		}
		return rec, r.fail(ctx, step, gerr, failed)
	}
	rec.Ended = time.Now()
	r.em.emit(Event{Kind: EventStepDone, Step: step, Detail: fmt.Sprintf("gate passed after %s", rec.Ended.Sub(rec.Started).Round(time.Millisecond))})
	return rec, nil
}

func (r *runner) transferLeader(ctx context.Context, step planner.Step) error {
	raft, err := r.cfg.Consul.RaftConfiguration(ctx)
	if err != nil {
		return err
	}
	members, err := r.cfg.Consul.Members(ctx)
	if err != nil {
		return err
	}
	rs := raftServerByName(raft, members, step.Target)
	if rs == nil {
		return fmt.Errorf("transfer leadership to %s: it is not in the raft configuration; wait until it has rejoined", step.Target)
	}
	if !rs.Voter {
		return fmt.Errorf("transfer leadership to %s: it is a non-voter; wait until autopilot promotes it", step.Target)
	}
	return r.cfg.Consul.TransferLeader(ctx, rs.ID)
}

// swapClients swaps a wave with bounded concurrency. After the first failure
// no new swap is started; swaps in flight are let finish.
func (r *runner) swapClients(ctx context.Context, c planner.Cluster, step planner.Step) ([]string, error) {
	n := r.cfg.ClientConcurrency
	if n <= 0 || n > len(step.Nodes) {
		n = len(step.Nodes)
	}
	from := map[string]string{}
	for _, cl := range c.Clients {
		from[cl.Name] = cl.Version
	}
	var (
		mu     sync.Mutex
		failed []string
		errs   []error
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, max(n, 1))
	for _, node := range step.Nodes {
		sem <- struct{}{}
		mu.Lock()
		stop := len(errs) > 0
		mu.Unlock()
		if stop {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v := step.From
			if v == "" {
				v = from[node]
			}
			err := r.cfg.Transport.Swap(ctx, transport.SwapRequest{
				Node: node, Role: transport.RoleClient, From: v, To: step.To,
				StopMode: transport.StopMode(step.StopMode),
			})
			if err != nil {
				mu.Lock()
				failed = append(failed, node)
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed, errors.Join(errs...)
}

// fail builds the HaltError for a failed step, rolling back the failed
// nodes first when the config asks for it.
func (r *runner) fail(ctx context.Context, step planner.Step, err error, failed []string) *HaltError {
	h := &HaltError{Step: step, Err: err}
	if !r.cfg.Rollback || len(failed) == 0 {
		return h
	}
	rb, ok := r.cfg.Transport.(transport.Rollbacker)
	if !ok {
		return h
	}
	for _, node := range failed {
		if rerr := rb.Rollback(ctx, node); rerr != nil {
			h.RollbackErr = fmt.Errorf("roll back %s: %w", node, rerr)
			r.em.emit(Event{Kind: EventRolledBack, Step: step, Detail: "rollback of " + node + " failed", Err: h.RollbackErr})
			return h
		}
	}
	// Wait until the cluster is healthy again around the rolled-back nodes.
	check := planner.Step{Kind: step.Kind, Node: step.Node, Nodes: failed, From: step.To, To: step.From, Datacenter: step.Datacenter, Hop: step.Hop}
	if step.Kind == planner.StepSwapServer {
		check.Gate = []planner.GateCheck{planner.GateLeaderKnown, planner.GateVoter, planner.GateAutopilotHealthy}
		if step.From != "" {
			check.Gate = slices.Insert(check.Gate, 1, planner.GateVersion)
		}
	} else {
		check.Gate = []planner.GateCheck{planner.GateSerfAlive}
	}
	if gerr := Gate(ctx, r.cfg.Consul, check, r.base, r.gateOptions(func(cond planner.GateCheck, node, detail string) {
		r.em.emit(Event{Kind: EventGateWaiting, Step: check, Condition: cond, Detail: "after rollback: " + detail})
	})); gerr != nil {
		h.RollbackErr = fmt.Errorf("rolled back %v but the cluster did not become healthy: %w", failed, gerr)
		r.em.emit(Event{Kind: EventRolledBack, Step: step, Detail: "cluster not healthy after rollback", Err: h.RollbackErr})
		return h
	}
	h.RolledBack = true
	h.RolledBackNodes = failed
	r.em.emit(Event{Kind: EventRolledBack, Step: step, Detail: fmt.Sprintf("rolled back %v; leader known and the node(s) healthy again", failed)})
	return h
}

// sameStep reports whether two steps would do the same thing.
func sameStep(a, b planner.Step) bool {
	return a.Kind == b.Kind && a.Node == b.Node && a.Target == b.Target && a.To == b.To &&
		a.Datacenter == b.Datacenter && slices.Equal(a.Nodes, b.Nodes)
}
