package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

func runPlan(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// stepRows returns the step table rows as (kind, node(s)) pairs, in order.
func stepRows(t *testing.T, out string) [][2]string {
	t.Helper()
	row := regexp.MustCompile(`(?m)^\s+\d+\s+\d+\s+(\S+)\s+(.+?)\s{2,}\d`)
	var rows [][2]string
	for _, m := range row.FindAllStringSubmatch(out, -1) {
		rows = append(rows, [2]string{m[1], m[2]})
	}
	if len(rows) == 0 {
		t.Fatalf("no step rows in:\n%s", out)
	}
	return rows
}

func TestDefaultRunPlansThe2015UpgradeFollowersFirstLeaderLastClientsLeftBehind(t *testing.T) {
	code, out, errOut := runPlan()
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	rows := stepRows(t, out)
	want := [][2]string{{"snapshot/logical", "all datacenters (via s1)"}, {"swap-server", "s2"}, {"swap-server", "s3"}, {"swap-server", "s1"}}
	if len(rows) != len(want) {
		t.Fatalf("steps = %v, want %v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("step %d = %v, want %v", i+1, rows[i], want[i])
		}
	}
	for _, s := range []string{"Upgrade plan to 0.5.2", "0.4.1 -> 0.5.2", "700 of 700 stay below 0.5.2, left behind on purpose", "Findings ("} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
}

func TestClientsInWavesComeAfterTheServersCanaryFirst(t *testing.T) {
	code, out, errOut := runPlan("-clients", "waves")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	rows := stepRows(t, out)
	if len(rows) != 4+11 {
		t.Fatalf("%d steps, want snapshot + 3 servers + canary + 10 waves of 70: %v", len(rows), rows)
	}
	if rows[3] != [2]string{"swap-server", "s1"} {
		t.Errorf("step 4 = %v, want the leader s1 last of the servers", rows[3])
	}
	if rows[4] != [2]string{"swap-clients", "dc1: client-001"} {
		t.Errorf("step 5 = %v, want the canary client-001", rows[4])
	}
	for i, r := range rows[4:] {
		if r[0] != "swap-clients" {
			t.Errorf("step %d = %v after the servers, want client waves", i+5, r)
		}
	}
	if strings.Contains(out, "left behind on purpose") {
		t.Errorf("waves output still says clients are left behind")
	}
}

func TestJSONOutputParsesBackWithKindNodeAndTargetOnEachStep(t *testing.T) {
	code, out, errOut := runPlan("-json", "-clients", "waves")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var p struct {
		Target string `json:"target"`
		Steps  []struct {
			Kind  string   `json:"kind"`
			Node  string   `json:"node"`
			Nodes []string `json:"nodes"`
			To    string   `json:"to"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if p.Target != "0.5.2" || len(p.Steps) != 15 {
		t.Fatalf("target %q, %d steps; want 0.5.2 and 15", p.Target, len(p.Steps))
	}
	clients := 0
	for i, s := range p.Steps {
		if s.Kind == "" || s.To != "0.5.2" {
			t.Errorf("step %d: kind %q to %q", i, s.Kind, s.To)
		}
		if s.Node == "" && len(s.Nodes) == 0 {
			t.Errorf("step %d (%s) names no node", i, s.Kind)
		}
		if s.Kind == "swap-clients" {
			clients += len(s.Nodes)
		}
	}
	if clients != 700 {
		t.Errorf("waves swap %d clients, want 700", clients)
	}
}

func TestOwnClusterAndPolicyFiles(t *testing.T) {
	code, out, errOut := runPlan("-cluster", "testdata/three-dc.json", "-to", "1.13.9", "-policy", "testdata/canary-policy.json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	rows := stepRows(t, out)
	if rows[1] != [2]string{"swap-server", "e2"} || rows[3] != [2]string{"swap-server", "e1"} {
		t.Errorf("primary east should go first, leader e1 last: %v", rows)
	}
	if !strings.Contains(out, "east: east-web-2,east-web-3") {
		t.Errorf("expected a wave of two clients from different zones:\n%s", out)
	}
}

func TestRefusedPlanPrintsTheFindingsAndExits1(t *testing.T) {
	code, out, errOut := runPlan("-cluster", "testdata/no-leader.json", "-to", "1.13.9")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, errOut)
	}
	if !strings.Contains(out, "[blocking] no-leader") || !strings.Contains(errOut, "plan refused") {
		t.Errorf("refusal not explained:\nstdout %s\nstderr %s", out, errOut)
	}
	code, _, errOut = runPlan("-cluster", "testdata/no-leader.json", "-to", "1.13.9", "-waive", "no-leader")
	if code != 0 {
		t.Errorf("waiving no-leader: exit %d, stderr %s", code, errOut)
	}
}

func TestBadInputExits2WithAClearMessage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"an unknown flag", []string{"-frobnicate"}, "flag provided but not defined"},
		{"a stray argument", []string{"now"}, `unexpected argument "now"`},
		{"a missing cluster file", []string{"-cluster", "testdata/nope.json", "-to", "1.13.9"}, "nope.json"},
		{"a cluster file that is not a cluster", []string{"-cluster", "testdata/canary-policy.json", "-to", "1.13.9"}, "not valid JSON"},
		{"a missing policy file", []string{"-policy", "testdata/nope.json"}, "-policy"},
		{"a target that is not a version", []string{"-to", "0.5.x"}, "not a Consul version"},
		{"a cluster without a target", []string{"-cluster", "testdata/three-dc.json"}, "-to is required"},
		{"an unknown client mode", []string{"-clients", "some"}, "not a client mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runPlan(tc.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stdout %q, stderr %q)", code, out, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q lacks %q", errOut, tc.want)
			}
		})
	}
}
