package metrics

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// Namespace prefixes every metric of this package.
const Namespace = "consul_upgrade"

// Run states, the values of the state label of consul_upgrade_run_state.
const (
	StateRunning = "running"
	StateDone    = "done"
	StateStopped = "stopped"
	StateHalted  = "halted"
)

var states = []string{StateRunning, StateDone, StateStopped, StateHalted}

// Roles, the values of the role label of consul_upgrade_nodes_touched_total.
const (
	RoleServer = string(transport.RoleServer)
	RoleClient = string(transport.RoleClient)
)

// Metrics turns a run's events into Prometheus metrics. Feed it every
// event (Config.OnEvent = m.Observe) and, if a probe writer runs beside the
// run, every probe write (ObserveProbeWrite). Its methods are safe to call
// from several goroutines; a scrape never waits for the run.
//
// One Metrics follows one run at a time: the gauges describe the run under
// way (or the last one), and EventRunStarted resets them; the counters and
// histograms add up over every run observed.
type Metrics struct {
	mu        sync.Mutex
	touched   map[string]bool // datacenter/node: counted in nodes_touched_total during this run
	stepStart time.Time       // when the current step started (zero: none)
	gateStart time.Time       // when the current step's gate started waiting (zero: it has not)
	gateEnd   time.Time       // when that gate passed or the run halted (zero: still waiting)
	done      int             // consul_upgrade_steps_done's value

	runState     *prometheus.GaugeVec
	stepsDone    prometheus.Gauge
	stepsPlanned prometheus.Gauge
	stepInfo     *prometheus.GaugeVec
	gateCond     *prometheus.GaugeVec
	gateWait     prometheus.GaugeFunc
	gateWaits    *prometheus.HistogramVec
	stepDur      *prometheus.HistogramVec
	nodes        *prometheus.CounterVec
	halts        *prometheus.CounterVec
	rollbacks    *prometheus.CounterVec
	probeWrites  prometheus.Counter
	probeFailed  prometheus.Counter
	lastEvent    prometheus.Gauge
}

// GateWaitBuckets are the buckets of consul_upgrade_gate_wait_duration_seconds:
// from a gate that passed at once to one near DefaultGateTimeout and past it.
var GateWaitBuckets = []float64{0.5, 1, 2.5, 5, 10, 15, 20, 30, 60, 120, 300, 600}

// StepDurationBuckets are the buckets of consul_upgrade_step_duration_seconds:
// from a snapshot of a small cluster to a wave of hundreds of clients.
var StepDurationBuckets = []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600}

