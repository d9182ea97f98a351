package upgrade

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"
)

func metricsWith(oldestMS, restoreMS float32) *api.MetricsInfo {
	return &api.MetricsInfo{Gauges: []api.GaugeValue{
		{Name: "consul.raft.leader.oldestLogAge", Value: oldestMS},
		{Name: "consul.raft.fsm.lastRestoreDuration", Value: restoreMS},
	}}
}

func TestTheLeadersLogMustCoverARestartPlusItsLastRestore(t *testing.T) {
	restart := 5 * time.Minute
	cases := []struct {
		name        string
		m           *api.MetricsInfo
		warn, check bool
	}{
		{"an hour of log covers a 5m restart and a 30s restore", metricsWith(3600e3, 30e3), false, true},
		{"exactly the restart plus the restore is enough", metricsWith(330e3, 30e3), false, true},
		{"4 minutes of log do not cover a 5m restart", metricsWith(240e3, 0), true, true},
		{"6 minutes do not cover a 5m restart and a 2m restore", metricsWith(360e3, 120e3), true, true},
		{"a custom metrics prefix is read too", &api.MetricsInfo{Gauges: []api.GaugeValue{{Name: "acme.raft.leader.oldestLogAge", Value: 1e3}}}, true, true},
		{"a leader without the gauge is not checked", &api.MetricsInfo{}, false, false},
		// hashicorp/raft's emitLogStoreMetrics sets 0 when it cannot
		// date the oldest entry (no AppendedAt before raft 1.3, or a
		// failed read); the demo's leader reported it right after a
		// restart, and the pre-flight warned "0s old".
		{"a 0 gauge is raft's unknown age, not checked", metricsWith(0, 0), false, false},
		{"a 1ms log is a real (short) age and warns", metricsWith(1, 0), true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			detail, checked := logAgeVerdict("s1", tc.m, restart)
			warned := checked && detail != ""
			if warned != tc.warn || checked != tc.check {
				t.Fatalf("warned %t, checked %t (%q); want %t, %t", warned, checked, detail, tc.warn, tc.check)
			}
			if tc.name == "a 1ms log is a real (short) age and warns" && !strings.Contains(detail, " is 1ms old") {
				t.Errorf("warning %q does not give the age in milliseconds", detail)
			}
			if warned && (!strings.Contains(detail, string(RuleLeaderLogAge)) || !strings.Contains(detail, "raft_trailing_logs") || !strings.Contains(detail, "s1")) {
				t.Errorf("warning %q does not name the rule, the leader and the fix", detail)
			}
		})
	}
}

func TestThePreflightWarnsWhenTheLeadersLogIsTooShortAndTheRunGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.ServerAPI = simServers(t, r.sim)
		r.sim.SetLeaderLogAge(50*time.Second, 5*time.Second) // the rig's gate timeout is 1m
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		var warned []Event
		for _, e := range eventsOf(r, EventPreflight) {
			if strings.Contains(e.Detail, string(RuleLeaderLogAge)) {
				warned = append(warned, e)
			}
		}
		if len(warned) != 1 || warned[0].Node != "s1" || !strings.HasPrefix(warned[0].Detail, "warning") || !strings.Contains(warned[0].Detail, "50s old") {
			t.Errorf("preflight events about the log %+v, want one warning about the leader s1's 50s", warned)
		}
	})
}

func TestWithoutServerAPITheLeaderAskedIsReadItself(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0) // Config.Consul talks to s1, the leader
		r.sim.SetLeaderLogAge(30*time.Second, 0)
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		var warned []Event
		for _, e := range eventsOf(r, EventPreflight) {
			if strings.Contains(e.Detail, string(RuleLeaderLogAge)) {
				warned = append(warned, e)
			}
		}
		if len(warned) != 1 || !strings.HasPrefix(warned[0].Detail, "warning") || !strings.Contains(warned[0].Detail, "30s old") {
			t.Errorf("preflight events about the log %+v, want one warning about the leader's 30s", warned)
		}
	})
}
