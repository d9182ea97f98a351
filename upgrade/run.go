package upgrade

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/go-version"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// StepRecord is one step that was carried out and passed its gate.
type StepRecord struct {
	Step    planner.Step `json:"step"`
	Started time.Time    `json:"started"`
	Ended   time.Time    `json:"ended"`
	// Snapshot describes the verified archive of a snapshot step (the run's
	// own datacenter's, Config.Consul's).
	Snapshot *SnapshotInfo `json:"snapshot,omitempty"`
	// Snapshots holds the verified archive of every observed datacenter,
	// by datacenter name, for a snapshot step: each datacenter has a Raft
	// of its own, so each is saved and verified.
	Snapshots map[string]SnapshotInfo `json:"snapshots,omitempty"`
}

// Result is what a run did. Run returns it even with an error: it then holds
// what was done before the run stopped.
type Result struct {
	// Steps are the steps done, in order.
	Steps []StepRecord `json:"steps"`
	// Baseline is the cluster's health before the first step (zero for a
	// dry run), in the run's own datacenter (Config.Consul's).
	Baseline Baseline `json:"baseline"`
	// Baselines holds the baseline of every observed datacenter, by name:
	// the gates of a step compare against its datacenter's.
	Baselines map[string]Baseline `json:"baselines,omitempty"`
	// Cluster is the last cluster observed.
	Cluster planner.Cluster `json:"cluster"`
	// Plan is the preview of a dry run (nil otherwise).
	Plan *planner.UpgradePlan `json:"plan,omitempty"`
	// Stopped is true when the run ended cleanly before reaching the
	// target: Config.BeforeStep said StopHere, or Config.MaxSteps steps were
	// done. Run's error is then nil and nothing of the next step was
	// touched; a new run resumes there.
	Stopped bool `json:"stopped,omitempty"`
	// Remaining are the steps left when Stopped: the approved plan's from
	// the step not taken, else the plan of the cluster as last observed.
	Remaining []planner.Step `json:"remaining,omitempty"`
	// Touched is every node the run changed or may have changed, and how
	// far (see NodeTouch): empty when the run was refused, or halted,
	// before it acted on any node.
	Touched Touched `json:"touched"`
}

// Run upgrades the cluster behind cfg.Consul to cfg.Target, one step at a
// time: the loop of a Session (Open, then Next and Execute until Next says
// done, then Close), with cfg.BeforeStep asked before each step; a dry run
// (cfg.DryRun) returns the plan and touches nothing.
//
// A refused plan (*planner.RefusedError) is returned before anything is
// touched. So is a *PreflightError: after taking the lock and before the
// first action, a transport that is a transport.ArtifactChecker must find
// every binary the run will need on every node. A step that acted and
// failed (its act or its gate) halts the run with a *HaltError, one refused
// before it acted with a *StepRefusedError; nothing after it is touched
// (halt, never cascade). With cfg.Rollback, the failed node is rolled back
// through the transport first and Run waits until the cluster is healthy
// again; a server is not rolled back when stopping it would leave the
// other voters without a quorum (a *QuorumError in HaltError.RollbackErr). The package doc's
// table (# Errors) says what a program does with each error.
//
// With cfg.Plan, only the approved plan's steps are carried out; a cluster
// that diverged from it stops the run before the step with a
// *PlanDivergedError. cfg.BeforeStep is asked before each step. A run that
// reaches cfg.MaxSteps, or whose BeforeStep says StopHere, ends cleanly: a
// nil error and Result.Stopped, with the steps left in Result.Remaining;
// the next run resumes there. Abort ends it with an *AbortedError.
//
// Holding the lock, a run keeps a SwapRecord while it swaps a server. A
// run that finds one (a run died or halted during that swap) finishes that
// swap first, before it plans and without asking BeforeStep (see
// SwapRecord); a record it must not act on is refused with a
// *SwapRecordError, touching nothing. A resumed swap counts as a step done
// (Result.Steps, MaxSteps).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	res := &Result{}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	r := newRunner(cfg.withPlan(), res) // session.go
	err := r.run(ctx)
	res.Touched = r.touch.snapshot() // touched.go
	r.fillTouched(err)
	return res, err
}

func serverNames(c planner.Cluster) string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, s.Name)
	}
	return strings.Join(out, ", ")
}

type runner struct {
	cfg       Config
	em        emitter
	res       *Result
	base      Baseline            // the run's own datacenter's
	bases     map[string]Baseline // every observed datacenter's
	ownDC     string              // the datacenter of cfg.Consul's agent
	snapshot  string              // the version the last verified snapshot of this run was taken on
	lock      *Lock               // held from the first action until the run ends
	lost      <-chan struct{}
	planAt    int // with Config.Plan: the index of the plan's first step not yet done by this run
	planFirst int // with Config.Plan: the first step not done when the step at idx was decided (idx itself, unless the hop's servers came in another order)
	idx       int // the current step's index (StepInfo.Index)
	total     int // the current step's total (StepInfo.Total)
	estimate  int // without Config.Plan: the steps the plan at the start counted

	touch       touchLog      // the nodes this run touched (touched.go)
	gatedResume *planner.Step // a recorded swap found done, which this run only gated (swaprecord.go)

	// The session (session.go).
	prev    *planner.Step // the step done last (a resumed swap, then each step executed)
	opened  *decision     // the first step, decided by open and not yet handed out
	decided *decision     // the step next handed out last, not yet executed
	ended   error         // the error that ended the session
	closed  bool
	at      planner.Step // the step decided before open failed, for the halted event
	chosen  bool         // ExecuteStep's: the caller chose the step; open decides nothing

	pins map[string]*autopilotPin // autopilot's dead-server cleanup, by datacenter (autopilot.go)
	term termRead                 // the raft term before the step under way acted (gate_term.go)
}

