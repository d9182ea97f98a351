package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// This file is the world of the property test (property_test.go): the
// simulated datacenters, the fake transport, the runs of a scenario, the
// faults injected into them and the invariant checker that sees every
// event, every stop and the end of every run.

// propDC is one simulated datacenter.
type propDC struct {
	name   string
	sim    *consultest.Cluster
	direct Consul // through the simulator's default agent (always answers)
}

// Causes of a server being down, as the world knows them.
const (
	causeRun   = "run"   // the run's transport stopped it
	causeFault = "fault" // the fault schedule killed it
)

// propWorld runs one scenario and checks it.
type propWorld struct {
	sc    *propScenario
	dcs   []*propDC
	fake  *transporttest.Fake
	cfg   Config               // every run's config but Plan
	plan  *planner.UpgradePlan // the approved plan (nil: none)
	path  []planner.Hop        // the upgrade's hops
	names []string             // every node, in the clusters' order
	start time.Time

	mu      sync.Mutex // guards what follows (a client wave's swaps run concurrently)
	log     []string
	viol    []string
	cause   map[string]string // node -> causeRun or causeFault, for a node the world saw go down
	pending []propFault       // faults not fired yet
	tally   []string          // how each run ended, and each fault that fired (propOutcome.tally)

	// The run under way.
	run      int
	started  int          // steps started in this run
	cur      planner.Step // the step under way (or being asked about)
	gateSeen bool         // the current step's first gate-waiting event was seen
	// rollingBack: the transport rolled a node of the current step back;
	// rollbackGateSeen: the first gate-waiting event after it was seen.
	rollingBack, rollbackGateSeen bool
	cancel                        context.CancelFunc
	decision                      StepDecision    // BeforeStep's answer for the step being asked about
	resumed                       *SwapRecord     // the swap record found before the run
	runCfg                        Config          // the config the run was given
	stops                         map[string]bool // nodes the transport stopped during this run
	// unlockErr: the run said it could not give the lock back (its
	// session then expires); lockFault: a fault of this run could end
	// the lock's session (sessions invalidated, a server killed).
	unlockErr, lockFault bool
	// lockNoHome: the run stopped a server of its own datacenter while no
	// other server of it was a healthy voter up, so the lock had no server
	// to move to (keepRequest.to is "": the lock stays where it is).
	lockNoHome bool
}

// newPropWorld builds the clusters, the transport and the config of sc.
func newPropWorld(sc *propScenario) (*propWorld, error) {
	w := &propWorld{sc: sc, cause: map[string]string{}, pending: slices.Clone(sc.Faults), start: time.Now()}
	two := len(sc.DCs) > 1
	var fakeNodes []transporttest.FakeNode
	for i, d := range sc.DCs {
		opts := []consultest.Option{
			consultest.WithStableSince(time.Now().Add(-time.Hour)),
			consultest.WithEra(propEra(sc.From)),
			consultest.WithDatacenter(d.Name, "dc1"),
		}
		if i > 0 {
			opts = append(opts, consultest.WithNodePrefix(d.Name+"-"))
		} else if two {
			opts = append(opts, consultest.WithPeerDatacenters("dc2"))
		}
		sim := consultest.NewCluster(d.Servers, d.Clients, sc.From, opts...)
		cl, err := sim.Client()
		if err != nil {
			return nil, err
		}
		w.dcs = append(w.dcs, &propDC{name: d.Name, sim: sim, direct: NewConsul(cl)})
		for _, n := range sim.Nodes() {
			w.names = append(w.names, n.Name)
			fakeNodes = append(fakeNodes, transporttest.FakeNode{Name: n.Name, Role: n.Role, Version: n.Version, Running: true, Healthy: true})
		}
	}
	w.fake = transporttest.NewFake(fakeNodes...)
	var hooks []func(transport.SwapRequest)
	for _, d := range w.dcs {
		hooks = append(hooks, d.sim.OnSwap(w.fake))
	}
	w.fake.OnSwap = func(req transport.SwapRequest) {
		for _, h := range hooks {
			h(req) // each cluster mirrors its own nodes and ignores the others'
		}
	}
	path, err := planner.Path(sc.From, sc.To, planner.Policy{})
	if err != nil {
		return nil, fmt.Errorf("scenario %s -> %s: %w", sc.From, sc.To, err)
	}
	w.path = path

	own := w.dcs[0].direct
	if sc.ViaClient {
		n, _ := w.dcs[0].sim.Node("c1")
		cl, err := w.dcs[0].sim.ClientAt(n.Address)
		if err != nil {
			return nil, err
		}
		own = NewConsul(cl)
	}
	w.cfg = Config{
		Consul:    own,
		Transport: &propTransport{Fake: w.fake, w: w},
		Target:    sc.To,
		Policy:    planner.Policy{NoSnapshot: sc.NoSnapshot},
		Snapshot: func(context.Context, string, string) (SnapshotSink, error) {
			return &memSink{}, nil
		},
		Rollback:    sc.Rollback,
		GateTimeout: time.Minute,
		MaxSteps:    sc.MaxSteps,
		LockHolder:  fmt.Sprintf("property seed %d", sc.Seed),
		ServerAPI: func(node, addr string) (Consul, error) {
			cl, err := w.dcOf(node).sim.ClientAt(addr)
			if err != nil {
				return nil, err
			}
			return NewConsul(cl), nil
		},
	}
	if sc.WaiveSpare {
		w.cfg.Policy.Waive = append(w.cfg.Policy.Waive, planner.PrecheckNoSpareVoter)
	}
	if two {
		w.cfg.Datacenters = map[string]Consul{}
		for _, d := range w.dcs[1:] {
			w.cfg.Datacenters[d.name] = d.direct
		}
	}
	w.cfg.BeforeStep = w.beforeStep
	w.cfg.OnEvent = w.onEvent
	return w, nil
}

