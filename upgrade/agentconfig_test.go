package upgrade

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// Every option of the table fires on a configuration that sets it on a
// path that crosses its release, and stays quiet on the defaults and on a
// path that does not cross it.
func TestEveryAgentOptionFiresWhenSetOnAPathAcrossItsReleaseAndOnlyThen(t *testing.T) {
	type self = map[string]map[string]any
	cases := []struct {
		rule           planner.RuleID
		from, to       string
		set, unset     self
		wantValue      string
		wantSeverity   planner.Severity
		doesNotCrossTo string
	}{
		{planner.RuleReapRemoved071, "0.6.4", "0.7.5",
			self{"Config": {"NodeName": "s1", "Reap": false}}, self{"Config": {"NodeName": "s1", "Reap": nil}},
			"false", planner.Blocking, "0.7.0"},
		{planner.RuleACLEnforceRemoved18, "1.6.10", "1.8.19",
			self{"DebugConfig": {"ACLEnforceVersion8": false}}, self{"DebugConfig": {"ACLEnforceVersion8": true}},
			"false", planner.Warning, "1.7.14"},
		{planner.RuleACLEnforceRemoved18, "0.9.3", "1.8.19",
			self{"Config": {"ACLEnforceVersion8": false}}, self{"Config": {}},
			"false", planner.Warning, ""},
		{planner.RuleDisableCompat19113, "1.12.9", "1.13.9",
			self{"DebugConfig": {"Telemetry": map[string]any{"DisableCompatOneNine": false}}}, self{"DebugConfig": {"Telemetry": map[string]any{"DisableCompatOneNine": true}}},
			"false", planner.Warning, "1.12.9"},
		{planner.RuleServerlessPlugin115, "1.14.8", "1.15.4",
			self{"DebugConfig": {"ConnectServerlessPluginEnabled": true}}, self{"DebugConfig": {"ConnectServerlessPluginEnabled": false}},
			"true", planner.Warning, "1.14.8"},
	}
	for _, tc := range cases {
		t.Run(string(tc.rule)+"-from-"+tc.from, func(t *testing.T) {
			versions := map[string]string{"s1": tc.from}
			got := agentConfigProblems(map[string]self{"s1": tc.set}, versions, tc.to, planner.Policy{})
			if len(got) != 1 || got[0].Rule != tc.rule || got[0].Value != tc.wantValue || got[0].Severity != tc.wantSeverity || got[0].Node != "s1" {
				t.Fatalf("set, %s -> %s: %+v; want one %s problem on s1 with value %s", tc.from, tc.to, got, tc.rule, tc.wantValue)
			}
			if !strings.Contains(got[0].String(), got[0].Release) || got[0].URL == "" {
				t.Errorf("problem %q names no release or source", got[0])
			}
			if got := agentConfigProblems(map[string]self{"s1": tc.unset}, versions, tc.to, planner.Policy{}); len(got) != 0 {
				t.Errorf("unset: %+v, want none", got)
			}
			if tc.doesNotCrossTo != "" {
				if got := agentConfigProblems(map[string]self{"s1": tc.set}, versions, tc.doesNotCrossTo, planner.Policy{}); len(got) != 0 {
					t.Errorf("set, %s -> %s (not across %s): %+v, want none", tc.from, tc.doesNotCrossTo, got[0].Release, got)
				}
			}
		})
	}
}

// Each rule of the table is a rule of the catalogue, so Policy.Waive knows
// its ID.
func TestEveryAgentOptionNamesARuleOfTheCatalogue(t *testing.T) {
	known := map[planner.RuleID]bool{}
	for _, r := range planner.Catalogue() {
		known[r.ID] = true
	}
	for _, o := range agentOptions {
		if !known[o.rule] {
			t.Errorf("option %s names rule %s, which the catalogue does not have", o.option, o.rule)
		}
	}
}

func TestARunIsRefusedBeforeAnythingIsTouchedWhenAServerSetsAnOptionTheTargetRemoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRigAt(t, "0.6.4", 3, 0, consultest.WithEra(consultest.Era06),
			consultest.WithFeatures(consultest.Features{AgentConfig: map[string]map[string]any{"s2": {"Reap": true}}}))
		r.cfg.Target = "0.7.5"
		r.cfg.ServerAPI = simServers(t, r.sim)
		_, err := Run(t.Context(), r.cfg)
		var ae *AgentConfigError
		if !errors.As(err, &ae) {
			t.Fatalf("err = %v, want an *AgentConfigError", err)
		}
		for _, want := range []string{"s2", "reap", string(planner.RuleReapRemoved071), "0.7.1", "Policy.Waive"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
		if n := len(r.tr.swapped()); n != 0 || len(r.snapshots) != 0 {
			t.Errorf("a refused run swapped %d node(s) and took %d backup(s)", n, len(r.snapshots))
		}
	})
}

func TestAWaivedBlockingOptionIsReportedAndOpenGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRigAt(t, "0.6.4", 3, 0, consultest.WithEra(consultest.Era06),
			consultest.WithFeatures(consultest.Features{AgentConfig: map[string]map[string]any{"s2": {"Reap": true}}}))
		r.cfg.Target = "0.7.5"
		r.cfg.ServerAPI = simServers(t, r.sim)
		r.cfg.Policy.Waive = []planner.RuleID{planner.RuleReapRemoved071}
		s, err := Open(t.Context(), r.cfg)
		if err != nil {
			t.Fatalf("Open with %s waived: %v", planner.RuleReapRemoved071, err)
		}
		s.Close(t.Context())
		found := false
		for _, e := range eventsOf(r, EventPreflight) {
			found = found || (e.Node == "s2" && strings.Contains(e.Detail, "[waived]"))
		}
		if !found {
			t.Errorf("no preflight event reports s2's waived reap")
		}
	})
}

func TestAWarningOptionIsReportedAndTheRunGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0, consultest.WithFeatures(consultest.Features{AgentConfig: map[string]map[string]any{
			"s1": {"Telemetry": map[string]any{"DisableCompatOneNine": false}},
		}}))
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run with a warning only: %v", err)
		}
		var warned []Event
		for _, e := range eventsOf(r, EventPreflight) {
			if e.Node == "s1" && strings.Contains(e.Detail, "telemetry.disable_compat_1.9") {
				warned = append(warned, e)
			}
		}
		if len(warned) != 1 || !strings.HasPrefix(warned[0].Detail, "warning") {
			t.Errorf("preflight events about s1 %+v, want one warning naming telemetry.disable_compat_1.9", warned)
		}
	})
}
