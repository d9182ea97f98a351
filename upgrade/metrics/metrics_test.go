package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/metrics"
)

// newMetrics is a Metrics on a registry of its own.
func newMetrics(t *testing.T) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// value is the value of the one series of name whose labels are labels
// ("k=v,k=v"; "" for a metric without labels); found false when there is
// no such series.
func value(t *testing.T, reg prometheus.Gatherer, name, labels string) (v float64, found bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				got = append(got, lp.GetName()+"="+lp.GetValue())
			}
			if strings.Join(got, ",") != labels {
				continue
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// want fails the test unless name{labels} is v.
func want(t *testing.T, reg prometheus.Gatherer, name, labels string, v float64) {
	t.Helper()
	got, found := value(t, reg, name, labels)
	if !found {
		t.Errorf("%s{%s}: no such series", name, labels)
	} else if got != v {
		t.Errorf("%s{%s} = %g, want %g", name, labels, got, v)
	}
}

// absent fails the test if name has any series.
func absent(t *testing.T, reg prometheus.Gatherer, name string) {
	t.Helper()
	if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
		t.Errorf("%s has %d series (err %v), want none", name, n, err)
	}
}

var (
	t0       = time.Date(2015, 6, 1, 12, 0, 0, 0, time.UTC)
	snapshot = planner.Step{Kind: planner.StepSnapshot, Datacenter: "dc1", From: "1.12.9", To: "1.12.9", Nodes: []string{"s1"}}
	swapS2   = planner.Step{Kind: planner.StepSwapServer, Datacenter: "dc1", Node: "s2", From: "1.12.9", To: "1.13.9"}
	wave     = planner.Step{Kind: planner.StepSwapClients, Datacenter: "dc1", Nodes: []string{"c1", "c2"}, To: "1.13.9"}
)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestARunShowsItsProgressStepByStepAndEndsDone(t *testing.T) {
	m, reg := newMetrics(t)
	m.Observe(upgrade.Event{Kind: upgrade.EventRunStarted, Time: at(0)})
	want(t, reg, "consul_upgrade_run_state", "state=running", 1)
	want(t, reg, "consul_upgrade_run_state", "state=done", 0)

	m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Time: at(1), Step: snapshot, Index: 0, Total: 3})
	want(t, reg, "consul_upgrade_step_info", "datacenter=dc1,from=1.12.9,kind=snapshot,node=,to=1.12.9", 1)
	want(t, reg, "consul_upgrade_steps_planned", "", 3)
	want(t, reg, "consul_upgrade_steps_done", "", 0)
	m.Observe(upgrade.Event{Kind: upgrade.EventStepDone, Time: at(3), Step: snapshot, Index: 0, Total: 3})
	want(t, reg, "consul_upgrade_steps_done", "", 1)
	absent(t, reg, "consul_upgrade_step_info")

	m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Time: at(4), Step: swapS2, Index: 1, Total: 3})
	want(t, reg, "consul_upgrade_step_info", "datacenter=dc1,from=1.12.9,kind=swap-server,node=s2,to=1.13.9", 1)
	m.Observe(upgrade.Event{Kind: upgrade.EventNodeStopped, Time: at(4.5), Step: swapS2, Node: "s2", Index: 1, Total: 3})
	m.Observe(upgrade.Event{Kind: upgrade.EventNodeStarted, Time: at(5), Step: swapS2, Node: "s2", Index: 1, Total: 3})
	m.Observe(upgrade.Event{Kind: upgrade.EventGateWaiting, Time: at(6), Step: swapS2, Node: "s2", Condition: planner.GateStable, Waited: time.Second, Index: 1, Total: 3})
	want(t, reg, "consul_upgrade_gate_condition_info", "condition=stable", 1)
	m.Observe(upgrade.Event{Kind: upgrade.EventGateWaiting, Time: at(8), Step: swapS2, Condition: planner.GateFailureTolerance, Waited: 3 * time.Second, Index: 1, Total: 3})
	want(t, reg, "consul_upgrade_gate_condition_info", "condition=failure-tolerance", 1)
	if n, _ := testutil.GatherAndCount(reg, "consul_upgrade_gate_condition_info"); n != 1 {
		t.Errorf("gate_condition_info has %d series, want only the condition waited on now", n)
	}
	m.Observe(upgrade.Event{Kind: upgrade.EventStepDone, Time: at(15), Step: swapS2, Index: 1, Total: 3})
	want(t, reg, "consul_upgrade_steps_done", "", 2)
	want(t, reg, "consul_upgrade_gate_wait_seconds", "", 10) // the gate began at 5s (6s less 1s waited) and passed at 15s
	absent(t, reg, "consul_upgrade_gate_condition_info")

	m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Time: at(16), Step: wave, Index: 2, Total: 3})
	want(t, reg, "consul_upgrade_gate_wait_seconds", "", 0)
	want(t, reg, "consul_upgrade_step_info", "datacenter=dc1,from=,kind=swap-clients,node=,to=1.13.9", 1)
	m.Observe(upgrade.Event{Kind: upgrade.EventNodeSwapped, Time: at(18), Step: wave, Node: "c1", Index: 2, Total: 3})
	m.Observe(upgrade.Event{Kind: upgrade.EventNodeSwapped, Time: at(19), Step: wave, Node: "c2", Index: 2, Total: 3})
	m.Observe(upgrade.Event{Kind: upgrade.EventStepDone, Time: at(20), Step: wave, Index: 2, Total: 3})
	m.Observe(upgrade.Event{Kind: upgrade.EventDone, Time: at(21), Step: planner.Step{Kind: planner.StepDone}})

	want(t, reg, "consul_upgrade_run_state", "state=done", 1)
	want(t, reg, "consul_upgrade_run_state", "state=running", 0)
	want(t, reg, "consul_upgrade_steps_done", "", 3)
	want(t, reg, "consul_upgrade_steps_planned", "", 3)
	want(t, reg, "consul_upgrade_nodes_touched_total", "role=server", 1)
	want(t, reg, "consul_upgrade_nodes_touched_total", "role=client", 2)
	want(t, reg, "consul_upgrade_step_duration_seconds", "kind=swap-server", 1)
	want(t, reg, "consul_upgrade_gate_wait_duration_seconds", "kind=snapshot", 1)
	want(t, reg, "consul_upgrade_halts_total", "type=gate", 0)
	want(t, reg, "consul_upgrade_last_event_timestamp_seconds", "", float64(at(21).Unix()))
	absent(t, reg, "consul_upgrade_step_info")

	// The histograms hold the seconds: the swap took 11s (4s to 15s), its
	// gate waited 10s; the snapshot's gate never waited.
	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP consul_upgrade_gate_wait_duration_seconds Wait of each gate that passed, from the first condition that did not hold to the pass (0: passed at its first look), by step kind.