// dcOf is the datacenter of node (dc2's names carry its prefix).
func (w *propWorld) dcOf(node string) *propDC {
	for _, d := range w.dcs[1:] {
		if strings.HasPrefix(node, d.name+"-") {
			return d
		}
	}
	return w.dcs[0]
}

// logf adds a line to the scenario's log. Callers hold w.mu.
func (w *propWorld) logf(format string, args ...any) {
	w.log = append(w.log, fmt.Sprintf("%8s ", time.Since(w.start).Round(time.Millisecond))+fmt.Sprintf(format, args...))
}

// violate records a broken invariant. Callers hold w.mu.
func (w *propWorld) violate(format string, args ...any) {
	msg := fmt.Sprintf("run %d: ", w.run+1) + fmt.Sprintf(format, args...)
	w.viol = append(w.viol, msg)
	w.logf("VIOLATION %s", msg)
}

// play runs the scenario: the approved plan if any, then up to sc.Runs runs.
func (w *propWorld) play(ctx context.Context) {
	if w.sc.Plan {
		w.mu.Lock()
		w.replan(ctx, "the approved plan")
		w.mu.Unlock()
	}
	for w.run = 0; w.run < w.sc.Runs; w.run++ {
		w.mu.Lock()
		w.started, w.cur, w.gateSeen = 0, planner.Step{}, false
		w.fire(atBeforeRun)
		w.mu.Unlock()
		res, err := w.runOnce(ctx)
		w.mu.Lock()
		w.afterRun(ctx, res, err)
		w.mu.Unlock()
		if err == nil && res != nil && !res.Stopped {
			return // done
		}
		// Let the cluster settle between runs, as an operator's pause does
		// (a restarted agent comes back, sessions of a lost lock expire).
		time.Sleep(30 * time.Second)
	}
}

// replan makes a plan by a dry run on the cluster as it is and takes it as
// the approved plan (read back from its JSON, as the CLI saves it). A
// refused dry run leaves the plan as it was. Callers hold w.mu.
func (w *propWorld) replan(ctx context.Context, what string) {
	cfg := w.cfg
	cfg.DryRun, cfg.OnEvent, cfg.BeforeStep, cfg.Plan = true, nil, nil, nil
	w.mu.Unlock()
	res, err := Run(ctx, cfg)
	w.mu.Lock()
	if err != nil || res.Plan == nil {
		w.logf("plan: %s not made: %v", what, err)
		return
	}
	p, err := propClonePlan(res.Plan)
	if err != nil {
		w.violate("the plan does not read back from its JSON: %v", err)
		return
	}
	w.plan = p
	w.logf("plan: %s has %d step(s): %s", what, len(p.Steps), propSteps(p.Steps))
}

func propClonePlan(p *planner.UpgradePlan) (*planner.UpgradePlan, error) {
	b, err := p.JSON()
	if err != nil {
		return nil, err
	}
	var out planner.UpgradePlan
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func propSteps(steps []planner.Step) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = s.String()
	}
	return strings.Join(parts, "; ")
}

