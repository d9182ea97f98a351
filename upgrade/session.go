package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// Session is one upgrade of a cluster, carried out step by step by its
// caller: the loop Run runs, for embedders that drive it themselves
// (another orchestrator's loop, a controller's reconcile):
//
//	s, err := upgrade.Open(ctx, cfg)
//	if err != nil {
//		return err // refused, or a swap a dead run left could not be finished
//	}
//	defer s.Close(ctx)
//	for {
//		step, err := s.Next(ctx) // observe and decide
//		if err != nil {
//			return err
//		}
//		if step.Kind == planner.StepDone {
//			return nil
//		}
//		if _, err := s.Execute(ctx, step); err != nil { // act and gate
//			return err
//		}
//	}
//
// A Session keeps every guarantee of Run: the upgrade lock is taken by Open
// and held, without a gap, until Close; a swap an earlier run left
// unfinished (SwapRecord) is finished by Open before anything is decided;
// the backup of a hop is taken once (the Session carries the version of its
// last verified backup, and reads the one an earlier run recorded); an
// approved plan (Config.Plan) is checked before every step; a server is
// stopped only when the voters left up keep a quorum; and the nodes it
// touched are recorded (Result). A step passed to Execute must be the one
// the Session decides from the cluster as it is then (see Execute).
//
// A Session is not safe for concurrent use. Events (Config.OnEvent,
// Config.Logger) are those of Run, but for the run's end (done, halted,
// stopped), which the caller knows from what Next and Execute return.
type Session struct {
	r *runner
}