// emit delivers ev, with the current step's index and total when it is
// about a step.
func (r *runner) emit(ctx context.Context, ev Event) {
	if ev.Step.Kind != "" && ev.Step.Kind != planner.StepDone && ev.Total == 0 {
		ev.Index, ev.Total = r.idx, r.total
	}
	r.em.emit(ctx, ev)
}

func (r *runner) takeLock(ctx context.Context, lk Locker) (*Lock, error) {
	key := r.cfg.LockKey
	if key == "" {
		key = DefaultLockKey
	}
	holder := r.holder()
	lock, err := lk.Lock(ctx, key, LockHolder{Holder: holder, Target: r.cfg.Target, Since: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	r.emit(ctx, Event{Kind: EventLocked, Detail: fmt.Sprintf("upgrade lock %s taken by %q", key, holder)})
	return lock, nil
}

// holder names the run: Config.LockHolder, or "consul-upgrade on <host>,
// pid <pid>".
func (r *runner) holder() string {
	if r.cfg.LockHolder != "" {
		return r.cfg.LockHolder
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("consul-upgrade on %s, pid %d", host, os.Getpid())
}

// unlock puts autopilot's CleanupDeadServers back (autopilot.go), then
// gives the lock back (once), even when ctx has ended, and returns what
// could not be restored or released.
func (r *runner) unlock(ctx context.Context) error {
	restoreErr := r.restoreAutopilot(ctx)
	l := r.lock
	if l == nil {
		return restoreErr
	}
	r.lock = nil
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := l.Release(rctx); err != nil {
		r.emit(ctx, Event{Kind: EventUnlocked, Err: err, Detail: "the lock could not be given back; it expires with its session"})
		return errors.Join(restoreErr, err)
	}
	r.emit(ctx, Event{Kind: EventUnlocked, Detail: "upgrade lock " + l.Key + " released"})
	return restoreErr
}

func (r *runner) gateOptions(onWait func(cond planner.GateCheck, node, detail string)) gateOptions {
	return gateOptions{Timeout: r.cfg.GateTimeout, MaxInterval: r.cfg.GateMaxInterval, OnWaiting: onWait, ServerAPI: r.cfg.ServerAPI}
}

// consul is the Consul of datacenter dc: its entry in cfg.Datacenters, else
// cfg.Consul (the run's own datacenter, and steps of every datacenter).
func (r *runner) consul(dc string) Consul {
	if c, ok := r.cfg.Datacenters[dc]; ok {
		return c
	}
	return r.cfg.Consul
}

// baseline is the baseline of datacenter dc (the own one's by default).
func (r *runner) baseline(dc string) Baseline {
	if b, ok := r.bases[dc]; ok {
		return b
	}
	return r.base
}

// datacenters lists the observed datacenters: the run's own first, then
// those of cfg.Datacenters by name.
func (r *runner) datacenters() []string {
	others := slices.Sorted(maps.Keys(r.cfg.Datacenters))
	return append([]string{r.ownDC}, others...)
}

// observe discovers the run's own datacenter and every datacenter of
// cfg.Datacenters, and merges them into one cluster.
func (r *runner) observe(ctx context.Context) (planner.Cluster, error) {
	c, own, err := discover(ctx, r.cfg.Consul)
	if err != nil {
		return c, err
	}
	r.ownDC = own
	if len(r.cfg.Datacenters) == 0 {
		err = r.applyFeatures(ctx, &c) // features.go
		return c, err
	}
	if _, ok := r.cfg.Datacenters[own]; ok {
		return c, &ConfigError{Field: "Datacenters", Value: strconv.Quote(own),
			Problem: "names the datacenter of Config.Consul itself; list only the other datacenters of the federation"}
	}
	for _, dc := range r.datacenters()[1:] {
		o, got, err := discover(ctx, r.cfg.Datacenters[dc])
		if err != nil {
			return c, fmt.Errorf("datacenter %s: %w", dc, err)
		}
		if got != "" && got != dc {
			return c, &ConfigError{Field: "Datacenters", Value: strconv.Quote(dc),
				Problem: fmt.Sprintf("maps to an agent of datacenter %s; key each Consul by the name of its own datacenter", got)}
		}
		mergeDatacenter(&c, dc, o)
	}
	err = r.applyFeatures(ctx, &c)
	return c, err
}

// measure takes the baseline of every observed datacenter.
func (r *runner) measure(ctx context.Context) error {
	r.bases = map[string]Baseline{}
	for i, dc := range r.datacenters() {
		b, err := MeasureBaseline(ctx, r.consul(dc))
		if err != nil {
			if len(r.cfg.Datacenters) > 0 {
				err = fmt.Errorf("datacenter %s: %w", dc, err)
			}
			return err
		}
		if r.cfg.StabilizationTime > 0 {
			b.ServerStabilizationTime = r.cfg.StabilizationTime
		}
		if i == 0 {
			r.base = b
		}
		r.bases[dc] = b
	}
	r.res.Baseline, r.res.Baselines = r.base, r.bases
	return nil
}

// run is Run: a dry run, or the Session's loop (session.go) with
// approvals, MaxSteps and the run's last event.
func (r *runner) run(ctx context.Context) error {
	if r.cfg.DryRun {
		return r.dryRun(ctx)
	}
	if err := r.open(ctx); err != nil {
		return r.halt(ctx, err)
	}
	maxSteps := r.cfg.MaxSteps
	if maxSteps == 0 {
		maxSteps = DefaultMaxSteps
	}
	for {
		step, err := r.next(ctx)
		if err != nil {
			return r.halt(ctx, err)
		}
		if step.Kind == planner.StepDone {
			r.unlock(ctx)
			r.emit(ctx, Event{Kind: EventDone, Step: step, Detail: fmt.Sprintf("%d step(s) done; every agent runs %s", len(r.res.Steps), r.cfg.Target)})
			return nil
		}
		if len(r.res.Steps) >= maxSteps {
			return r.stop(ctx, r.decided.c, step, fmt.Sprintf("stopped after %d step(s) (Config.MaxSteps); the next run resumes at step %d of %d: %s", len(r.res.Steps), r.idx+1, r.total, step))
		}
		if r.cfg.BeforeStep != nil {
			var stop bool
			step, stop, err = r.ask(ctx, step)
			if stop || err != nil {
				return err
			}
		}
		if _, err := r.execute(ctx, step); err != nil {
			return r.halt(ctx, err)
		}
	}
}

// dryRun observes the cluster and returns its plan, touching nothing.
func (r *runner) dryRun(ctx context.Context) error {
	r.emit(ctx, Event{Kind: EventRunStarted, Detail: "target " + r.cfg.Target})
	r.noteAbilities(ctx) // abilities.go
	c, err := r.observe(ctx)
	if err != nil {
		r.emit(ctx, Event{Kind: EventHalted, Err: err})
		return err
	}
	r.res.Cluster = c
	r.loadBackup(ctx)
	c.UnfinishedSwap = r.noteSwap(ctx) // the plan's basis records it
	plan, err := planner.Plan(r.withSnapshot(c), r.cfg.Target, r.cfg.Policy)
	r.res.Plan = plan
	if err != nil {
		r.emit(ctx, Event{Kind: EventHalted, Err: err})
		return err
	}
	if err := r.preflight(ctx, c, true); err != nil { // preflight.go: problems reported, not refused
		r.emit(ctx, Event{Kind: EventPreflight, Err: err, Detail: "pre-flight check not made"})
	}
	_ = r.agentConfigPreflight(ctx, c, true) // agentconfig.go: reported, not refused
	r.logAgePreflight(ctx, c)                // logage.go
	r.emit(ctx, Event{Kind: EventDone, Detail: fmt.Sprintf("dry run: %d step(s) planned, nothing touched", len(plan.Steps))})
	return nil
}

// decideFirst decides the first step of a run from c and, with an
// approved plan, checks c and the step against it.
func (r *runner) decideFirst(c planner.Cluster) (planner.Step, error) {
	c = r.withSnapshot(c)
	if r.cfg.Plan != nil {
		if err := r.cfg.Plan.CheckBasis(c); err != nil {
			return planner.Step{}, err // stale: nothing is touched
		}
		if err := checkPlanStart(r.cfg.Plan, c, r.cfg.Target); err != nil {
			return planner.Step{}, err
		}
	}
	step, err := planner.Next(c, r.cfg.Target, r.cfg.Policy)
	if err != nil || r.cfg.Plan == nil || step.Kind == planner.StepDone {
		return step, err
	}
	r.idx, r.planFirst, err = matchPlan(r.cfg.Plan, 0, c, step)
	r.total = len(r.cfg.Plan.Steps) // a halt before the step names its place
	return step, err
}

// withSnapshot is c with the version of the run's last verified backup.
func (r *runner) withSnapshot(c planner.Cluster) planner.Cluster {
	if r.snapshot != "" {
		c.SnapshotVersion = r.snapshot
	}
	return c
}

// position sets r.idx and r.total for step: its index in the approved plan
// (checking that it is the plan's next step not yet done), else the number
// of steps this run has done.
func (r *runner) position(c planner.Cluster, step planner.Step) error {
	if p := r.cfg.Plan; p != nil {
		if err := p.CheckBasis(c); err != nil {
			return err // stale: nothing of the step is touched
		}
		i, first, err := matchPlan(p, r.planAt, r.withSnapshot(c), step)
		if err != nil {
			return err
		}
		r.idx, r.planFirst, r.total = i, first, len(p.Steps)
		return nil
	}
	r.idx = len(r.res.Steps)
	r.total = max(r.estimate, r.idx+1)
	return nil
}

// GateWaitingRepeat is how often Run reports again a gate that waits for
// an unchanged reason (EventGateWaiting, with Event.Waited).
const GateWaitingRepeat = 15 * time.Second

// approvalReobserve is how long an approval may take before the cluster is
// observed again and the step decided anew.
const approvalReobserve = 10 * time.Second

// ask asks Config.BeforeStep about step, the Session's decision. It returns
// the step to carry out, or stop with the run's error (nil for a clean
// stop). An approval that took a while is followed by a new decision, kept
// as the Session's, and a step that changed is asked about again.
func (r *runner) ask(ctx context.Context, step planner.Step) (planner.Step, bool, error) {
	for {
		asked := time.Now()
		info := StepInfo{Index: r.idx, Total: r.total, Step: step}
		dec, err := r.cfg.BeforeStep(ctx, info)
		switch {
		case err == nil && dec == StopHere:
			return step, true, r.stop(ctx, r.decided.c, step, fmt.Sprintf("stopped before step %d of %d (BeforeStep said stop here): %s", r.idx+1, r.total, step))
		case err == nil && dec == Approve:
		case err == nil && dec == Abort:
			return step, true, r.abort(ctx, &AbortedError{Index: r.idx, Total: r.total, Step: step})
		case err == nil:
			return step, true, r.abort(ctx, &AbortedError{Index: r.idx, Total: r.total, Step: step, Err: fmt.Errorf("BeforeStep returned %v, which is not Approve, StopHere or Abort", dec)})
		default:
			return step, true, r.abort(ctx, &AbortedError{Index: r.idx, Total: r.total, Step: step, Err: err})
		}
		if time.Since(asked) < approvalReobserve {
			r.decided.at = time.Now() // approved now: Execute acts on it without observing again
			return step, false, nil
		}
		// The approval took a while: the cluster may have moved.
		c2, err := r.discover(ctx)
		if err != nil {
			return step, true, r.halt(ctx, refuse(step, fmt.Errorf("observe the cluster after the approval: %w", err)))
		}
		r.res.Cluster = c2
		step2, err := planner.Next(r.withSnapshot(c2), r.cfg.Target, r.cfg.Policy)
		if err != nil {
			return step, true, r.halt(ctx, refuse(step, fmt.Errorf("decide the step after the approval: %w", err)))
		}
		r.decided = &decision{c: c2, step: step2, at: time.Now()}
		if sameStep(step, step2) {
			return step2, false, nil
		}
		if step2.Kind == planner.StepDone {
			return step2, true, r.stop(ctx, c2, step2, "the cluster reached the target while the step was being approved")
		}
		if err := r.position(c2, step2); err != nil {
			return step2, true, r.halt(ctx, refuse(step2, err))
		}
		step = step2 // ask again about the new step
	}
}

// stop ends the run cleanly before step: Result.Stopped, the steps left in
// Result.Remaining, the lock given back, a stopped event.
func (r *runner) stop(ctx context.Context, c planner.Cluster, step planner.Step, why string) error {
	r.res.Stopped = true
	switch {
	case step.Kind == planner.StepDone:
	case r.cfg.Plan != nil:
		r.res.Remaining = slices.Clone(r.cfg.Plan.Steps[min(r.idx, r.planFirst):])
	default:
		if p, err := planner.Plan(r.withSnapshot(c), r.cfg.Target, r.cfg.Policy); err == nil {
			r.res.Remaining = p.Steps
		} else {
			r.res.Remaining = []planner.Step{step}
		}
	}
	r.unlock(ctx)
	r.emit(ctx, Event{Kind: EventStopped, Step: step, Detail: why})
	return nil
}

func (r *runner) abort(ctx context.Context, e *AbortedError) error {
	r.fillTouched(e)
	r.unlock(ctx)
	r.emit(ctx, Event{Kind: EventHalted, Step: e.Step, Err: e})
	return e
}

// halt ends the run on err: the record into err, the lock given back, a
// halted event naming the step concerned.
func (r *runner) halt(ctx context.Context, err error) error {
	r.fillTouched(err)
	r.unlock(ctx)
	var (
		h  *HaltError
		sr *StepRefusedError
		pd *PlanDivergedError
	)
	var step planner.Step
	switch {
	case errors.As(err, &h):
		step = h.Step
	case errors.As(err, &sr):
		step = sr.Step
	case errors.As(err, &pd):
		step = pd.Got
	default:
		step = r.at
	}
	r.emit(ctx, Event{Kind: EventHalted, Step: step, Condition: gateCondition(err), Err: err})
	return err
}

func gateCondition(err error) planner.GateCheck {
	var ge *GateError
	if errors.As(err, &ge) {
		return ge.Condition
	}
	return ""
}

// discover retries observe for a while: right after a server swap the API
// may answer "no cluster leader" for a moment. A config error is not
// retried.
// refusalSettle bounds how long a plan refused right after a step whose
// gate passed is observed again before the run halts.
const refusalSettle = 30 * time.Second

// decideAfter observes the cluster after prev and decides the next step. A
// plan refused right after a gate passed is usually a moment's churn (a
// new leader's autopilot rebuilding its view of server health reports
// every server unhealthy for a moment): the cluster is observed again for
// up to refusalSettle, and only a refusal that persists halts the run.
func (r *runner) decideAfter(ctx context.Context, prev planner.Step) (planner.Cluster, planner.Step, error) {
	deadline := time.Now().Add(refusalSettle)
	for {
		c, err := r.discover(ctx)
		if err != nil {
			return c, planner.Step{}, fmt.Errorf("observe the cluster after the step: %w", err)
		}
		c.SnapshotVersion = r.snapshot
		r.res.Cluster = c
		step, err := planner.Next(c, r.cfg.Target, r.cfg.Policy)
		var refused *planner.RefusedError
		if err == nil || !errors.As(err, &refused) || !time.Now().Before(deadline) {
			if err != nil {
				return c, step, fmt.Errorf("decide the step after: %w", err)
			}
			return c, step, nil
		}
		r.emit(ctx, Event{Kind: EventGateWaiting, Step: prev, Detail: fmt.Sprintf("the plan is refused right after the step; observing again for up to %s: %v", refusalSettle, err)})
		if !sleepCtx(ctx, 2*time.Second) {
			return c, step, fmt.Errorf("decide the step after: %w", errors.Join(err, ctx.Err()))
		}
	}
}

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
		c, err = r.observe(dctx)
		if err != nil {
			last = err
		}
		var ce *ConfigError
		if errors.As(err, &ce) {
			return backoff.Permanent(err)
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
	r.touch.beginStep()
	if err := r.canGate(c, step); err != nil {
		return rec, &HaltError{Step: step, Err: err} // before acting: nothing is touched
	}
	r.emit(ctx, Event{Kind: EventStepStarted, Step: step, Detail: step.Reason})
	r.term = r.termBefore(ctx, step) // gate_term.go: the raft term before the step acts

	if herr := r.keepLockOff(ctx, c, step); herr != nil {
		return rec, herr
	}
	var failed []string
	var err error
	switch step.Kind {
	case planner.StepSnapshot:
		rec.Snapshots, err = r.snapshotAll(ctx, step)
		if err == nil {
			own := rec.Snapshots[r.ownDC]
			rec.Snapshot = &own
			r.snapshot = step.From
			r.recordBackup(ctx, rec)
		}
	case planner.StepSwapServer:
		if err = r.pinAutopilot(ctx, step); err != nil { // autopilot.go
			break // nothing touched: no rollback
		}
		if err = r.quorumBeforeStop(ctx, step); err != nil {
			break // nothing touched: no rollback
		}
		if err = r.recordSwap(ctx, step); err != nil {
			break // nothing touched: no rollback
		}
		err = r.cfg.Transport.Swap(ctx, transport.SwapRequest{
			Node: step.Node, Role: transport.RoleServer, From: step.From, To: step.To,
			StopMode: step.StopMode, Progress: r.swapProgress(ctx, step, step.Node, transport.RoleServer, step.From, nil),
		})
		r.swapDone(step, step.Node, transport.RoleServer, step.From, err)
		if err != nil && r.touchedBySwap(step.Node) {
			failed = []string{step.Node} // a swap refused before the stop needs no rollback
		}
	case planner.StepAddServer:
		var node string
		node, err = r.provision(ctx, step)
		if node != "" {
			step.Node, rec.Step.Node = node, node // the gate and the record name the new server
			t := newTouch(step, r.idx, node, transport.RoleServer, "")
			t.Started = true
			r.touch.add(t)
			r.emit(ctx, Event{Kind: EventProvisioned, Step: step, Detail: fmt.Sprintf("new server %s provisioned on %s", node, step.To)})
		}
	case planner.StepRetireServer:
		t := newTouch(step, r.idx, step.Node, transport.RoleServer, step.From)
		t.Stopped, t.StopUncertain = true, true
		r.touch.add(t)
		if err = r.retire(ctx, step); err == nil {
			r.touch.update(step.Node, func(t *NodeTouch) { t.StopUncertain = false })
		}
	case planner.StepTransferLeader:
		err = r.transferLeader(ctx, step)
		var te *TransferError
		if err == nil || !errors.As(err, &te) || te.Attempts > 0 {
			r.touch.add(newTouch(step, r.idx, step.Node, transport.RoleServer, step.From))
		}
		if err == nil {
			// The elections the transfer's asks started are the step's
			// own (a target that lost one costs two, and the run asks
			// again): raft-term counts from the new leader's term.
			r.term = r.termBefore(ctx, step)
		}
	case planner.StepSwapClients:
		failed, err = r.swapClients(ctx, c, step)
	default:
		err = fmt.Errorf("step kind %q is not one the runner can carry out (known: snapshot, swap-server, transfer-leader, swap-clients, add-server, retire-server)", step.Kind)
	}
	if err != nil {
		return rec, r.fail(ctx, step, err, failed)
	}
	return r.gate(ctx, step, rec, failed)
}

// gate waits for step's gate after its act; on failure it rolls back if
// asked to. The swap record of a server swap is deleted once it passed.
func (r *runner) gate(ctx context.Context, step planner.Step, rec StepRecord, failed []string) (StepRecord, *HaltError) {
	var era Era
	gateStart := time.Now()
	opt := r.gateOptions(func(cond planner.GateCheck, node, detail string) {
		r.emit(ctx, Event{Kind: EventGateWaiting, Step: step, Node: node, Condition: cond, Era: era, Detail: detail, Waited: time.Since(gateStart)})
	})
	opt.OnEra = func(e Era) { era = e }
	opt.RepeatWaiting = GateWaitingRepeat
	opt.Since = gateStart   // the swapped agent has just started: stability counts from here
	opt.TermBefore = r.term // gate_term.go: withTermCheck adds raft-term
	opt.AgentGone = r.agentGone(step)
	gerr := awaitGate(ctx, r.consul(step.Datacenter), withTermCheck(step), r.baseline(step.Datacenter), opt)
	r.gated(gerr) // touched.go
	if gerr != nil {
		var ge *GateError
		if errors.As(gerr, &ge) && ge.Node != "" && (step.Kind == planner.StepSwapServer || step.Kind == planner.StepSwapClients) {
			failed = []string{ge.Node}
		}
		return rec, r.fail(ctx, step, gerr, failed)
	}
	rec.Ended = time.Now()
	if step.Kind == planner.StepSwapServer {
		r.forgetSwap(ctx, step)
	}
	detail := fmt.Sprintf("gate passed after %s", rec.Ended.Sub(rec.Started).Round(time.Millisecond))
	if era != "" {
		detail += " (" + era.Checks() + ")"
	}
	r.emit(ctx, Event{Kind: EventStepDone, Step: step, Era: era, Detail: detail})
	return rec, nil
}

// agentGone is the gate's AgentGone for a swap step whose transport reports
// running versions (transport.VersionReporter): a node of the step whose
// host says it has no running agent (transport.ErrNotRunning) is gone. Any
// other answer, including an error of the report itself, lets the gate wait.
func (r *runner) agentGone(step planner.Step) func(context.Context, string) error {
	host := r.hostCheck() // rollback_quorum.go
	if host == nil || (step.Kind != planner.StepSwapServer && step.Kind != planner.StepSwapClients) {
		return nil
	}
	return func(ctx context.Context, node string) error {
		if node != step.Node && !slices.Contains(step.Nodes, node) {
			return nil
		}
		return host(ctx, node)
	}
}

// errLockLost is the error of a run that finds its lock lost.
func errLockLost() error {
	return fmt.Errorf("%w: its session was invalidated, so another run could now act on this cluster; nothing more is touched", ErrLockLost)
}

// keepLockOff moves the run's lock off the nodes step is about to stop
// (see Lock.keepOff) to a server of the lock's datacenter that stays up,
// the leader when it can. A lock that the stop would lose and that could
// not be moved (*LockMoveError) halts the run before the step acts, and so
// does a lock found lost; any other move that could not be made is
// reported and the step goes on, as it would have without the move.
func (r *runner) keepLockOff(ctx context.Context, c planner.Cluster, step planner.Step) *HaltError {
	if r.lock == nil || (step.Datacenter != "" && step.Datacenter != r.ownDC) {
		return nil
	}
	var nodes []string
	switch step.Kind {
	case planner.StepSwapServer, planner.StepRetireServer:
		nodes = []string{step.Node}
	case planner.StepSwapClients:
		nodes = step.Nodes
	default:
		return nil
	}
	req := keepRequest{nodes: nodes}
	var addr string
	for _, s := range c.Servers {
		if s.Datacenter != "" && s.Datacenter != r.ownDC {
			continue
		}
		if v, err := planner.ParseVersion(s.Version); req.noTxn == "" && (err != nil || v.Core().LessThan(v07)) {
			req.noTxn = fmt.Sprintf("server %s runs %s, and a server before 0.7.0 crashes on a transaction", s.Name, orUnknown(s.Version))
		}
		if !s.Healthy || slices.Contains(nodes, s.Name) {
			continue
		}
		if req.to == "" || s.Leader {
			req.to, addr = s.Name, s.Address
		}
	}
	if serverAPI := r.cfg.ServerAPI; serverAPI != nil && req.to != "" {
		to := req.to
		req.via = func() (txnMover, error) {
			sc, err := serverAPI(to, addr)
			if err != nil {
				return nil, err
			}
			return movers(sc)
		}
	}
	moved, err := r.lock.keepOff(ctx, req)
	var lme *LockMoveError
	switch {
	case errors.As(err, &lme):
		r.emit(ctx, Event{Kind: EventLockMoved, Step: step, Err: err, Detail: "the upgrade lock could not be moved off the nodes this step stops, and the stop would lose it: the step is not started"})
		return &HaltError{Step: step, Err: err}
	case err != nil:
		r.emit(ctx, Event{Kind: EventLockMoved, Step: step, Err: err, Detail: "the upgrade lock could not be moved off the nodes this step stops; its session is not bound to their health, so the stop does not end it"})
	case moved.from != "":
		r.emit(ctx, Event{Kind: EventLockMoved, Step: step, Node: moved.to, Detail: fmt.Sprintf("the upgrade lock moved to a session on %s %s: its session was on %s, which this step stops", moved.to, moved.how, moved.from)})
	}
	select {
	case <-r.lost:
		return &HaltError{Step: step, Err: errLockLost()}
	default:
	}
	return nil
}

// quorumBeforeStop checks, before a server is stopped to be swapped, that
// the voters of the current Raft configuration that stay up still make a
// quorum without it (what a rollback checks, see quorumWithout), whatever
// the failure tolerance was when the run began: a server can die after the
// previous gate passed (autopilot can report a dead server healthy for
// several seconds) and autopilot's dead-server cleanup then removes it, or
// a voter can be down or unhealthy under a waived pre-check. Serf and
// autopilot are seconds behind a death (a follower killed 3.8 s before the
// stop was still alive and healthy in both, and the demo lost its quorum):
// where the transport reports running versions, the hosts of the voters
// counted up are asked too, and one with no agent running is not up. A
// refusal is a *QuorumError, with nothing touched. The datacenter's planned outage
// (its only voter; or two voters with no-spare-voter waived on a cluster
// that began so) is allowed and reported (EventPlannedOutage).
func (r *runner) quorumBeforeStop(ctx context.Context, step planner.Step) error {
	q, outage, ok, err := stopVerdict(ctx, r.consul(step.Datacenter), step.Node, r.dcName(step.Datacenter), r.spareWaived(), r.baseline(step.Datacenter).FailureTolerance, r.hostCheck())
	switch {
	case err != nil:
		return fmt.Errorf("%s not stopped: %w", step.Node, err)
	case !ok:
		return &QuorumError{Node: step.Node, Voters: q.Voters, Up: q.Up, NotRunning: q.NotRunning, Quorum: q.Quorum}
	}
	if outage != "" {
		r.emit(ctx, Event{Kind: EventPlannedOutage, Step: step, Detail: outage})
	}
	return nil
}

// snapshotAll saves and verifies a snapshot of every observed datacenter,
// the run's own first, and stops at the first that fails.
func (r *runner) snapshotAll(ctx context.Context, step planner.Step) (map[string]SnapshotInfo, error) {
	out := map[string]SnapshotInfo{}
	multi := len(r.cfg.Datacenters) > 0
	logical := backupKind(step) == planner.BackupLogical
	for _, dc := range r.datacenters() {
		var dest SnapshotSink
		open := func(ctx context.Context, dc, version string) (SnapshotSink, error) {
			w, err := r.cfg.Snapshot(ctx, dc, version)
			dest = w
			return w, err
		}
		savedTo := func(info *SnapshotInfo) string { // SnapshotDir's file, for the event and the record
			if f, ok := dest.(*fileSink); ok {
				info.Path = f.final
				return "; saved to " + f.final
			}
			return ""
		}
		where := ""
		if multi {
			where = "datacenter " + dc + ": "
		}
		if logical {
			info, err := saveLogicalBackup(ctx, r.consul(dc), open, dc, step.From)
			if err != nil {
				return out, fmt.Errorf("%s%w", where, err)
			}
			saved := savedTo(&info)
			out[dc] = info
			reread := "verified before writing (the destination cannot be read back)"
			if info.Reread {
				reread = "read back and verified"
			}
			r.emit(ctx, Event{Kind: EventSnapshotSaved, Step: step, Detail: fmt.Sprintf("%slogical backup of %s (%s has no snapshot API): %d keys, %d ACL tokens at index %d, sha256 %s, %s; it cannot restore %s%s",
				where, step.From, step.From, info.Keys, info.ACLTokens, info.Index, info.SHA256, reread, planner.LogicalBackupOmits, saved)})
			continue
		}
		info, err := saveSnapshot(ctx, r.consul(dc), open, dc, step.From)
		if err != nil {
			return out, fmt.Errorf("%s%w", where, err)
		}
		saved := savedTo(&info)
		out[dc] = info
		r.emit(ctx, Event{Kind: EventSnapshotSaved, Step: step, Detail: fmt.Sprintf("%ssnapshot of %s verified: raft index %d, term %d, state.bin %d bytes%s", where, step.From, info.Index, info.Term, info.StateSize, saved)})
	}
	return out, nil
}

// backupKind is the backup a snapshot step takes: the planner's choice, or,
// for a step recorded before the planner named one, the snapshot API from
// 0.7.1 and a logical backup below.
func backupKind(step planner.Step) planner.BackupKind {
	if step.Backup != "" {
		return step.Backup
	}
	if v, err := version.NewVersion(step.From); err == nil && v.Core().LessThan(v071) {
		return planner.BackupLogical
	}
	return planner.BackupSnapshot
}

var v071 = version.Must(version.NewVersion("0.7.1"))

// clientConcurrency is the bound of swaps in flight in a wave of size
// wave: Config.ClientConcurrency, else DefaultClientConcurrencyPercent of
// the wave (rounded up, at least 1).
func clientConcurrency(cfg int, wave int) int {
	n := cfg
	if n <= 0 {
		n = (wave*DefaultClientConcurrencyPercent + 99) / 100
	}
	return max(min(n, wave), 1)
}

// swapClients swaps a wave with bounded concurrency, reporting each
// client's swap (node-swapped). After the first failure no new swap is
// started; swaps in flight are let finish.
func (r *runner) swapClients(ctx context.Context, c planner.Cluster, step planner.Step) ([]string, error) {
	n := clientConcurrency(r.cfg.ClientConcurrency, len(step.Nodes))
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
	sem := make(chan struct{}, n)
	swapped := 0
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
				StopMode: step.StopMode, Progress: r.swapProgress(ctx, step, node, transport.RoleClient, v, &mu),
			})
			r.swapDone(step, node, transport.RoleClient, v, err)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if r.touchedBySwap(node) {
					failed = append(failed, node) // one refused before the stop needs no rollback
				}
				errs = append(errs, err)
				r.emit(ctx, Event{Kind: EventNodeSwapped, Step: step, Node: node, Err: err, Detail: fmt.Sprintf("client %s: swap %s -> %s failed; no new swap of the wave is started", node, orUnknown(v), step.To)})
				return
			}
			swapped++
			r.emit(ctx, Event{Kind: EventNodeSwapped, Step: step, Node: node, Detail: fmt.Sprintf("client %s swapped %s -> %s (%d of %d in the wave)", node, orUnknown(v), step.To, swapped, len(step.Nodes))})
		}()
	}
	wg.Wait()
	return failed, errors.Join(errs...)
}