// runOnce is one Run, recovered from a panic.
func (w *propWorld) runOnce(ctx context.Context) (res *Result, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Hour)
	defer cancel()
	w.mu.Lock()
	w.cancel = cancel
	w.stops = map[string]bool{}
	w.unlockErr, w.lockFault, w.lockNoHome = false, false, false
	w.resumed, _ = ReadSwapRecord(ctx, w.dcs[0].direct, "")
	cfg := w.cfg
	cfg.Plan = w.plan
	w.runCfg = cfg.withPlan()
	w.logf("run %d starts (plan: %v, swap record: %v)", w.run+1, w.plan != nil, w.resumed != nil)
	w.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			w.mu.Lock()
			w.violate("Run panicked: %v", p)
			w.mu.Unlock()
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return Run(ctx, cfg)
}

// propTransport is the fake transport with the checker around each swap
// and rollback: it judges the stop at the instant the fake makes it, and
// fires the after-swap faults. Embedding keeps every optional interface
// of the fake (Rollbacker, ArtifactChecker, ...).
type propTransport struct {
	*transporttest.Fake
	w *propWorld
}

func (p *propTransport) Swap(ctx context.Context, req transport.SwapRequest) error {
	return p.w.acting(req.Node, "swap to "+req.To, func() error { return p.Fake.Swap(ctx, req) })
}

func (p *propTransport) Rollback(ctx context.Context, node string) error {
	p.w.mu.Lock()
	p.w.rollingBack = true
	p.w.mu.Unlock()
	return p.w.acting(node, "rollback", func() error { return p.Fake.Rollback(ctx, node) })
}

// acting judges, before the fake acts on node, what a stop of node would
// break; the breaks count when the fake did stop it.
func (w *propWorld) acting(node, what string, act func() error) error {
	w.mu.Lock()
	breaks := w.judgeStop(node)
	noHome := w.noLockHome(node)
	n0 := len(w.fake.Calls())
	w.mu.Unlock()
	err := act()
	w.mu.Lock()
	defer w.mu.Unlock()
	stopped := slices.ContainsFunc(w.fake.Calls()[n0:], func(c transporttest.Call) bool { return c.Op == transporttest.OpStop && c.Node == node })
	fn, _ := w.fake.Node(node)
	w.logf("transport: %s %s: stopped %v, running %v on %s, err %v", what, node, stopped, fn.Running, fn.Version, err)
	if stopped {
		w.lockNoHome = w.lockNoHome || noHome
		w.stops[node] = true
		w.cause[node] = causeRun
		for _, b := range breaks {
			w.violate("%s of %s: %s", what, node, b)
		}
	}
	w.followEras()
	w.fire(atAfterSwap)
	return err
}

// judgeStop returns the invariants a stop of node would break now:
//
//	(a) the voters of its datacenter's Raft configuration that stay up
//	    make a quorum, but for the datacenter's planned outage: its only
//	    voter, or one of two voters with no-spare-voter waived while the
//	    other is up;
//	(b) no other server of its datacenter is down because of the run.
//
// Callers hold w.mu.
func (w *propWorld) judgeStop(node string) []string {
	d := w.dcOf(node)
	nodes := d.sim.Nodes()
	i := slices.IndexFunc(nodes, func(n consultest.Node) bool { return n.Name == node })
	if i < 0 || nodes[i].Role != transport.RoleServer {
		return nil
	}
	self := nodes[i]
	voters, up := 0, []string{}
	var runDown []string
	for _, n := range nodes {
		if n.Role != transport.RoleServer {
			continue
		}
		if n.Voter {
			voters++
			if n.Name != node && n.Up {
				up = append(up, n.Name)
			}
		}
		if n.Name != node && !n.Up && w.cause[n.Name] == causeRun {
			runDown = append(runDown, n.Name)
		}
	}
	var out []string
	quorum := voters/2 + 1
	if self.Voter && self.Up && len(up) < quorum {
		waived := slices.Contains(w.runCfg.Policy.Waive, planner.PrecheckNoSpareVoter)
		outage := voters == 1 || (waived && voters == 2 && len(up) == 1)
		if !outage {
			out = append(out, fmt.Sprintf("(a) quorum lost: %d of %d voters of %s up besides it (%v), below the quorum of %d", len(up), voters, d.name, up, quorum))
		}
	}
	if len(runDown) > 0 {
		out = append(out, fmt.Sprintf("(b) two servers of %s down because of the run: %v is down already", d.name, runDown))
	}
	return out
}

