package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// autopilotAtSwaps records a field of autopilot's configuration at each
// server swap the transport is asked for, before it stops the server.
func autopilotAtSwaps(r *runRig, field func(api.AutopilotConfiguration) bool) func() []bool {
	var mu sync.Mutex
	var seen []bool
	inner := r.tr.onSwap
	r.tr.onSwap = func(node, version string, ok bool) {
		if strings.HasPrefix(node, "s") {
			mu.Lock()
			seen = append(seen, field(r.sim.AutopilotConfig()))
			mu.Unlock()
		}
		inner(node, version, ok)
	}
	return func() []bool {
		mu.Lock()
		defer mu.Unlock()
		return append([]bool(nil), seen...)
	}
}

// cleanupAtSwaps records CleanupDeadServers at each server swap.
func cleanupAtSwaps(r *runRig) func() []bool {
	return autopilotAtSwaps(r, func(c api.AutopilotConfiguration) bool { return c.CleanupDeadServers })
}

func eventsOf(r *runRig, k EventKind) []Event {
	var out []Event
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func TestARunTurnsDeadServerCleanupOffBeforeTheFirstServerStopAndRestoresItAtTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1)
		before := r.sim.AutopilotConfig()
		if !before.CleanupDeadServers {
			t.Fatalf("the simulated cluster starts with CleanupDeadServers off; the test needs Consul's default, on")
		}
		seen := cleanupAtSwaps(r)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		got := seen()
		if len(got) != 3 {
			t.Fatalf("CleanupDeadServers seen at %d server swaps, want 3", len(got))
		}
		for i, on := range got {
			if on {
				t.Errorf("server swap %d stopped a server while autopilot's dead-server cleanup was on (%s)", i+1, RuleAutopilotPinned)
			}
		}
		after := r.sim.AutopilotConfig()
		if !after.CleanupDeadServers {
			t.Errorf("CleanupDeadServers is off after the run, want the operator's value (on) back")
		}
		if after.ServerStabilizationTime.Duration() != before.ServerStabilizationTime.Duration() || after.MaxTrailingLogs != before.MaxTrailingLogs || after.LastContactThreshold.Duration() != before.LastContactThreshold.Duration() {
			t.Errorf("the run changed other settings: before %+v, after %+v", before, after)
		}
		if w := r.sim.AutopilotWrites(); len(w) != 2 {
			t.Errorf("%d autopilot writes, want 2 (pin once, restore once): %+v", len(w), w)
		}
		pinned, restored := eventsOf(r, EventAutopilotPinned), eventsOf(r, EventAutopilotRestored)
		if len(pinned) != 1 || !strings.Contains(pinned[0].Detail, "turned off") || len(restored) != 1 || restored[0].Err != nil {
			t.Errorf("pinned events %+v, restored events %+v: want one of each, the restore without error", pinned, restored)
		}
	})
}

func TestARunThatHaltsStillRestoresDeadServerCleanupUnderAContextOfItsOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		inner := r.tr.onSwap
		r.tr.onSwap = func(node, version string, ok bool) {
			inner(node, version, ok)
			cancel() // the operator pressed ^C during the first swap
		}
		_, err := Run(ctx, r.cfg)
		if err == nil {
			t.Fatal("Run of a cancelled context returned nil")
		}
		if !r.sim.AutopilotConfig().CleanupDeadServers {
			t.Errorf("a cancelled run left CleanupDeadServers off")
		}
		if restored := eventsOf(r, EventAutopilotRestored); len(restored) != 1 || restored[0].Err != nil {
			t.Errorf("restored events %+v, want one without error", restored)
		}
	})
}

func TestARunLeavesAnAutopilotConfigurationSomeoneElseChangedAndSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		inner := r.tr.onSwap
		once := sync.Once{}
		r.tr.onSwap = func(node, version string, ok bool) {
			once.Do(func() {
				r.sim.SetAutopilotConfig(func(ac *api.AutopilotConfiguration) { ac.MaxTrailingLogs = 500 })
			})
			inner(node, version, ok)
		}
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		after := r.sim.AutopilotConfig()
		if after.CleanupDeadServers || after.MaxTrailingLogs != 500 {
			t.Errorf("the run overwrote a configuration someone else changed: %+v", after)
		}
		restored := eventsOf(r, EventAutopilotRestored)
		if len(restored) != 1 || !errors.Is(restored[0].Err, ErrAutopilotChanged) {
			t.Fatalf("restored events %+v, want one whose Err wraps ErrAutopilotChanged", restored)
		}
		for _, want := range []string{"left as it is", "-cleanup-dead-servers=true"} {
			if !strings.Contains(restored[0].Err.Error(), want) {
				t.Errorf("restore error %q does not say %q", restored[0].Err, want)
			}
		}
	})
}