// fail builds the HaltError for a failed step, rolling back the failed
// nodes first when the config asks for it. The rollback (the quorum check,
// the transport's Rollback and the gate after it) runs under
// rollbackContext, so a cancelled run still rolls back; its outcome is in
// the HaltError and a rolled-back event.
func (r *runner) fail(ctx context.Context, step planner.Step, err error, failed []string) (h *HaltError) {
	h = &HaltError{Step: step, Err: cancelled(ctx, err)}
	defer func() { r.rolledBack(h, failed) }() // the record's rollback outcomes (touched.go)
	if step.Kind == planner.StepAddServer {
		return r.failAdd(ctx, h)
	}
	if !r.cfg.Rollback || len(failed) == 0 {
		return h
	}
	rb, ok := r.cfg.Transport.(transport.Rollbacker)
	if !ok {
		return h
	}
	rctx, cancel := r.rollbackContext(ctx)
	defer cancel()
	note := afterCancel(ctx)
	for i, node := range failed {
		if step.Kind == planner.StepSwapServer {
			outage, qerr := quorumWithout(rctx, r.consul(step.Datacenter), node, r.dcName(step.Datacenter), r.spareWaived(), r.baseline(step.Datacenter).FailureTolerance, r.hostCheck())
			if qerr != nil {
				h.RollbackErr = qerr
				what := " not attempted: the quorum check failed"
				if refused := (*QuorumError)(nil); errors.As(qerr, &refused) {
					what = " refused"
				}
				r.emit(ctx, Event{Kind: EventRolledBack, Step: step, Detail: "rollback of " + node + what + note, Err: qerr})
				return h
			}
			if outage != "" {
				r.emit(ctx, Event{Kind: EventPlannedOutage, Step: step, Detail: "rollback of " + node + ": " + outage})
			}
		}
		if rerr := r.rollbackNode(rctx, rb, step, node, h.Err); rerr != nil {
			h.RollbackErr = fmt.Errorf("roll back %s: %w", node, rerr)
			h.RolledBackNodes = failed[:i]
			r.emit(ctx, Event{Kind: EventRolledBack, Step: step, Detail: "rollback of " + node + " failed" + note, Err: h.RollbackErr})
			return h
		}
	}
	h.RolledBackNodes = failed
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
	if gerr := awaitGate(rctx, r.consul(step.Datacenter), check, r.baseline(step.Datacenter), r.gateOptions(func(cond planner.GateCheck, node, detail string) {
		r.emit(ctx, Event{Kind: EventGateWaiting, Step: check, Node: node, Condition: cond, Detail: "after rollback: " + detail})
	})); gerr != nil {
		h.RollbackErr = fmt.Errorf("rolled back %v but the cluster did not become healthy: %w", failed, gerr)
		r.emit(ctx, Event{Kind: EventRolledBack, Step: step, Detail: "cluster not healthy after rollback" + note, Err: h.RollbackErr})
		return h
	}
	h.RolledBack = true
	if step.Kind == planner.StepSwapServer {
		r.forgetSwap(rctx, step)
	}
	r.emit(ctx, Event{Kind: EventRolledBack, Step: step, Detail: fmt.Sprintf("rolled back %v; leader known and the node(s) healthy again", failed) + note})
	return h
}