// noLockHome reports whether stopping node leaves the run's own datacenter
// without another server that is a healthy voter: the lock then has no
// server to move to. Callers hold w.mu.
func (w *propWorld) noLockHome(node string) bool {
	if w.dcOf(node) != w.dcs[0] {
		return false
	}
	for _, n := range w.dcs[0].sim.Nodes() {
		if n.Role == transport.RoleServer && n.Name != node && n.Healthy && n.Voter {
			return false
		}
	}
	return true
}

// checkRunDown checks (b) as a state, at any event: at most one server per
// datacenter is down because of the run. Callers hold w.mu.
func (w *propWorld) checkRunDown(when string) {
	for _, d := range w.dcs {
		var down []string
		for _, n := range d.sim.Nodes() {
			if n.Role == transport.RoleServer && !n.Up && w.cause[n.Name] == causeRun {
				down = append(down, n.Name)
			}
		}
		if len(down) > 1 {
			w.violate("(b) at %s: servers %v of %s are all down because of the run", when, down, d.name)
		}
	}
}

// followEras sets each datacenter's API era to that of the oldest version
// its agents run, as a real cluster's API changes once its last agent of
// an older era is swapped. Callers hold w.mu.
func (w *propWorld) followEras() {
	for _, d := range w.dcs {
		var low string
		for _, n := range d.sim.Nodes() {
			if low == "" || propOlder(n.Version, low) {
				low = n.Version
			}
		}
		if low != "" {
			d.sim.SetEra(propEra(low))
		}
	}
}

func propOlder(a, b string) bool {
	va, err1 := planner.ParseVersion(a)
	vb, err2 := planner.ParseVersion(b)
	return err1 == nil && err2 == nil && va.Core().LessThan(vb.Core())
}

// beforeStep is Config.BeforeStep: it checks the step against the approved
// plan and the plan's basis against the cluster as observed now, then
// fires the before-step faults (which may answer Skip or Abort).
func (w *propWorld) beforeStep(ctx context.Context, info StepInfo) (StepDecision, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cur = info.Step
	w.logf("before-step %d/%d: %s", info.Index+1, info.Total, info.Step)
	if p := w.runCfg.Plan; p != nil {
		if !propPlanStep(p, info.Index, info.Step) {
			w.violate("(d) step %s asked about as step %d of an approved plan whose steps are %s", info.Step, info.Index+1, propSteps(p.Steps))
		}
		// The plan was reviewed on its basis: a server it recorded as a
		// healthy voter that autopilot has removed since, or that the
		// fault schedule killed and nobody revived, makes it stale
		// whatever else holds (a check of its own, independent of
		// CheckBasis).
		if p.Basis != nil {
			for _, d := range p.Basis.Datacenters {
				for _, s := range d.Servers {
					if !s.Voter || !s.Healthy {
						continue
					}
					n, ok := w.dcOf(s.Name).sim.Node(s.Name)
					switch {
					case !ok:
						w.violate("(d) step %s is about to be carried out on a plan reviewed with %s, which autopilot has removed since", info.Step, s.Name)
					case !n.Up && w.cause[s.Name] == causeFault:
						w.violate("(d) step %s is about to be carried out on a plan reviewed with %s healthy, which was killed since", info.Step, s.Name)
					}
				}
			}
		}
		w.mu.Unlock()
		c, err := w.observe(ctx)
		w.mu.Lock()
		switch {
		case err != nil:
			w.logf("checker: cannot observe the cluster: %v", err)
		default:
			if err := p.CheckBasis(c); err != nil {
				w.violate("(d) step %s is about to be carried out on a plan that is stale for the cluster as it is now: %v", info.Step, err)
			}
		}
	}
	w.decision = Approve
	w.fire(atBeforeStep)
	return w.decision, nil
}

// propPlanStep reports whether step is the plan's step i: the same kind,
// node, leadership target, datacenter and version; a snapshot may be
// served by other leaders than the plan foresaw (an election after the
// leader's swap), and a client wave may hold fewer clients than the plan's
// (a wave halted midway and resumed).
func propPlanStep(p *planner.UpgradePlan, i int, step planner.Step) bool {
	if i < 0 || i >= len(p.Steps) {
		return false
	}
	want := p.Steps[i]
	if want.Kind != step.Kind || want.Node != step.Node || want.Target != step.Target ||
		!sameDC(want.Datacenter, step.Datacenter) || !planner.SameVersion(want.To, step.To) {
		return false
	}
	if step.Kind == planner.StepSwapClients {
		for _, n := range step.Nodes {
			if !slices.Contains(want.Nodes, n) {
				return false
			}
		}
	}
	return true
}

