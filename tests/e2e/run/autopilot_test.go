package run_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// pinCheckTransport calls before ahead of each swap.
type pinCheckTransport struct {
	*local.Transport
	before func(transport.SwapRequest)
}

func (p *pinCheckTransport) Swap(ctx context.Context, req transport.SwapRequest) error {
	p.before(req)
	return p.Transport.Swap(ctx, req)
}

// TestRunPinsAutopilotDeadServerCleanupOnARealCluster: a real 1.12.9
// cluster of 3 servers and 1 client upgraded to 1.13.9 has autopilot's
// CleanupDeadServers off at every server stop and back on after the run
// (autopilot-cleanup-pinned, hashicorp/consul#5922), and no gate sees an
// election storm (raft-term).
func TestRunPinsAutopilotDeadServerCleanupOnARealCluster(t *testing.T) {
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 3, Clients: 1, Version: scenario.FromVersion})
	client := scenario.APIClient(t, cl, "c1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	before, err := client.Operator().AutopilotGetConfiguration(nil)
	if err != nil {
		t.Fatalf("autopilot configuration: %v", err)
	}
	if !before.CleanupDeadServers {
		t.Fatalf("the rig starts with CleanupDeadServers off; the test needs Consul's default, on")
	}
	termBefore := raftTerm(t, scenario.APIClient(t, cl, scenario.MustLeader(t, cl)))

	var (
		mu         sync.Mutex
		atStops    []bool
		pinned     []string
		restored   []string
		violations []string
	)
	// Each server swap reads autopilot's configuration just before the
	// transport stops the server.
	tr := &pinCheckTransport{Transport: cl.Transport(), before: func(req transport.SwapRequest) {
		if req.Role != transport.RoleServer {
			return
		}
		ac, err := client.Operator().AutopilotGetConfiguration(nil)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			violations = append(violations, "autopilot configuration before the stop of "+req.Node+": "+err.Error())
			return
		}
		atStops = append(atStops, ac.CleanupDeadServers)
	}}
	cfg := scenario.BaseConfig(t, cl, "c1", tr)
	cfg.OnEvent = func(e upgrade.Event) {
		t.Logf("event %-18s %-14s %s %s %s", e.Kind, e.Step.Kind, e.Step.Node, e.Condition, e.Detail)
		mu.Lock()
		defer mu.Unlock()
		switch e.Kind {
		case upgrade.EventAutopilotPinned:
			pinned = append(pinned, e.Detail)
		case upgrade.EventAutopilotRestored:
			if e.Err != nil {
				violations = append(violations, "restore: "+e.Err.Error())
			}
			restored = append(restored, e.Detail)
		case upgrade.EventHalted:
			if e.Condition == planner.GateRaftTerm {
				violations = append(violations, "an election storm was seen: "+e.Err.Error())
			}
		}
	}
	start := time.Now()
	res, err := upgrade.Run(ctx, cfg)
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, v := range violations {
		t.Error(v)
	}
	if len(atStops) != 3 {
		t.Errorf("CleanupDeadServers read at %d server stops, want 3", len(atStops))
	}
	for i, on := range atStops {
		if on {
			t.Errorf("server stop %d happened with CleanupDeadServers on", i+1)
		}
	}
	if len(pinned) != 1 || !strings.Contains(pinned[0], "turned off") || len(restored) != 1 {
		t.Errorf("pinned %q, restored %q; want one of each", pinned, restored)
	}
	after, err := client.Operator().AutopilotGetConfiguration(nil)
	if err != nil {
		t.Fatalf("autopilot configuration after the run: %v", err)
	}
	if !after.CleanupDeadServers {
		t.Errorf("CleanupDeadServers is off after the run, want the operator's value (on) back")
	}
	termAfter := raftTerm(t, scenario.APIClient(t, cl, scenario.MustLeader(t, cl)))
	t.Logf("FIGURES autopilot pin: wall %s; steps %d; CleanupDeadServers at the 3 stops %v, after %t; ModifyIndex %d -> %d; raft term %d -> %d",
		wall.Round(100*time.Millisecond), len(res.Steps), atStops, after.CleanupDeadServers, before.ModifyIndex, after.ModifyIndex, termBefore, termAfter)
}