// sameStep reports whether two steps would do the same thing.
func sameStep(a, b planner.Step) bool {
	return a.Kind == b.Kind && a.Node == b.Node && a.Target == b.Target && a.To == b.To &&
		a.Datacenter == b.Datacenter && slices.Equal(a.Nodes, b.Nodes)
}

// provisioner is the transport as a transport.Provisioner (Config.Validate
// makes sure it is one under the replace strategy).
func (r *runner) provisioner(step planner.Step) (transport.Provisioner, error) {
	p, ok := r.cfg.Transport.(transport.Provisioner)
	if !ok {
		return nil, fmt.Errorf("%s needs a transport that implements transport.Provisioner, and %T does not", stepString(step), r.cfg.Transport)
	}
	return p, nil
}

// provision adds the new server of an add-server step and returns its name.
// When Provision fails, the transport has taken its half-started host down
// (the Provisioner contract); the cluster is as it was.
func (r *runner) provision(ctx context.Context, step planner.Step) (string, error) {
	p, err := r.provisioner(step)
	if err != nil {
		return "", err
	}
	node, err := p.Provision(ctx, transport.RoleServer, step.To)
	if err != nil {
		return node, fmt.Errorf("provision a new server on %s in %s: %w", step.To, orUnknown(step.Datacenter), err)
	}
	if node == "" {
		return "", fmt.Errorf("provision a new server on %s: the transport named no node", step.To)
	}
	return node, nil
}