func TestARunLeavesDeadServerCleanupTheOperatorTurnedOffAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.sim.SetAutopilotConfig(func(ac *api.AutopilotConfiguration) { ac.CleanupDeadServers = false })
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if w := r.sim.AutopilotWrites(); len(w) != 1 {
			t.Errorf("the run wrote the autopilot configuration %d time(s), want never (only the operator's write)", len(w)-1)
		}
		if pinned := eventsOf(r, EventAutopilotPinned); len(pinned) != 1 || !strings.Contains(pinned[0].Detail, "off already") {
			t.Errorf("pinned events %+v, want one saying it is off already", pinned)
		}
	})
}

func TestARunOnAnEraWithoutAutopilotPinsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRigAt(t, "0.7.5", 3, 0, consultest.WithEra(consultest.Era07))
		r.cfg.Target = "0.8.5"
		r.cfg.ServerAPI = simServers(t, r.sim)
		_, err := Run(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if n := r.sim.Calls("/v1/operator/autopilot/configuration"); n == 0 {
			t.Errorf("the run never asked for the autopilot configuration")
		}
		if w := r.sim.AutopilotWrites(); len(w) != 0 {
			t.Errorf("the run wrote the autopilot configuration of a 0.7 cluster: %+v", w)
		}
		if pinned := eventsOf(r, EventAutopilotPinned); len(pinned) != 1 || !strings.Contains(pinned[0].Detail, "no autopilot configuration") {
			t.Errorf("pinned events %+v, want one saying there is no autopilot configuration", pinned)
		}
	})
}

func TestARefusedPinStopsNoServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Consul = Intercept(r.cfg.Consul, func(ctx context.Context, call string, do func(context.Context) error) error {
			if call == "AutopilotCASConfiguration" {
				return errors.New("Permission denied: token lacks operator:write")
			}
			return do(ctx)
		})
		_, err := Run(t.Context(), r.cfg)
		var sr *StepRefusedError
		if !errors.As(err, &sr) || !strings.Contains(err.Error(), string(RuleAutopilotPinned)) || !strings.Contains(err.Error(), "operator:write") {
			t.Fatalf("err = %v, want a *StepRefusedError naming %s and the fix", err, RuleAutopilotPinned)
		}
		for _, s := range r.tr.swapped() {
			if s.Role == transport.RoleServer {
				t.Errorf("server %s was swapped although the pin was refused", s.Node)
			}
		}
	})
}

func TestARunPinsDeadServerCleanupOnceAHopBringsAutopilot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRigAt(t, "0.7.5", 3, 0, consultest.WithEra(consultest.Era07))
		r.cfg.Target = "0.8.5"
		r.cfg.ServerAPI = simServers(t, r.sim)
		seen := cleanupAtSwaps(r)
		inner := r.tr.onSwap
		var once sync.Once
		r.tr.onSwap = func(node, version string, ok bool) {
			inner(node, version, ok)
			// The first 0.8.5 server answers the autopilot configuration
			// from now on (the endpoint is the agent's own).
			once.Do(func() { r.sim.SetEra(consultest.Era08Raft2) })
		}
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		got := seen()
		if len(got) != 3 || got[1] || got[2] {
			t.Errorf("CleanupDeadServers at the 3 server stops: %v, want the 2nd and 3rd off (the 1st had no autopilot)", got)
		}
		if !r.sim.AutopilotConfig().CleanupDeadServers || len(r.sim.AutopilotWrites()) != 2 {
			t.Errorf("after the run: %+v, writes %d; want it pinned once and restored", r.sim.AutopilotConfig(), len(r.sim.AutopilotWrites()))
		}
		pinned := eventsOf(r, EventAutopilotPinned)
		if len(pinned) != 2 || !strings.Contains(pinned[0].Detail, "no autopilot configuration") || !strings.Contains(pinned[1].Detail, "turned off") {
			t.Errorf("pinned events %+v, want 'none yet', then 'turned off'", pinned)
		}
	})
}

// migrationAtSwaps records DisableUpgradeMigration at each server swap.
func migrationAtSwaps(r *runRig) func() []bool {
	return autopilotAtSwaps(r, func(c api.AutopilotConfiguration) bool { return c.DisableUpgradeMigration })
}