// New returns a Metrics whose collectors are registered with reg (e.g.
// prometheus.DefaultRegisterer, or a registry of your own). To watch
// several clusters on one registry, give each its own Metrics on
// prometheus.WrapRegistererWith(prometheus.Labels{"cluster": name}, reg)
// (every one of them wrapped: a name must keep its label names).
// It fails, registering nothing, when reg already holds a collector of the
// same name (a second Metrics on one registry, unwrapped).
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics.New: the registerer is nil; pass prometheus.DefaultRegisterer or prometheus.NewRegistry()")
	}
	m := &Metrics{touched: map[string]bool{}}
	opts := func(name, help string) (string, string, string) { return Namespace, name, help }
	gauge := func(name, help string) prometheus.Gauge {
		ns, n, h := opts(name, help)
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: n, Help: h})
	}
	m.runState = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "run_state",
		Help: "1 for the state of the run under way or last observed (running, done, stopped, halted), 0 for the others."}, []string{"state"})
	m.stepsDone = gauge("steps_done", "Steps of the run done: the position, 1-based, of the last step whose gate passed (in the approved plan when the run follows one).")
	m.stepsPlanned = gauge("steps_planned", "Steps of the run in all: the approved plan's, else the plan's estimate at the start; set to steps_done when the run reaches the target.")
	m.stepInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "step_info",
		Help: "1 for the step under way, or the step the run halted at; no series between steps. node is the server concerned (empty for a snapshot or a client wave)."},
		[]string{"kind", "datacenter", "node", "from", "to"})
	m.gateCond = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "gate_condition_info",
		Help: "1 for the gate condition the current step waits on, or the one the run halted on; no series while no gate waits."}, []string{"condition"})
	m.gateWait = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "gate_wait_seconds",
		Help: "How long the current step's gate has waited for a condition that did not hold yet, growing while it waits; once it passes (or the run halts) the final wait, until the next step starts. 0 for a gate that passed at its first look."},
		m.gateWaitValue)
	m.gateWaits = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "gate_wait_duration_seconds",
		Help: "Wait of each gate that passed, from the first condition that did not hold to the pass (0: passed at its first look), by step kind.", Buckets: GateWaitBuckets},
		[]string{"kind"})
	m.stepDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "step_duration_seconds",
		Help: "Duration of each step done, from its start to its gate's pass, by step kind.", Buckets: StepDurationBuckets},
		[]string{"kind"})
	m.nodes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "nodes_touched_total",
		Help: "Nodes a run stopped, started, swapped, provisioned or handed leadership from, by role; each node counts once per run."}, []string{"role"})
	m.halts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "halts_total",
		Help: "Runs that halted or were refused, by the type of their error."}, []string{"type"})
	m.rollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "rollbacks_total",
		Help: "Rollbacks after a failed step, by result (ok: the node is back and the cluster healthy; failed: anything else)."}, []string{"result"})
	m.probeWrites = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "probe_writes_total",
		Help: "Writes of the probe writer that runs beside the upgrade (none when none runs)."})
	m.probeFailed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "probe_writes_failed_total",
		Help: "Writes of the probe writer that failed or timed out: the cluster did not take a write then."})
	m.lastEvent = gauge("last_event_timestamp_seconds", "Unix time of the last event of the run; a run that waits on nothing for long may be stuck.")

	cs := []prometheus.Collector{m.runState, m.stepsDone, m.stepsPlanned, m.stepInfo, m.gateCond, m.gateWait,
		m.gateWaits, m.stepDur, m.nodes, m.halts, m.rollbacks, m.probeWrites, m.probeFailed, m.lastEvent}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	for _, s := range states {
		m.runState.WithLabelValues(s).Set(0)
	}
	// Every label value known in advance starts at 0, so a rate or an
	// increase sees the first halt.
	for _, r := range []string{RoleServer, RoleClient} {
		m.nodes.WithLabelValues(r)
	}
	for _, t := range haltTypes {
		m.halts.WithLabelValues(t.label)
	}
	m.halts.WithLabelValues("other")
	m.rollbacks.WithLabelValues("ok")
	m.rollbacks.WithLabelValues("failed")
	return m, nil
}

// NewHandler returns a Metrics on a registry of its own, which also holds
// the Go runtime's and the process's collectors (go_*, process_*), and the
// handler that serves that registry (promhttp: the text and protobuf
// exposition formats, gzip when asked). It is what a command needs to
// serve /metrics without importing Prometheus itself.
func NewHandler() (*Metrics, http.Handler, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, err
	}
	m, err := New(reg)
	if err != nil {
		return nil, nil, err
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
	return m, h, nil
}

// ObserveProbeWrite counts one write of a probe writer running beside the
// run (a KV put every second through a client, say): err nil for a write
// the cluster acknowledged, else the error (a timeout counts as failed).
func (m *Metrics) ObserveProbeWrite(err error) {
	m.probeWrites.Inc()
	if err != nil {
		m.probeFailed.Inc()
	}
}