// Open validates cfg (Config.Validate), observes the cluster, refuses a plan
// the planner refuses or an approved plan the cluster no longer matches,
// takes the upgrade lock (unless cfg.NoLock), makes the pre-flight check,
// finishes a swap an earlier run left unfinished (see SwapRecord; it is
// then in Result.Steps and Result.Touched) and measures the baseline of
// every observed datacenter. Nothing is touched before the lock is held.
//
// BeforeStep, MaxSteps and DryRun are Run's and are refused (a Session's
// caller decides before each Execute, and stops when it wants to). An error
// returns no Session: the lock, if it was taken, is given back. The package
// doc's table (# Errors) says what a program does with each error.
func Open(ctx context.Context, cfg Config) (*Session, error) {
	err := cfg.Validate()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if cfg.BeforeStep != nil {
		errs = append(errs, &ConfigError{Field: "BeforeStep", Value: "set", Problem: "is asked by Run only: a Session's caller decides before each Execute; unset it, or use Run"})
	}
	if cfg.MaxSteps != 0 {
		errs = append(errs, &ConfigError{Field: "MaxSteps", Value: fmt.Sprint(cfg.MaxSteps), Problem: "bounds Run only: a Session's caller stops when it wants to (Close); unset it, or use Run"})
	}
	if cfg.DryRun {
		errs = append(errs, &ConfigError{Field: "DryRun", Value: "true", Problem: "is Run's: a Session acts; for a preview use Run with DryRun, or planner.Plan of Discover's cluster"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r := newRunner(cfg.withPlan(), &Result{})
	if err := r.open(ctx); err != nil {
		r.fillTouched(err)
		_ = r.unlock(ctx)
		return nil, err
	}
	return &Session{r: r}, nil
}

// Next observes the cluster (every observed datacenter, the backup records
// and the declared features) and decides the next step (planner.Next);
// planner.StepDone once every agent runs the target. It touches nothing.
// The step is checked as Run checks it: against the approved plan
// (*PlanDivergedError, *planner.StalePlanError), against the step done
// last (a step chosen again right after it succeeded: *StuckError), and the
// lock must still be held (ErrLockLost). Before it reports StepDone it
// makes sure the lock was not lost meanwhile, so a run that lost it during
// its last step does not report done; it then deletes the backup record.
//
// Such a refusal is a *StepRefusedError wrapping the reason; any error of
// Next ends the Session (see Execute).
func (s *Session) Next(ctx context.Context) (planner.Step, error) {
	return s.r.next(ctx)
}

// Execute carries out step and waits for its gate, under the lock held
// since Open: a verified backup (recorded next to the lock), a server swap
// with the stop mode the step names, a client wave with
// Config.ClientConcurrency, a leadership transfer, or an added or retired
// server. A failed act or gate returns a *HaltError, after a rollback when
// Config.Rollback is set; a step refused before it acted (the quorum
// check, a lock that cannot be kept, a backup that failed, ...) a
// *StepRefusedError. Either ends the Session: later calls of Next and
// Execute return an error wrapping it, and a new Session (Open) observes
// the cluster afresh and finishes a swap left unfinished. Nothing after a
// failed step is touched (halt, never cascade).
//
// step must be the step the Session decides now: the one Next returned
// (within a few seconds, else the cluster is observed again and the step
// decided anew), or one equal to it (planner.Next of the same cluster, say).
// Another step (a stale one, one of another cluster, one whose gate or stop
// mode was changed) is refused with a *PlanDivergedError saying what the
// cluster needs instead, before anything is touched; the Session goes on,
// and the caller asks Next again.
func (s *Session) Execute(ctx context.Context, step planner.Step) (StepRecord, error) {
	return s.r.execute(ctx, step)
}

// Close puts back autopilot's CleanupDeadServers where the Session turned
// it off (RuleAutopilotPinned) and gives the upgrade lock back, even when
// ctx has ended (each gets a context of its own). It is safe to call more
// than once; only the first call does it, and returns what could not be
// restored or released: a lock that could not be given back expires with
// its session, within twice its TTL.
// Next and Execute refuse to run after Close.
func (s *Session) Close(ctx context.Context) error {
	r := s.r
	if r.closed {
		return nil
	}
	r.closed = true
	return r.unlock(ctx)
}

// Result is what the Session did so far: the steps carried out
// (Result.Steps, a swap Open finished included), the baselines, the
// cluster last observed and every node touched (Result.Touched). Plan,
// Stopped and Remaining are Run's and stay zero.
func (s *Session) Result() *Result {
	res := *s.r.res
	res.Steps = append([]StepRecord(nil), res.Steps...)
	res.Touched = s.r.touch.snapshot()
	return &res
}

// StepRefusedError is a step that Run or a Session did not act on: refused,
// or not decided, before anything of it was touched. Err says why: the
// quorum check (*QuorumError), a lock that cannot be kept
// (*LockMoveError) or was lost (ErrLockLost), the approved plan
// (*PlanDivergedError, *planner.StalePlanError), a plan refused after a step
// (*planner.RefusedError), a step chosen again (*StuckError), a gate that
// cannot be checked (*ConfigError), the gate of a swap a dead run left done
// (*GateError: the server is as that run left it), a backup that failed, a
// transport that refused the step before it touched a node, or a cluster
// that could not be observed. Steps before it may have touched nodes: Touched
// is everything the run touched (empty when it touched nothing).
type StepRefusedError struct {
	// Step is the step not acted on; its Kind is "" when none could be
	// decided (the cluster could not be observed, or the planner refused
	// it), and planner.StepDone when the run could not report done.
	Step    planner.Step
	Err     error
	Touched Touched
}

func (e *StepRefusedError) Error() string {
	what := "before the next step"
	if e.Step.Kind != "" {
		what = "before " + stepString(e.Step)
	}
	msg := fmt.Sprintf("upgrade stopped %s: %v; nothing of that step was touched", what, e.Err)
	if len(e.Touched) > 0 {
		msg += fmt.Sprintf(" [touched by this run: %s]", e.Touched.Summary())
	}
	return msg
}

func (e *StepRefusedError) Unwrap() error { return e.Err }

// decision is a step decided from a cluster, at a time.
type decision struct {
	c    planner.Cluster
	step planner.Step
	at   time.Time
}

// fresh reports whether d may still be acted on without observing the
// cluster again.
func (d *decision) fresh() bool { return d != nil && time.Since(d.at) < approvalReobserve }

func newRunner(cfg Config, res *Result) *runner {
	return &runner{cfg: cfg, em: emitter{on: cfg.OnEvent, log: cfg.Logger}, res: res}
}

// open is everything before the first step: observe, decide a first time
// (a refusal returns having only read), lock, observe again holding the
// lock, pre-flight, finish a recorded swap, decide, measure. The decision is
// kept for the first next. Errors are returned as they are; the caller
// gives the lock back.
func (r *runner) open(ctx context.Context) error {
	r.emit(ctx, Event{Kind: EventRunStarted, Detail: "target " + r.cfg.Target})
	r.noteAbilities(ctx) // abilities.go
	c, err := r.observe(ctx)
	if err != nil {
		return err
	}
	r.res.Cluster = c
	r.loadBackup(ctx)

	// Decide once before measuring anything, so that a refused plan (or a
	// cluster that diverged from the approved one) returns having only
	// read. But a swap record (swaprecord.go) is a server swap that a run
	// which died left half done, and the planner would refuse the cluster
	// it left (a server down): the run then takes the lock first and
	// finishes that swap before it plans.
	var step planner.Step
	if !r.peekSwap(ctx) && !r.chosen {
		step, err = r.decideFirst(c)
		r.at = step
		if err != nil {
			return err
		}
	}
	if lk, ok := r.cfg.Consul.(Locker); ok && !r.cfg.NoLock {
		lock, err := r.takeLock(ctx, lk)
		if err != nil {
			return err
		}
		r.lock, r.lost = lock, lock.Lost
		// Another run may have acted between the first look and the lock:
		// look again, holding it.
		var resumed *StepRecord
		if c, err = r.observe(ctx); err != nil {
			return err
		}
		r.res.Cluster = c
		if err = r.preflightUnlessChosen(ctx, c); err != nil { // preflight.go: before the first action
			return err
		}
		if resumed, err = r.resumeSwap(ctx, c); err != nil {
			var h *HaltError
			if errors.As(err, &h) {
				return r.classify(h)
			}
			return err
		}
		r.loadBackup(ctx)
		switch {
		case resumed != nil:
			r.res.Steps = append(r.res.Steps, *resumed)
			r.prev = &resumed.Step
		case r.gatedResume != nil:
			// A recorded swap found done was gated: decide from the
			// cluster after that gate, not from the one seen before it.
			r.prev = r.gatedResume
		}
		switch {
		case r.chosen && r.prev != nil:
			if c, err = r.discover(ctx); err != nil {
				return refuse(planner.Step{}, fmt.Errorf("after finishing %s: observe the cluster: %w", stepString(*r.prev), err))
			}
		case r.chosen:
		case r.prev != nil:
			if c, step, err = r.decideAfter(ctx, *r.prev); err != nil {
				return refuse(planner.Step{}, fmt.Errorf("after finishing %s: %w", stepString(*r.prev), err))
			}
		default:
			if step, err = r.decideFirst(c); err != nil {
				return err
			}
		}
	} else if err = r.preflightUnlessChosen(ctx, c); err != nil { // preflight.go: no lock, before the first action
		r.at = planner.Step{}
		return err
	}
	r.at = planner.Step{}
	if err = r.measure(ctx); err != nil {
		return err
	}
	if r.cfg.Plan == nil && !r.chosen {
		if p, perr := planner.Plan(r.withSnapshot(c), r.cfg.Target, r.cfg.Policy); perr == nil {
			r.estimate = len(r.res.Steps) + len(p.Steps) // a resumed swap is done already
		}
	}
	r.opened = &decision{c: c, step: step, at: time.Now()}
	return nil
}

// preflightUnlessChosen is the pre-flight of the path to the target (the
// binaries, then the agents' configuration), but for a step the caller
// chose (ExecuteStep), whose swap checks its own binary.
func (r *runner) preflightUnlessChosen(ctx context.Context, c planner.Cluster) error {
	if r.chosen {
		return nil
	}
	if err := r.preflight(ctx, c, false); err != nil {
		return err
	}
	if err := r.agentConfigPreflight(ctx, c, false); err != nil { // agentconfig.go
		return err
	}
	r.logAgePreflight(ctx, c) // logage.go: a warning at most
	return nil
}

// ExecuteStep carries out one step the caller chose itself rather than one
// a Session decided: a server restarted in place (From equal to To), say,
// or a step another orchestrator planned. It is Open (the lock, a swap an
// earlier run left unfinished finished first, the baseline), the step as
// Execute carries it out (the quorum check before a stop, the swap record,
// the gate, the rollback cfg.Rollback asks for), and Close; but the step is
// not checked against the planner's decision, nor the path's binaries
// (its swap checks its own): the caller answers for it. A step naming a
// server the cluster does not have is refused before anything is touched.
// cfg is validated as for Run, Target may be "" (the step's To is used), and
// cfg.Plan, BeforeStep and MaxSteps do not apply. To run an upgrade step by
// step, use a Session: ExecuteStep takes the lock and measures the baseline
// anew for each step.
func ExecuteStep(ctx context.Context, cfg Config, step planner.Step) (StepRecord, error) {
	rec := StepRecord{Step: step}
	if cfg.Target == "" && cfg.Plan == nil {
		cfg.Target = step.To
	}
	if err := cfg.Validate(); err != nil {
		return rec, err
	}
	if cfg.DryRun {
		return rec, &ConfigError{Field: "DryRun", Value: "true", Problem: "does not apply to ExecuteStep, which acts; for a preview use Run with DryRun"}
	}
	cfg = cfg.withPlan()
	cfg.Plan, cfg.BeforeStep, cfg.MaxSteps = nil, nil, 0
	r := newRunner(cfg, &Result{})
	r.chosen = true
	if !executable(step.Kind) {
		return rec, refuse(step, fmt.Errorf("step kind %q is not one that can be carried out (known: snapshot, swap-server, transfer-leader, swap-clients, add-server, retire-server)", step.Kind))
	}
	if err := r.open(ctx); err != nil {
		r.fillTouched(err)
		_ = r.unlock(ctx)
		return rec, err
	}
	defer r.unlock(ctx)
	c := r.opened.c
	if err := stepNodesKnown(c, step); err != nil {
		err = refuse(step, err)
		r.fillTouched(err)
		return rec, err
	}
	rec, h := r.do(ctx, c, step)
	if h != nil {
		err := r.classify(h)
		r.fillTouched(err)
		return rec, err
	}
	return rec, nil
}

// executable reports whether a step of kind k can be carried out.
func executable(k planner.StepKind) bool {
	switch k {
	case planner.StepSnapshot, planner.StepSwapServer, planner.StepTransferLeader, planner.StepSwapClients, planner.StepAddServer, planner.StepRetireServer:
		return true
	}
	return false
}

// stepNodesKnown refuses a step that names a server the cluster does not
// have.
func stepNodesKnown(c planner.Cluster, step planner.Step) error {
	has := func(name string) bool {
		return slices.ContainsFunc(c.Servers, func(s planner.Server) bool { return s.Name == name })
	}
	var names []string
	switch step.Kind {
	case planner.StepSwapServer, planner.StepRetireServer:
		names = []string{step.Node}
	case planner.StepTransferLeader:
		names = []string{step.Node, step.Target}
	}
	for _, n := range names {
		if !has(n) {
			return fmt.Errorf("server %q of %s is not in the cluster (servers: %s); decide the step again from the cluster as it is (planner.Next)", n, step, serverNames(c))
		}
	}
	return nil
}

// usable refuses a call on a Session that was closed or ended.
func (r *runner) usable() error {
	switch {
	case r.closed:
		return errors.New("the upgrade session is closed; open a new one (upgrade.Open) to go on")
	case r.ended != nil:
		return fmt.Errorf("the upgrade session ended: %w; open a new one (upgrade.Open), which observes the cluster afresh", r.ended)
	}
	return nil
}

// end ends the Session with err and puts the record into err.
func (r *runner) end(err error) error {
	r.fillTouched(err)
	r.ended = err
	return err
}

// next is Session.Next: the step open decided when it is still fresh,
// else a new decision.
func (r *runner) next(ctx context.Context) (planner.Step, error) {
	if err := r.usable(); err != nil {
		return planner.Step{}, err
	}
	var d *decision
	var err error
	if o := r.opened; o.fresh() {
		r.opened = nil
		d, err = r.vet(ctx, o.c, o.step)
	} else {
		r.opened = nil
		d, err = r.decide(ctx)
	}
	if err != nil {
		return planner.Step{}, r.end(err)
	}
	if d.step.Kind == planner.StepDone {
		r.forgetBackup(ctx)
	}
	r.decided = d
	return d.step, nil
}

// decide observes the cluster and decides the next step: after the step
// done last (decideAfter, which lets a refusal right after a gate settle),
// or as the first step of the run.
func (r *runner) decide(ctx context.Context) (*decision, error) {
	if r.prev != nil {
		c, step, err := r.decideAfter(ctx, *r.prev)
		if err != nil {
			return nil, refuse(planner.Step{}, fmt.Errorf("after %s: %w", stepString(*r.prev), err))
		}
		return r.vet(ctx, c, step)
	}
	c, err := r.discover(ctx)
	if err != nil {
		return nil, refuse(planner.Step{}, fmt.Errorf("observe the cluster: %w", err))
	}
	r.res.Cluster = c
	step, err := r.decideFirst(c)
	if err != nil {
		return nil, refuse(step, err)
	}
	return r.vet(ctx, c, step)
}

// vet checks a decided step as Run does before it asks about it: done only
// with the lock still held; not the step just done again; in its place in
// the approved plan; the lock not lost.
func (r *runner) vet(ctx context.Context, c planner.Cluster, step planner.Step) (*decision, error) {
	d := &decision{c: c, step: step, at: time.Now()}
	if step.Kind == planner.StepDone {
		if err := r.lockHeld(ctx); err != nil {
			return nil, refuse(step, fmt.Errorf("%w; the cluster was observed at the target %s, but another run could have acted on it while this one did not hold the lock: check it (consul-upgrade status) before relying on it", err, r.cfg.Target))
		}
		return d, nil
	}
	if r.prev != nil && sameStep(*r.prev, step) {
		return nil, refuse(step, &StuckError{Step: step})
	}
	if err := r.position(c, step); err != nil {
		return nil, refuse(step, err)
	}
	select {
	case <-r.lost:
		return nil, refuse(step, errLockLost())
	default:
	}
	return d, nil
}

// lockHeld reports, asking Consul, whether the run still holds its lock (nil
// without one): the renewal notices a lost lock only every few seconds, and
// a run must not report done on a lock it lost during its last step.
func (r *runner) lockHeld(ctx context.Context) error {
	if r.lock == nil {
		return nil
	}
	select {
	case <-r.lost:
		return errLockLost()
	default:
	}
	if r.lock.held != nil && !r.lock.held(ctx) {
		return errLockLost()
	}
	return nil
}

// execute is Session.Execute.
func (r *runner) execute(ctx context.Context, step planner.Step) (StepRecord, error) {
	rec := StepRecord{Step: step}
	if err := r.usable(); err != nil {
		return rec, err
	}
	if !executable(step.Kind) {
		err := refuse(step, fmt.Errorf("step kind %q is not one that can be carried out (known: snapshot, swap-server, transfer-leader, swap-clients, add-server, retire-server)", step.Kind))
		r.fillTouched(err)
		return rec, err
	}
	r.opened = nil // a step executed without Next: Open's decision is not handed out later
	d := r.decided
	if d == nil || !d.fresh() || !sameDecision(d.step, step) {
		nd, err := r.decide(ctx)
		if err != nil {
			return rec, r.end(err)
		}
		r.decided = nd
		if !sameDecision(nd.step, step) {
			return rec, &PlanDivergedError{Index: -1, Node: orNode(step.Node, nd.step.Node), Want: step, Got: nd.step, Reason: givenDiff(step, nd.step), given: true}
		}
		d = nd
	}
	r.decided = nil
	select {
	case <-r.lost:
		return rec, r.end(refuse(d.step, errLockLost()))
	default:
	}
	rec, h := r.do(ctx, d.c, d.step)
	if h != nil {
		return rec, r.end(r.classify(h))
	}
	r.res.Steps = append(r.res.Steps, rec)
	r.planAt = r.idx + 1
	if r.planFirst < r.idx {
		r.planAt = r.planFirst // steps of the hop passed over are still to come
	}
	done := d.step
	r.prev = &done
	return rec, nil
}

// sameDecision reports whether step given to Execute is the step decided:
// the same step (sameStep), from the same version, with the same stop
// mode, backup and gate.
func sameDecision(decided, given planner.Step) bool {
	sameFrom := decided.From == given.From || planner.SameVersion(decided.From, given.From)
	return sameStep(decided, given) && sameFrom && decided.StopMode == given.StopMode &&
		decided.Backup == given.Backup && slices.Equal(decided.Gate, given.Gate)
}

// givenDiff says how a step given to Execute differs from the step decided.
func givenDiff(given, decided planner.Step) string {
	join := func(g []planner.GateCheck) string {
		out := make([]string, len(g))
		for i, c := range g {
			out[i] = string(c)
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	switch {
	case given.Kind != decided.Kind:
		return fmt.Sprintf("it is a %s, the cluster needs a %s", given.Kind, decided.Kind)
	case given.Node != decided.Node || given.Target != decided.Target || given.Datacenter != decided.Datacenter || !slices.Equal(given.Nodes, decided.Nodes):
		return fmt.Sprintf("it is about %s, the cluster needs %s", stepNodes(given), stepNodes(decided))
	case !planner.SameVersion(given.To, decided.To):
		return fmt.Sprintf("it goes to %s, the cluster needs %s", orUnknown(given.To), orUnknown(decided.To))
	case given.From != decided.From && !planner.SameVersion(given.From, decided.From):
		return fmt.Sprintf("it starts from %s, the cluster runs %s", orUnknown(given.From), orUnknown(decided.From))
	case given.StopMode != decided.StopMode:
		return fmt.Sprintf("it stops with %q, the step decided with %q", given.StopMode, decided.StopMode)
	case given.Backup != decided.Backup:
		return fmt.Sprintf("it takes a %q backup, the step decided a %q one", given.Backup, decided.Backup)
	}
	return fmt.Sprintf("its gate checks %s, the step decided checks %s", join(given.Gate), join(decided.Gate))
}

// stepNodes names the nodes a step is about, for givenDiff.
func stepNodes(s planner.Step) string {
	var out []string
	if s.Datacenter != "" {
		out = append(out, "datacenter "+s.Datacenter)
	}
	if s.Node != "" {
		out = append(out, s.Node)
	}
	if s.Target != "" {
		out = append(out, "=> "+s.Target)
	}
	if len(s.Nodes) > 0 {
		out = append(out, "["+strings.Join(s.Nodes, ", ")+"]")
	}
	if len(out) == 0 {
		return "no node"
	}
	return strings.Join(out, " ")
}

func orNode(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// classify is the error of a step that failed: a *HaltError when the step
// touched a node (its record in touched.go), else a *StepRefusedError:
// nothing of the step was touched.
func (r *runner) classify(h *HaltError) error {
	if r.touch.stepTouched() {
		return h
	}
	return &StepRefusedError{Step: h.Step, Err: h.Err}
}

// refuse is the error of step, not acted on because of err.
func refuse(step planner.Step, err error) error {
	return &StepRefusedError{Step: step, Err: err}
}