// On Consul Enterprise in place, the run also turns upgrade migration off
// for its stops (RuleUpgradeMigrationPinned) and puts the operator's value
// back; an operator who turned it off already is left alone.
func TestAnEnterpriseRunInPlaceDisablesUpgradeMigrationForItsStopsAndRestoresIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Policy.Enterprise = true
		seen := migrationAtSwaps(r)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		got := seen()
		if len(got) != 3 || got[0] != true || got[1] != true || got[2] != true {
			t.Errorf("DisableUpgradeMigration at the server swaps %v, want true at all 3", got)
		}
		if after := r.sim.AutopilotConfig(); after.DisableUpgradeMigration || !after.CleanupDeadServers {
			t.Errorf("after the run %+v: want the operator's values back (migration on, cleanup on)", after)
		}
		pinned := eventsOf(r, EventAutopilotPinned)
		if len(pinned) != 1 || !strings.Contains(pinned[0].Detail, string(RuleUpgradeMigrationPinned)) {
			t.Errorf("pinned events %+v: want one naming %s", pinned, RuleUpgradeMigrationPinned)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Policy.Enterprise = true
		r.sim.SetAutopilotConfig(func(ac *api.AutopilotConfiguration) { ac.DisableUpgradeMigration = true })
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if after := r.sim.AutopilotConfig(); !after.DisableUpgradeMigration {
			t.Errorf("the operator's DisableUpgradeMigration (on) was not left as it was: %+v", after)
		}
	})
}

// A CE run never touches upgrade migration (a field CE does not act on).
func TestACERunLeavesUpgradeMigrationAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		seen := migrationAtSwaps(r)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		for i, on := range seen() {
			if on {
				t.Errorf("server swap %d: DisableUpgradeMigration was set on a CE cluster", i+1)
			}
		}
		for _, w := range r.sim.AutopilotWrites() {
			if w.DisableUpgradeMigration {
				t.Errorf("a CE run wrote DisableUpgradeMigration: %+v", w)
			}
		}
	})
}

// A run that died with dead-server cleanup pinned left its record next to
// the lock: the next run takes the pin over (the configuration still at
// the dead run's index) and restores the operator's value, instead of
// taking the dead run's "off" for it; the record is gone afterwards.
func TestARunRestoresTheCleanupADeadRunPinnedAndLeftItsRecordFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.sim.SetAutopilotConfig(func(ac *api.AutopilotConfiguration) { ac.CleanupDeadServers = false })
		idx := r.sim.AutopilotConfig().ModifyIndex
		r.sim.PutKV("consul-upgrade/autopilot", []byte(fmt.Sprintf(`{"dc1":{"cleanup_dead_servers":true,"modify_index":%d}}`, idx)))
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !r.sim.AutopilotConfig().CleanupDeadServers {
			t.Errorf("CleanupDeadServers is off after the run: the dead run's pin was taken for the operator's value")
		}
		if _, ok := r.sim.KV("consul-upgrade/autopilot"); ok {
			t.Errorf("the pin record is still there after the run restored the value")
		}
		pinned := eventsOf(r, EventAutopilotPinned)
		if len(pinned) != 1 || !strings.Contains(pinned[0].Detail, "ended without restoring it") {
			t.Errorf("pinned events %+v: want one saying the earlier run's pin was taken over", pinned)
		}
	})
	// The configuration changed since the dead run's write: it is the
	// operator's now, and left as it is.
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.sim.SetAutopilotConfig(func(ac *api.AutopilotConfiguration) { ac.CleanupDeadServers = false })
		idx := r.sim.AutopilotConfig().ModifyIndex
		r.sim.PutKV("consul-upgrade/autopilot", []byte(fmt.Sprintf(`{"dc1":{"cleanup_dead_servers":true,"modify_index":%d}}`, idx)))
		r.sim.SetAutopilotConfig(func(ac *api.AutopilotConfiguration) { ac.MaxTrailingLogs = 500 })
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if r.sim.AutopilotConfig().CleanupDeadServers {
			t.Errorf("CleanupDeadServers turned on: a configuration the operator changed since the dead run was overwritten")
		}
	})
}

// While a run has cleanup pinned, the record of the operator's value is
// next to the lock (a run that dies then leaves it for the next).
func TestThePinRecordIsKeptWhileTheRunHoldsThePin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		var during []string
		inner := r.tr.onSwap
		r.tr.onSwap = func(node, version string, ok bool) {
			b, _ := r.sim.KV("consul-upgrade/autopilot")
			during = append(during, string(b))
			inner(node, version, ok)
		}
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if len(during) == 0 || !strings.Contains(during[0], `"cleanup_dead_servers":true`) {
			t.Errorf("pin record at the swaps %q: want the operator's value (true) recorded", during)
		}
	})
}