# TYPE consul_upgrade_gate_wait_duration_seconds histogram
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="0.5"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="1"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="2.5"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="5"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="10"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="15"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="20"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="30"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="60"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="120"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="300"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="600"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="snapshot",le="+Inf"} 1
consul_upgrade_gate_wait_duration_seconds_sum{kind="snapshot"} 0
consul_upgrade_gate_wait_duration_seconds_count{kind="snapshot"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="0.5"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="1"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="2.5"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="5"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="10"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="15"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="20"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="30"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="60"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="120"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="300"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="600"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-clients",le="+Inf"} 1
consul_upgrade_gate_wait_duration_seconds_sum{kind="swap-clients"} 0
consul_upgrade_gate_wait_duration_seconds_count{kind="swap-clients"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="0.5"} 0
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="1"} 0
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="2.5"} 0
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="5"} 0
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="10"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="15"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="20"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="30"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="60"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="120"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="300"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="600"} 1
consul_upgrade_gate_wait_duration_seconds_bucket{kind="swap-server",le="+Inf"} 1
consul_upgrade_gate_wait_duration_seconds_sum{kind="swap-server"} 10
consul_upgrade_gate_wait_duration_seconds_count{kind="swap-server"} 1
`), "consul_upgrade_gate_wait_duration_seconds")
	if err != nil {
		t.Error(err)
	}
	if got := sum(t, reg, "consul_upgrade_step_duration_seconds", "kind=swap-server"); got != 11 {
		t.Errorf("step_duration_seconds_sum{kind=swap-server} = %g, want 11", got)
	}
}

// sum is the sample sum of a histogram series.
func sum(t *testing.T, reg prometheus.Gatherer, name, labels string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				got = append(got, lp.GetName()+"="+lp.GetValue())
			}
			if strings.Join(got, ",") == labels {
				return m.GetHistogram().GetSampleSum()
			}
		}
	}
	t.Fatalf("%s{%s}: no such series", name, labels)
	return 0
}

func TestTheGateWaitGrowsWhileTheGateWaitsAndKeepsItsFinalValueUntilTheNextStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, reg := newMetrics(t)
		m.Observe(upgrade.Event{Kind: upgrade.EventRunStarted})
		m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Time: time.Now(), Step: swapS2, Index: 1, Total: 3})
		time.Sleep(2 * time.Second) // the swap
		want(t, reg, "consul_upgrade_gate_wait_seconds", "", 0)
		time.Sleep(500 * time.Millisecond) // the gate's first look finds the server not stable
		m.Observe(upgrade.Event{Kind: upgrade.EventGateWaiting, Time: time.Now(), Step: swapS2, Condition: planner.GateStable, Waited: 500 * time.Millisecond})
		want(t, reg, "consul_upgrade_gate_wait_seconds", "", 0.5)
		time.Sleep(10 * time.Second) // no event: the gauge grows by itself
		want(t, reg, "consul_upgrade_gate_wait_seconds", "", 10.5)
		m.Observe(upgrade.Event{Kind: upgrade.EventGateWaiting, Time: time.Now(), Step: swapS2, Condition: planner.GateStable, Waited: 10500 * time.Millisecond})
		time.Sleep(time.Second)
		m.Observe(upgrade.Event{Kind: upgrade.EventStepDone, Time: time.Now(), Step: swapS2, Index: 1, Total: 3})
		want(t, reg, "consul_upgrade_gate_wait_seconds", "", 11.5)
		time.Sleep(time.Minute) // between steps: the last gate's wait stays
		want(t, reg, "consul_upgrade_gate_wait_seconds", "", 11.5)
		m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Time: time.Now(), Step: wave, Index: 2, Total: 3})
		want(t, reg, "consul_upgrade_gate_wait_seconds", "", 0)
	})
}

func TestAHaltIsCountedByItsCauseAndNamesTheStepAndConditionItStoppedAt(t *testing.T) {
	m, reg := newMetrics(t)
	m.Observe(upgrade.Event{Kind: upgrade.EventRunStarted, Time: at(0)})
	m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Time: at(1), Step: swapS2, Index: 1, Total: 5})
	m.Observe(upgrade.Event{Kind: upgrade.EventGateWaiting, Time: at(3), Step: swapS2, Condition: planner.GateAutopilotHealthy, Waited: time.Second})
	gerr := &upgrade.GateError{Step: swapS2, Node: "s2", Condition: planner.GateAutopilotHealthy, Err: upgrade.ErrGateTimeout, Timeout: time.Minute}
	herr := &upgrade.HaltError{Step: swapS2, Err: gerr, Touched: upgrade.Touched{
		{Node: "s2", Datacenter: "dc1", Role: transport.RoleServer, Step: planner.StepSwapServer, Stopped: true, Started: true},
	}}
	m.Observe(upgrade.Event{Kind: upgrade.EventHalted, Time: at(62), Step: swapS2, Condition: planner.GateAutopilotHealthy, Err: herr})

	want(t, reg, "consul_upgrade_halts_total", "type=gate", 1)
	want(t, reg, "consul_upgrade_halts_total", "type=other", 0)
	want(t, reg, "consul_upgrade_run_state", "state=halted", 1)
	want(t, reg, "consul_upgrade_run_state", "state=running", 0)
	want(t, reg, "consul_upgrade_step_info", "datacenter=dc1,from=1.12.9,kind=swap-server,node=s2,to=1.13.9", 1)
	want(t, reg, "consul_upgrade_gate_condition_info", "condition=autopilot-healthy", 1)
	want(t, reg, "consul_upgrade_gate_wait_seconds", "", 60) // from 2s to the halt at 62s
	want(t, reg, "consul_upgrade_steps_done", "", 1)
	// The transport reported nothing (no node-stopped): the halt's record
	// is what says s2 was touched.
	want(t, reg, "consul_upgrade_nodes_touched_total", "role=server", 1)
	absent(t, reg, "consul_upgrade_gate_wait_duration_seconds") // only gates that passed
}

func TestHaltTypesNameTheCauseOfTheHaltNotItsWrapper(t *testing.T) {
	gate := &upgrade.GateError{Condition: planner.GateStable, Err: upgrade.ErrGateTimeout}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&upgrade.HaltError{Err: gate}, "gate"},
		{&upgrade.HaltError{Err: &upgrade.GateError{Err: context.Canceled}}, "gate"}, // a gate cut by the context is still the gate's halt
		{&upgrade.HaltError{Err: &upgrade.StuckError{}}, "stuck"},
		{&upgrade.HaltError{Err: &upgrade.PlanDivergedError{}}, "plan-diverged"},
		{&upgrade.HaltError{Err: &planner.StalePlanError{}}, "stale-plan"},
		{&planner.RefusedError{}, "refused"},
		{&upgrade.PreflightError{}, "preflight"},
		{&upgrade.LockedError{}, "locked"},
		{&upgrade.HaltError{Err: fmt.Errorf("%w: its session was invalidated", upgrade.ErrLockLost)}, "lock-lost"},
		{&upgrade.SwapRecordError{}, "swap-record"},
		{&upgrade.AbortedError{}, "aborted"},
		{&upgrade.StepRefusedError{Err: &upgrade.QuorumError{}}, "quorum"},
		{&upgrade.HaltError{Err: &upgrade.LockMoveError{}}, "lock-move"},
		{&upgrade.StepRefusedError{Err: fmt.Errorf("snapshot: %w: checksum", upgrade.ErrSnapshotInvalid)}, "backup"},
		{&upgrade.HaltError{Err: &upgrade.MissingEndpointError{}}, "missing-ability"},
		{&upgrade.StepRefusedError{Err: upgrade.ErrNoEraReader}, "missing-ability"},
		{&upgrade.StepRefusedError{Err: fmt.Errorf("refused: %w", context.Canceled)}, "canceled"},
		{&upgrade.StepRefusedError{Err: errors.New("observe: connection refused")}, "step-refused"},
		{&upgrade.HaltError{Err: &upgrade.TransferError{}}, "transfer"},
		{&upgrade.HaltError{Err: &transport.SwapError{Node: "s2", Phase: transport.PhaseStart, Err: errors.New("exit 1")}}, "swap"},
		{&upgrade.ConfigError{Field: "Target"}, "config"},
		{fmt.Errorf("discover: %w", context.DeadlineExceeded), "canceled"},
		{errors.New("connection refused"), "other"},
		{nil, "other"},
	} {
		if got := metrics.HaltType(tc.err); got != tc.want {
			t.Errorf("HaltType(%T %v) = %q, want %q", tc.err, tc.err, got, tc.want)
		}
	}
}

func TestEachNodeCountsOncePerRunAndAClientSwapRefusedBeforeTheStopNotAtAll(t *testing.T) {
	m, reg := newMetrics(t)
	for run := 1; run <= 2; run++ {
		m.Observe(upgrade.Event{Kind: upgrade.EventRunStarted})
		m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Step: swapS2})
		m.Observe(upgrade.Event{Kind: upgrade.EventNodeStopped, Step: swapS2, Node: "s2"})
		m.Observe(upgrade.Event{Kind: upgrade.EventNodeStarted, Step: swapS2, Node: "s2"})
		m.Observe(upgrade.Event{Kind: upgrade.EventStepDone, Step: swapS2})
		m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Step: wave})
		m.Observe(upgrade.Event{Kind: upgrade.EventNodeSwapped, Step: wave, Node: "c1"})
		m.Observe(upgrade.Event{Kind: upgrade.EventNodeSwapped, Step: wave, Node: "c2",
			Err: &transport.SwapError{Node: "c2", Phase: transport.PhaseValidate, Err: errors.New("no binary")}})
		want(t, reg, "consul_upgrade_nodes_touched_total", "role=server", float64(run))
		want(t, reg, "consul_upgrade_nodes_touched_total", "role=client", float64(run))
	}
	// A swap that failed after its stop did touch the node.
	m.Observe(upgrade.Event{Kind: upgrade.EventNodeSwapped, Step: wave, Node: "c2",
		Err: &transport.SwapError{Node: "c2", Phase: transport.PhaseStart, Err: errors.New("exit 1")}})
	want(t, reg, "consul_upgrade_nodes_touched_total", "role=client", 3)
}

func TestARunStartedAgainStartsItsGaugesAfreshAndKeepsTheCounters(t *testing.T) {
	m, reg := newMetrics(t)
	m.Observe(upgrade.Event{Kind: upgrade.EventRunStarted})
	m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Step: swapS2, Index: 3, Total: 5})
	m.Observe(upgrade.Event{Kind: upgrade.EventHalted, Step: swapS2, Err: &upgrade.HaltError{Step: swapS2, Err: &upgrade.StuckError{Step: swapS2}}})
	m.Observe(upgrade.Event{Kind: upgrade.EventRunStarted})
	want(t, reg, "consul_upgrade_run_state", "state=running", 1)
	want(t, reg, "consul_upgrade_run_state", "state=halted", 0)
	want(t, reg, "consul_upgrade_steps_done", "", 0)
	want(t, reg, "consul_upgrade_steps_planned", "", 0)
	absent(t, reg, "consul_upgrade_step_info")
	want(t, reg, "consul_upgrade_halts_total", "type=stuck", 1)
}

func TestARunStoppedByMaxStepsShowsWhereItStopped(t *testing.T) {
	m, reg := newMetrics(t)
	m.Observe(upgrade.Event{Kind: upgrade.EventRunStarted})
	m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Step: swapS2, Index: 2, Total: 5})
	m.Observe(upgrade.Event{Kind: upgrade.EventStepDone, Step: swapS2, Index: 2, Total: 5})
	m.Observe(upgrade.Event{Kind: upgrade.EventStopped, Step: wave, Index: 3, Total: 5})
	want(t, reg, "consul_upgrade_run_state", "state=stopped", 1)
	want(t, reg, "consul_upgrade_steps_done", "", 3)
	want(t, reg, "consul_upgrade_steps_planned", "", 5)
	absent(t, reg, "consul_upgrade_step_info")
}

func TestRollbacksAreCountedByResult(t *testing.T) {
	m, reg := newMetrics(t)
	m.Observe(upgrade.Event{Kind: upgrade.EventRolledBack, Step: swapS2})
	m.Observe(upgrade.Event{Kind: upgrade.EventRolledBack, Step: swapS2, Err: errors.New("exit 1")})
	m.Observe(upgrade.Event{Kind: upgrade.EventRolledBack, Step: swapS2, Err: errors.New("exit 1")})
	want(t, reg, "consul_upgrade_rollbacks_total", "result=ok", 1)
	want(t, reg, "consul_upgrade_rollbacks_total", "result=failed", 2)
}

func TestProbeWritesAreCountedAndTheFailedOnesApart(t *testing.T) {
	m, reg := newMetrics(t)
	want(t, reg, "consul_upgrade_probe_writes_total", "", 0)
	for i := range 10 {
		var err error
		if i%4 == 0 {
			err = context.DeadlineExceeded
		}
		m.ObserveProbeWrite(err)
	}
	want(t, reg, "consul_upgrade_probe_writes_total", "", 10)
	want(t, reg, "consul_upgrade_probe_writes_failed_total", "", 3)
}

func TestTheMetricsFollowPrometheusNamingConventions(t *testing.T) {
	m, reg := newMetrics(t)
	// Every metric with a series, so the linter sees them all.
	m.Observe(upgrade.Event{Kind: upgrade.EventRunStarted})
	m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Step: swapS2})
	m.Observe(upgrade.Event{Kind: upgrade.EventGateWaiting, Step: swapS2, Condition: planner.GateStable})
	m.Observe(upgrade.Event{Kind: upgrade.EventStepDone, Step: swapS2})
	m.Observe(upgrade.Event{Kind: upgrade.EventHalted, Step: swapS2, Condition: planner.GateStable, Err: errors.New("x")})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 14 {
		t.Errorf("%d metrics gathered, want the 14 of the package doc", len(mfs))
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if row := "//\t" + strings.TrimPrefix(mf.GetName(), "consul_upgrade_") + " "; !strings.Contains(string(doc), row) {
			t.Errorf("%s has no row in the package doc's table", mf.GetName())
		}
		if !strings.HasPrefix(mf.GetName(), "consul_upgrade_") {
			t.Errorf("%s lacks the consul_upgrade_ prefix", mf.GetName())
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s has no help", mf.GetName())
		}
	}
}

func TestASecondMetricsOnOneRegistryIsAnErrorNotAPanic(t *testing.T) {
	_, reg := newMetrics(t)
	if _, err := metrics.New(reg); err == nil {
		t.Fatal("a second New on the same registry succeeded")
	}
	if _, err := metrics.New(nil); err == nil || !strings.Contains(err.Error(), "prometheus.NewRegistry()") {
		t.Errorf("New(nil) = %v, want an error saying what to pass", err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("the registry after the refused New: %v", err)
	}
	// Each wrapped with a label of its own, two clusters' metrics fit on
	// one registry.
	shared := prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} {
		m, err := metrics.New(prometheus.WrapRegistererWith(prometheus.Labels{"cluster": name}, shared))
		if err != nil {
			t.Fatalf("New for cluster %s: %v", name, err)
		}
		m.ObserveProbeWrite(nil)
	}
	want(t, shared, "consul_upgrade_probe_writes_total", "cluster=a", 1)
	want(t, shared, "consul_upgrade_probe_writes_total", "cluster=b", 1)
}

func TestTheHandlerServesTheRunsMetricsBesideTheProcesss(t *testing.T) {
	m, h, err := metrics.NewHandler()
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(upgrade.Event{Kind: upgrade.EventRunStarted})
	m.Observe(upgrade.Event{Kind: upgrade.EventStepStarted, Step: swapS2, Index: 1, Total: 5})
	m.ObserveProbeWrite(nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, line := range []string{
		"# TYPE consul_upgrade_steps_done gauge",
		"consul_upgrade_steps_done 1",
		"consul_upgrade_steps_planned 5",
		`consul_upgrade_step_info{datacenter="dc1",from="1.12.9",kind="swap-server",node="s2",to="1.13.9"} 1`,
		`consul_upgrade_run_state{state="running"} 1`,
		"consul_upgrade_probe_writes_total 1",
		"# TYPE consul_upgrade_nodes_touched_total counter",
		"# TYPE go_goroutines gauge",
		"# TYPE process_cpu_seconds_total counter",
	} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("the scrape lacks %q", line)
		}
	}
}