// observe observes the cluster as the run does before a step.
func (w *propWorld) observe(ctx context.Context) (planner.Cluster, error) {
	ob := &runner{cfg: w.runCfg}
	c, err := ob.observe(ctx)
	if err != nil {
		return c, err
	}
	if rec, err := ReadBackupRecord(ctx, w.dcs[0].direct, ""); err == nil && rec != nil {
		c.SnapshotVersion = rec.Version
	}
	return c, nil
}

// onEvent is Config.OnEvent: it logs the event, checks what can be checked
// at any event, and fires the faults of the event's point.
func (w *propWorld) onEvent(e Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	line := string(e.Kind)
	if e.Step.Kind != "" {
		line += " " + e.Step.String()
		if e.Total > 0 {
			line += fmt.Sprintf(" [%d/%d]", e.Index+1, e.Total)
		}
	}
	if e.Node != "" {
		line += " node=" + e.Node
	}
	if e.Condition != "" {
		line += " cond=" + string(e.Condition)
	}
	if e.Err != nil {
		line += " err=" + e.Err.Error()
	} else if e.Detail != "" && e.Kind != EventGateWaiting {
		line += ": " + e.Detail
	}
	w.logf("%s", line)
	w.checkRunDown(string(e.Kind))

	switch e.Kind {
	case EventUnlocked:
		w.unlockErr = w.unlockErr || e.Err != nil
	case EventStepStarted:
		w.started++
		w.cur, w.gateSeen, w.rollingBack, w.rollbackGateSeen = e.Step, false, false, false
		if p := w.runCfg.Plan; p != nil && !(w.resumed != nil && sameStep(w.resumed.Step, e.Step)) {
			if !propPlanStep(p, e.Index, e.Step) {
				w.violate("(d) step %s carried out as step %d of an approved plan whose steps are %s", e.Step, e.Index+1, propSteps(p.Steps))
			}
		}
		w.fire(atStepStarted)
	case EventNodeStopped:
		w.fire(atNodeStopped)
	case EventGateWaiting:
		switch {
		case w.rollingBack && !w.rollbackGateSeen:
			w.rollbackGateSeen = true
			w.fire(atRollbackGate)
		case !w.rollingBack && !w.gateSeen:
			w.gateSeen = true
			w.fire(atGateWaiting)
		}
	case EventStepDone:
		w.fire(atStepDone)
	}
}

// ordinal is the 0-based place in the run of the step at point p.
func (w *propWorld) ordinal(p propPoint) int {
	if p == atBeforeStep {
		return w.started // the step asked about has not started yet
	}
	return max(w.started-1, 0)
}

// fire applies the pending faults due at point p. Callers hold w.mu.
func (w *propWorld) fire(p propPoint) {
	ord := w.ordinal(p)
	for i := 0; i < len(w.pending); i++ {
		f := w.pending[i]
		if f.Run != w.run || f.At != p || (p != atBeforeRun && ord < f.Step) {
			continue
		}
		if f.Kind == fKillBeforeStop && w.cur.Kind != planner.StepSwapServer {
			continue // waits for a server swap
		}
		w.pending = slices.Delete(w.pending, i, i+1)
		i--
		w.apply(f)
	}
}

// apply carries a fault out. Callers hold w.mu.
func (w *propWorld) apply(f propFault) {
	switch f.Kind {
	case fLoseLock, fKill, fKillBeforeStop, fRemoveDead:
		w.lockFault = w.lockFault || f.At != atBeforeRun
	}
	what := w.applyFault(f)
	w.logf("FAULT %s: %s", f, what)
	w.tally = append(w.tally, "fault "+string(f.Kind)+" at "+string(f.At))
	w.followEras()
}