// retire takes the old server of a retire-server step out of the cluster:
// the transport makes it leave gracefully and retires its host. A retired
// server is never brought back by the runner.
func (r *runner) retire(ctx context.Context, step planner.Step) error {
	p, err := r.provisioner(step)
	if err != nil {
		return err
	}
	if err := p.Retire(ctx, step.Node); err != nil {
		return fmt.Errorf("retire server %s: %w", step.Node, err)
	}
	return nil
}

// failAdd handles a failed add-server step. Without Config.Rollback, a new
// server that was provisioned but failed its gate stays (a resumed run
// counts it: it is on the new version, so the next step retires an old
// server). With Rollback, it is retired again and the run waits until a
// leader is known and the server is out of the raft configuration, so the
// cluster is as it was before the step.
func (r *runner) failAdd(ctx context.Context, h *HaltError) *HaltError {
	node := h.Step.Node
	if !r.cfg.Rollback || node == "" {
		return h
	}
	p, ok := r.cfg.Transport.(transport.Provisioner)
	if !ok {
		return h
	}
	rctx, cancel := r.rollbackContext(ctx)
	defer cancel()
	note := afterCancel(ctx)
	if err := p.Retire(rctx, node); err != nil {
		h.RollbackErr = fmt.Errorf("retire the new server %s again: %w", node, err)
		r.emit(ctx, Event{Kind: EventRolledBack, Step: h.Step, Detail: "retiring the new server " + node + " failed" + note, Err: h.RollbackErr})
		return h
	}
	h.RolledBackNodes = []string{node}
	check := h.Step
	check.Gate = []planner.GateCheck{planner.GateLeaderKnown, planner.GateRemoved}
	if gerr := awaitGate(rctx, r.consul(check.Datacenter), check, r.baseline(check.Datacenter), r.gateOptions(func(cond planner.GateCheck, node, detail string) {
		r.emit(ctx, Event{Kind: EventGateWaiting, Step: check, Node: node, Condition: cond, Detail: "after retiring the new server: " + detail})
	})); gerr != nil {
		h.RollbackErr = fmt.Errorf("retired the new server %s but the cluster did not settle: %w", node, gerr)
		r.emit(ctx, Event{Kind: EventRolledBack, Step: h.Step, Detail: "cluster not settled after retiring the new server" + note, Err: h.RollbackErr})
		return h
	}
	h.RolledBack = true
	r.emit(ctx, Event{Kind: EventRolledBack, Step: h.Step, Detail: fmt.Sprintf("retired the new server %s again; leader known and %s out of the raft configuration", node, node) + note})
	return h
}