// Observe updates the metrics from one event of a run. It is an
// upgrade.Config.OnEvent; to keep another callback, call both:
//
//	cfg.OnEvent = func(ev upgrade.Event) { m.Observe(ev); mine(ev) }
func (m *Metrics) Observe(ev upgrade.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	m.lastEvent.Set(float64(at.UnixNano()) / 1e9)
	switch ev.Kind {
	case upgrade.EventRunStarted:
		clear(m.touched)
		m.done = 0
		m.stepsDone.Set(0)
		m.stepsPlanned.Set(0)
		m.stepInfo.Reset()
		m.gateCond.Reset()
		m.stepStart, m.gateStart, m.gateEnd = time.Time{}, time.Time{}, time.Time{}
		m.setState(StateRunning)
	case upgrade.EventStepStarted:
		m.setState(StateRunning) // ExecuteStep has no run-started
		m.setStep(ev.Step)
		m.gateCond.Reset()
		m.stepStart, m.gateStart, m.gateEnd = at, time.Time{}, time.Time{}
		m.done = ev.Index
		m.stepsDone.Set(float64(ev.Index))
		if ev.Total > 0 {
			m.stepsPlanned.Set(float64(ev.Total))
		}
	case upgrade.EventGateWaiting:
		if m.gateStart.IsZero() || !m.gateEnd.IsZero() {
			m.gateStart, m.gateEnd = at.Add(-ev.Waited), time.Time{}
		}
		m.gateCond.Reset()
		if ev.Condition != "" {
			m.gateCond.WithLabelValues(string(ev.Condition)).Set(1)
		}
	case upgrade.EventStepDone:
		kind := string(ev.Step.Kind)
		if !m.stepStart.IsZero() {
			m.stepDur.WithLabelValues(kind).Observe(at.Sub(m.stepStart).Seconds())
		}
		waited := 0.0
		if !m.gateStart.IsZero() && m.gateEnd.IsZero() {
			m.gateEnd = at
			waited = at.Sub(m.gateStart).Seconds()
		}
		m.gateWaits.WithLabelValues(kind).Observe(waited)
		m.stepStart = time.Time{}
		m.done = ev.Index + 1
		m.stepsDone.Set(float64(m.done))
		if ev.Total > 0 {
			m.stepsPlanned.Set(float64(ev.Total))
		}
		m.stepInfo.Reset()
		m.gateCond.Reset()
		switch ev.Step.Kind {
		case planner.StepSwapServer, planner.StepAddServer, planner.StepRetireServer, planner.StepTransferLeader:
			m.touch(ev.Step.Datacenter, ev.Step.Node, RoleServer)
		}
	case upgrade.EventNodeStopped, upgrade.EventNodeStarted:
		m.touch(ev.Step.Datacenter, ev.Node, roleOf(ev.Step))
	case upgrade.EventNodeSwapped:
		var se *transport.SwapError
		if ev.Err == nil || !errors.As(ev.Err, &se) || (se.Phase != transport.PhaseValidate && se.Phase != transport.PhaseStage) {
			m.touch(ev.Step.Datacenter, ev.Node, RoleClient)
		}
	case upgrade.EventProvisioned:
		m.touch(ev.Step.Datacenter, ev.Step.Node, RoleServer)
	case upgrade.EventRolledBack:
		result := "ok"
		if ev.Err != nil {
			result = "failed"
		}
		m.rollbacks.WithLabelValues(result).Inc()
	case upgrade.EventHalted:
		m.halts.WithLabelValues(HaltType(ev.Err)).Inc()
		m.setState(StateHalted)
		touched, _ := upgrade.TouchedBy(ev.Err)
		for _, t := range touched {
			m.touch(t.Datacenter, t.Node, string(t.Role))
		}
		if !m.gateStart.IsZero() && m.gateEnd.IsZero() {
			m.gateEnd = at
		}
		m.stepStart = time.Time{}
		if ev.Step.Kind != "" && ev.Step.Kind != planner.StepDone {
			m.setStep(ev.Step)
		}
		if ev.Condition != "" {
			m.gateCond.Reset()
			m.gateCond.WithLabelValues(string(ev.Condition)).Set(1)
		}
	case upgrade.EventStopped:
		m.setState(StateStopped)
		m.stepInfo.Reset()
		m.gateCond.Reset()
	case upgrade.EventDone:
		m.setState(StateDone)
		m.stepInfo.Reset()
		m.gateCond.Reset()
		m.stepsPlanned.Set(float64(m.done))
	}
}