func (w *propWorld) applyFault(f propFault) string {
	pick := func(n int) int { return int(f.Pick % uint64(n)) }
	type srv struct {
		d *propDC
		n consultest.Node
	}
	servers := func(keep func(d *propDC, n consultest.Node) bool) []srv {
		var out []srv
		for _, d := range w.dcs {
			for _, n := range d.sim.Nodes() {
				if n.Role == transport.RoleServer && keep(d, n) {
					out = append(out, srv{d, n})
				}
			}
		}
		return out
	}
	killed := func(_ *propDC, n consultest.Node) bool { return !n.Up && w.cause[n.Name] == causeFault }
	kill := func(s srv) string {
		if err := s.d.sim.Kill(s.n.Name); err != nil {
			return err.Error()
		}
		w.cause[s.n.Name] = causeFault
		return "killed " + s.n.Name
	}
	revive := func(s srv) string {
		if err := s.d.sim.Swap(s.n.Name, s.n.Version, true); err != nil {
			return err.Error()
		}
		delete(w.cause, s.n.Name)
		return "revived " + s.n.Name + " on " + s.n.Version
	}
	switch f.Kind {
	case fKill:
		up := servers(func(_ *propDC, n consultest.Node) bool { return n.Up })
		if len(up) == 0 {
			return "no server up"
		}
		return kill(up[pick(len(up))])
	case fKillBeforeStop:
		d := w.dcOf(w.cur.Node)
		others := servers(func(sd *propDC, n consultest.Node) bool {
			return sd == d && n.Up && n.Voter && n.Name != w.cur.Node
		})
		if len(others) == 0 {
			return "no other voter up"
		}
		return kill(others[pick(len(others))]) + " before the swap of " + w.cur.Node
	case fRevive:
		down := servers(killed)
		if len(down) == 0 {
			return "no killed server"
		}
		return revive(down[pick(len(down))])
	case fReviveAll:
		var out []string
		for _, s := range servers(killed) {
			out = append(out, revive(s))
		}
		return fmt.Sprintf("revived all: %v", out)
	case fRemoveDead:
		down := servers(killed)
		pre := ""
		if len(down) == 0 {
			up := servers(func(_ *propDC, n consultest.Node) bool { return n.Up })
			if len(up) == 0 {
				return "no server to remove"
			}
			pre = kill(up[pick(len(up))]) + ", then "
			down = servers(killed)
			if len(down) == 0 {
				return pre + "nothing"
			}
		}
		s := down[pick(len(down))]
		if err := s.d.sim.RemoveDeadServer(s.n.Name); err != nil {
			return pre + err.Error()
		}
		return pre + "autopilot removed " + s.n.Name
	case fLeader:
		cands := servers(func(_ *propDC, n consultest.Node) bool { return n.Healthy && n.Voter && !n.Leader })
		if len(cands) == 0 {
			return "no other healthy voter"
		}
		s := cands[pick(len(cands))]
		if err := s.d.sim.SetLeader(s.n.Name); err != nil {
			return err.Error()
		}
		return "leader of " + s.d.name + " is now " + s.n.Name
	case fLoseLock:
		ids := w.dcs[0].sim.Sessions()
		for _, id := range ids {
			w.dcs[0].sim.InvalidateSession(id)
		}
		return fmt.Sprintf("invalidated %d session(s)", len(ids))
	case fMissingBinary:
		names := w.fakeNodes()
		node := names[pick(len(names))]
		fn, _ := w.fake.Node(node)
		versions := []string{"", fn.Version}
		for _, h := range w.path {
			versions = append(versions, h.To)
		}
		v := versions[int((f.Pick>>16)%uint64(len(versions)))]
		w.fake.MissingBinary(node, v)
		return fmt.Sprintf("binary %q missing on %s", v, node)
	case fBroken:
		v := w.path[pick(len(w.path))].To
		w.fake.Broken(v)
		return "version " + v + " never comes up"
	case fUnhealthy, fOld, fFailNext, fHang:
		var cands []string
		for _, name := range w.fakeNodes() {
			if fn, _ := w.fake.Node(name); !planner.SameVersion(fn.Version, w.sc.To) {
				cands = append(cands, name)
			}
		}
		if len(cands) == 0 {
			return "every node is on the target"
		}
		node := cands[pick(len(cands))]
		switch f.Kind {
		case fUnhealthy:
			w.fake.ComeBackUnhealthy(node)
		case fOld:
			w.fake.ComeBackOld(node)
		case fFailNext:
			w.fake.FailNext(node, errors.New("property test: the swap fails"))
		case fHang:
			w.fake.HangNext(node)
		}
		return "next swap of " + node
	case fCancel:
		if w.cancel != nil {
			w.cancel()
		}
		return "the run's context is cancelled"
	case fSkip:
		w.decision = StopHere
		return "BeforeStep says skip"
	case fAbort:
		w.decision = Abort
		return "BeforeStep says abort"
	case fEditPlan:
		return w.editPlan(f.Pick)
	case fReplan:
		w.replan(context.Background(), "a new plan")
		return "planned again"
	}
	return "unknown fault"
}