// canGate refuses, before acting, a step whose gate could not be checked:
// in an era without autopilot health, a server's raft state is only in its
// own HTTP API, which needs Config.ServerAPI; before 0.7 it is read through
// that API's EraReader, which a ServerAPI wrapping its Consul the usual Go
// way would lose.
func (r *runner) canGate(c planner.Cluster, step planner.Step) error {
	era := r.baseline(step.Datacenter).Era
	if era == "" || era.Autopilot() {
		return nil
	}
	for _, cond := range step.Gate {
		switch cond {
		case planner.GateCommitIndex, planner.GateLastContact, planner.GateAutopilotHealthy, planner.GateStable, planner.GateTrailingLogs:
			if r.cfg.ServerAPI == nil {
				return &ConfigError{Field: "ServerAPI", Problem: fmt.Sprintf("is nil, and the gate of %s checks %s, which in the %s era (%s) needs each server's own HTTP API; set Config.ServerAPI, e.g. upgrade.ServerHTTP(8500)", stepString(step), cond, era, era.Checks())}
			}
			if era.RaftConfig() {
				return nil
			}
			return r.serverAPIReadsEra(c, step, cond)
		}
	}
	return nil
}

// serverAPIReadsEra checks that Config.ServerAPI gives, for a server of the
// step's datacenter, a Consul that implements EraReader.
func (r *runner) serverAPIReadsEra(c planner.Cluster, step planner.Step, cond planner.GateCheck) error {
	for _, s := range c.Servers {
		if !sameDC(s.Datacenter, step.Datacenter) {
			continue
		}
		sc, err := r.cfg.ServerAPI(s.Name, s.Address)
		if err != nil || sc == nil {
			continue // the gate reports a server it cannot reach
		}
		if _, ok := sc.(EraReader); !ok {
			return &ConfigError{Field: "ServerAPI", Value: fmt.Sprintf("%T", sc), Problem: fmt.Sprintf("gives for %s a Consul that does not implement upgrade.EraReader, and the gate of %s checks %s, which before 0.7 reads each server's state through it; return the Consul of upgrade.NewConsul or upgrade.ServerHTTP, or wrap it with upgrade.Intercept, which keeps its abilities", s.Name, stepString(step), cond)}
		}
		return nil
	}
	return nil
}