// setState makes state the run's state.
func (m *Metrics) setState(state string) {
	for _, s := range states {
		v := 0.0
		if s == state {
			v = 1
		}
		m.runState.WithLabelValues(s).Set(v)
	}
}

// setStep makes step the one series of step_info.
func (m *Metrics) setStep(step planner.Step) {
	m.stepInfo.Reset()
	node := step.Node
	if step.Kind == planner.StepSwapClients || step.Kind == planner.StepSnapshot {
		node = ""
	}
	m.stepInfo.WithLabelValues(string(step.Kind), step.Datacenter, node, step.From, step.To).Set(1)
}

// touch counts node once per run.
func (m *Metrics) touch(dc, node, role string) {
	if node == "" {
		return
	}
	key := dc + "/" + node
	if m.touched[key] {
		return
	}
	m.touched[key] = true
	m.nodes.WithLabelValues(role).Inc()
}

// gateWaitValue is consul_upgrade_gate_wait_seconds' value now.
func (m *Metrics) gateWaitValue() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gateStart.IsZero() {
		return 0
	}
	end := m.gateEnd
	if end.IsZero() {
		end = time.Now()
	}
	return max(0, end.Sub(m.gateStart).Seconds())
}

// roleOf is the role of the nodes step swaps.
func roleOf(step planner.Step) string {
	if step.Kind == planner.StepSwapClients {
		return RoleClient
	}
	return RoleServer
}

// haltTypes maps the error types a run returns to the type label of
// consul_upgrade_halts_total, most specific first: a *HaltError is
// labelled by its cause.
var haltTypes = []struct {
	label string
	is    func(error) bool
}{
	{"gate", as[*upgrade.GateError]},
	{"stuck", as[*upgrade.StuckError]},
	{"plan-diverged", as[*upgrade.PlanDivergedError]},
	{"stale-plan", as[*planner.StalePlanError]},
	{"refused", as[*planner.RefusedError]},
	{"preflight", as[*upgrade.PreflightError]},
	{"locked", as[*upgrade.LockedError]},
	{"lock-lost", func(err error) bool { return errors.Is(err, upgrade.ErrLockLost) }},
	{"lock-move", as[*upgrade.LockMoveError]},
	{"swap-record", as[*upgrade.SwapRecordError]},
	{"aborted", as[*upgrade.AbortedError]},
	{"quorum", as[*upgrade.QuorumError]},
	{"transfer", as[*upgrade.TransferError]},
	{"backup", func(err error) bool { return errors.Is(err, upgrade.ErrSnapshotInvalid) }},
	{"swap", as[*transport.SwapError]},
	{"agent-unreachable", as[*upgrade.AgentUnreachableError]},
	{"missing-ability", func(err error) bool {
		return errors.Is(err, upgrade.ErrNoEraReader) || errors.Is(err, upgrade.ErrNoServerAPI) ||
			errors.Is(err, upgrade.ErrNoRaftStats) || errors.Is(err, upgrade.ErrEndpointMissing)
	}},
	{"config", as[*upgrade.ConfigError]},
	{"canceled", func(err error) bool {
		return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	}},
	{"step-refused", as[*upgrade.StepRefusedError]},
}

// HaltType is the type label that consul_upgrade_halts_total gives err: the
// first of gate, stuck, plan-diverged, stale-plan, refused, preflight,
// locked, lock-lost, lock-move, swap-record, aborted, quorum, transfer,
// backup (ErrSnapshotInvalid), swap, agent-unreachable, missing-ability
// (ErrNoEraReader, ErrNoServerAPI, ErrNoRaftStats, ErrEndpointMissing),
// config, canceled that err is (or wraps), then step-refused for a
// *StepRefusedError whose cause is none of these, else other. A
// *HaltError or a *StepRefusedError is labelled by its cause.
func HaltType(err error) string {
	for _, t := range haltTypes {
		if t.is(err) {
			return t.label
		}
	}
	return "other"
}

func as[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}