// fakeNodes are the names of the fake's nodes, in the clusters' order
// (autopilot's removals included: the host is still there).
func (w *propWorld) fakeNodes() []string { return w.names }

// editPlan changes the approved plan as a person editing its JSON might: a
// step dropped, two steps swapped, a step's version changed, or a fact of
// its basis changed. Callers hold w.mu.
func (w *propWorld) editPlan(pick uint64) string {
	if w.plan == nil || len(w.plan.Steps) == 0 {
		return "no plan to edit"
	}
	p, err := propClonePlan(w.plan)
	if err != nil {
		return err.Error()
	}
	i := int((pick >> 8) % uint64(len(p.Steps)))
	var what string
	switch pick % 6 {
	case 0:
		what = "dropped step " + p.Steps[i].String()
		p.Steps = slices.Delete(p.Steps, i, i+1)
	case 1:
		if i+1 >= len(p.Steps) {
			i--
		}
		if i < 0 {
			return "one step: nothing to swap"
		}
		p.Steps[i], p.Steps[i+1] = p.Steps[i+1], p.Steps[i]
		what = fmt.Sprintf("swapped steps %d and %d", i+1, i+2)
	case 2:
		p.Steps[i].To = p.Path[0].From
		what = "step " + p.Steps[i].String() + " now goes to " + p.Path[0].From
	case 3, 4, 5:
		if p.Basis == nil || len(p.Basis.Datacenters) == 0 {
			return "no basis to edit"
		}
		d := &p.Basis.Datacenters[int(pick>>24)%len(p.Basis.Datacenters)]
		switch {
		case pick%6 == 3 && len(d.Servers) > 1:
			for _, s := range d.Servers {
				if s.Name != d.Leader {
					what = fmt.Sprintf("basis: leader of %s %s -> %s", d.Name, d.Leader, s.Name)
					d.Leader = s.Name
					break
				}
			}
		case pick%6 == 4 && len(d.Servers) > 0:
			s := &d.Servers[int(pick>>32)%len(d.Servers)]
			what = fmt.Sprintf("basis: %s recorded on %s, not %s", s.Name, p.Target, s.Version)
			s.Version = p.Target
		default:
			d.FailureTolerance++
			what = fmt.Sprintf("basis: failure tolerance of %s recorded as %d", d.Name, d.FailureTolerance)
		}
	}
	w.plan = p
	return "plan edited: " + what
}

// afterRun checks the end of a run:
//
//	(c) every server the run left down has the swap record;
//	(e) the error is nil or one of the typed errors, and the touch record
//	    (Result.Touched, TouchedBy(err)) names every node the transport
//	    stopped, and none that it did not; a refusal touched nothing;
//	and the run gave the lock back.
//
// Callers hold w.mu.
func (w *propWorld) afterRun(ctx context.Context, res *Result, err error) {
	w.logf("run %d returned: stopped %v, steps %d, err %v", w.run+1, res != nil && res.Stopped, stepCount(res), err)
	w.tally = append(w.tally, "run "+propEnd(res, err))
	w.checkRunDown("the end of the run")
	if res == nil {
		w.violate("Run returned a nil Result (err %v)", err)
		res = &Result{}
	}

	// (c)
	var rec *SwapRecord
	if b, ok := w.dcs[0].sim.KV(swapKey); ok {
		rec = &SwapRecord{}
		if jerr := json.Unmarshal(b, rec); jerr != nil {
			w.violate("(c) the swap record does not read: %v", jerr)
		}
	}
	for _, d := range w.dcs {
		for _, n := range d.sim.Nodes() {
			if n.Role != transport.RoleServer || n.Up || w.cause[n.Name] != causeRun {
				continue
			}
			if rec == nil || rec.Node != n.Name {
				w.violate("(c) server %s was left down by the run, and the swap record is %+v", n.Name, rec)
			}
		}
	}

	// (e)
	touched, carries := TouchedBy(err)
	if err != nil && !propTyped(err) {
		// Run documents that every error but a halt's and an abort's is
		// returned before anything was touched (TouchedBy): Consul not
		// answering at the start, say.
		if len(w.stops) > 0 || len(res.Touched) > 0 {
			w.violate("(e) Run returned an error of no documented type (%T) after it touched %v: %v", err, res.Touched.Nodes(), err)
		} else {
			w.logf("checker: an untyped error before anything was touched (%T)", err)
		}
	}
	var stops []string
	for n := range w.stops {
		stops = append(stops, n)
	}
	slices.Sort(stops)
	recorded := func(ts Touched, node string) bool {
		return slices.ContainsFunc(ts, func(t NodeTouch) bool { return t.Node == node && t.Stopped })
	}
	for _, n := range stops {
		if !recorded(res.Touched, n) {
			w.violate("(e) the transport stopped %s, and Result.Touched does not say so: %s", n, res.Touched)
		}
		if err != nil && (!carries || !recorded(touched, n)) {
			w.violate("(e) the transport stopped %s, and the error (%T) does not say so: %v", n, err, err)
		}
	}
	for _, t := range res.Touched {
		if t.Stopped && !t.StopUncertain && !w.stops[t.Node] && t.Step != planner.StepRetireServer {
			w.violate("(e) Result.Touched says %s was stopped, and the transport did not stop it: %s", t.Node, t)
		}
	}
	if carries && !slices.Equal(touched.Nodes(), res.Touched.Nodes()) {
		w.violate("(e) the error's record names %v, Result.Touched %v", touched.Nodes(), res.Touched.Nodes())
	}
	var h *HaltError
	if errors.As(err, &h) && len(h.Touched) > 0 && !strings.Contains(err.Error(), "touched by this run") {
		w.violate("(e) a halt that touched %v does not say so: %v", h.Touched.Nodes(), err)
	}
	if err != nil && !carries && len(res.Touched) > 0 {
		w.violate("(e) a refusal (%T) with a touch record %s: %v", err, res.Touched, err)
	}

	// (f) The lock is given back; a run that said it could not give it
	// back (its agent down) leaves it to expire with its session, within
	// twice the session's TTL.
	if held := w.dcs[0].sim.HeldLocks(); len(held) > 0 {
		if !w.unlockErr {
			w.violate("(f) the run ended holding %v, and said nothing", held)
		} else {
			time.Sleep(2*lockTTL + time.Second)
			if held := w.dcs[0].sim.HeldLocks(); len(held) > 0 {
				w.violate("(f) the run could not give back the lock %v, and it is still held %s later", held, 2*lockTTL+time.Second)
			}
		}
	}
	// (f) The run does not lose its lock to its own stops: a lost lock
	// is the fault schedule's doing (its sessions invalidated, a server
	// killed).
	if errors.Is(err, ErrLockLost) && !w.lockFault && !w.lockNoHome {
		w.violate("(f) the run lost its lock, and no fault of the run could end its session: %v", err)
	}
}

func stepCount(res *Result) int {
	if res == nil {
		return 0
	}
	return len(res.Steps)
}

// propTyped reports whether err is one of the errors Run documents (or a
// context's error: the caller's cancel or deadline).
func propTyped(err error) bool {
	var (
		halt    *HaltError
		aborted *AbortedError
		refused *planner.RefusedError
		stale   *planner.StalePlanError
		div     *PlanDivergedError
		pre     *PreflightError
		conf    *ConfigError
		locked  *LockedError
		swaprec *SwapRecordError
		stepref *StepRefusedError
	)
	switch {
	case errors.As(err, &halt), errors.As(err, &aborted), errors.As(err, &refused), errors.As(err, &stale),
		errors.As(err, &div), errors.As(err, &pre), errors.As(err, &conf), errors.As(err, &locked), errors.As(err, &swaprec),
		errors.As(err, &stepref):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

// propEnd names how a run ended, for the tally: done, stopped, or the
// error's type (and a halt's cause's type).
func propEnd(res *Result, err error) string {
	switch {
	case err == nil && res != nil && res.Stopped:
		return "stopped cleanly"
	case err == nil:
		return "done"
	}
	var h *HaltError
	if errors.As(err, &h) {
		return "*upgrade.HaltError of " + propType(h.Err)
	}
	return propType(err)
}

// propType is the type of the outermost error in err's chain that is not
// a plain wrapper.
func propType(err error) string {
	for e := err; e != nil; {
		switch t := fmt.Sprintf("%T", e); t {
		case "*fmt.wrapError", "*errors.errorString":
			e = errors.Unwrap(e)
			continue
		case "*fmt.wrapErrors", "*errors.joinError":
			if j, ok := e.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
				e = j.Unwrap()[0]
				continue
			}
			return t
		default:
			return t
		}
	}
	if errors.Is(err, context.Canceled) {
		return "context canceled"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "context deadline"
	}
	return "untyped: " + propShort(err.Error())
}

func propShort(s string) string {
	if i := strings.Index(s, ":"); i > 0 {
		s = s[:i]
	}
	return s
}
