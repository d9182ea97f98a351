package planner

import (
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// handBuilt is an inventory as an operator writes it: names and versions,
// nothing about raft.
func handBuilt() Cluster {
	return Cluster{
		Servers: []Server{NewServer("s1", "1.12.9"), NewServer("s2", "1.12.9"), NewServer("s3", "1.12.9")},
		Clients: []Client{{Name: "c1", Version: "1.12.9"}},
	}
}

func TestAHandBuiltInventoryWithAnUnknownLeaderIsPlanned(t *testing.T) {
	c := handBuilt()
	_, err := Plan(c, "1.13.9", Policy{})
	var re *RefusedError
	if !errors.As(err, &re) || re.Findings[0].Rule != PrecheckNoLeader || !strings.Contains(re.Findings[0].Hint, "Cluster.LeaderUnknown") {
		t.Fatalf("without a leader: err = %v, want a no-leader refusal whose hint names Cluster.LeaderUnknown", err)
	}
	c.LeaderUnknown = true
	p, err := Plan(c, "1.13.9", Policy{})
	if err != nil {
		t.Fatalf("Plan with LeaderUnknown: %v", err)
	}
	servers := 0
	for _, s := range p.Steps {
		if s.Kind == StepSwapServer {
			servers++
		}
	}
	if servers != 3 {
		t.Errorf("plan %v swaps %d servers, want 3", p.Steps, servers)
	}
	if _, err := Next(c, "1.13.9", Policy{}); err != nil {
		t.Errorf("Next with LeaderUnknown: %v", err)
	}
}

func TestAZeroServerIsRefusedWithAHintNamingTheFix(t *testing.T) {
	c := Cluster{Servers: []Server{{Name: "s1", Version: "1.12.9", Leader: true}}}
	fs := Check(c, "1.13.9", Policy{})
	for _, id := range []RuleID{PrecheckServerUnhealthy, PrecheckServerNotVoter} {
		found := false
		for _, f := range fs.Blocking() {
			if f.Rule == id {
				found = true
				if !strings.Contains(f.Hint, "planner.NewServer") || !strings.Contains(f.Hint, "hand-built") {
					t.Errorf("%s hint %q does not say how to fix a hand-built server", id, f.Hint)
				}
			}
		}
		if !found {
			t.Errorf("a zero server is not refused by %s: %v", id, fs)
		}
	}
}

func TestServerJSONWithoutVoterOrHealthyReadsAsAHealthyVoter(t *testing.T) {
	var c Cluster
	if err := json.Unmarshal([]byte(`{"servers":[{"name":"s1","version":"1.12.9","leader":true},{"name":"s2","version":"1.12.9","healthy":false},{"name":"s3","version":"1.12.9","voter":false}]}`), &c); err != nil {
		t.Fatal(err)
	}
	want := []Server{
		{Name: "s1", Version: "1.12.9", Leader: true, Voter: true, Healthy: true},
		{Name: "s2", Version: "1.12.9", Voter: true, Healthy: false},
		{Name: "s3", Version: "1.12.9", Voter: false, Healthy: true},
	}
	for i, s := range c.Servers {
		if s != want[i] {
			t.Errorf("server %d = %+v, want %+v", i, s, want[i])
		}
	}
	// What Discover writes (both fields) reads back unchanged.
	b, _ := json.Marshal(want)
	var back []Server
	if err := json.Unmarshal(b, &back); err != nil || len(back) != 3 || back[1] != want[1] || back[2] != want[2] {
		t.Errorf("round trip = %+v (%v), want %+v", back, err, want)
	}
}

func TestUnknownWaiverIDsAreRefusedWithATypedError(t *testing.T) {
	c := threeServers("1.12.9")
	pol := Policy{Waive: []RuleID{RuleFollowersFirst, "follower-first-leader-last", "no-such-rule", "inhouse-1"},
		Rules: []Rule{{ID: "inhouse-1", Kind: KindPrecheck, Severity: Warning, Summary: "in-house"}}}
	for name, call := range map[string]func() error{
		"Plan": func() error { _, err := Plan(c, "1.13.9", pol); return err },
		"Next": func() error { _, err := Next(c, "1.13.9", pol); return err },
	} {
		err := call()
		var we *WaiverError
		if !errors.As(err, &we) {
			t.Fatalf("%s: err = %v, want a *WaiverError", name, err)
		}
		if joinRuleIDs(we.IDs, ",") != "follower-first-leader-last,no-such-rule" {
			t.Errorf("%s: unknown IDs %v, want the misspelt and the made-up one (the policy's own rule counts)", name, we.IDs)
		}
		if we.Suggest["follower-first-leader-last"] != RuleFollowersFirst || we.Suggest["no-such-rule"] != "" {
			t.Errorf("%s: suggestions %v, want %s for the misspelling only", name, we.Suggest, RuleFollowersFirst)
		}
		if !strings.Contains(err.Error(), `"follower-first-leader-last" (did you mean "followers-first-leader-last"?)`) {
			t.Errorf("%s: error %q does not suggest the right ID", name, err)
		}
	}
	if err := CheckWaivers(Policy{Waive: []RuleID{RuleFollowersFirst, "inhouse-1"}, Rules: pol.Rules}); err != nil {
		t.Errorf("known waivers refused: %v", err)
	}
}

func TestADowngradeFromPlanAndNextReachesDowngradeError(t *testing.T) {
	c := threeServers("1.13.9")
	c.Servers[1].Version = "1.14.8"
	_, perr := Plan(c, "1.13.9", Policy{})
	_, nerr := Next(c, "1.13.9", Policy{})
	for name, err := range map[string]error{"Plan": perr, "Next": nerr} {
		var de *DowngradeError
		if !errors.As(err, &de) || de.Node != "s2" || de.From != "1.14.8" || de.To != "1.13.9" {
			t.Errorf("%s: err = %v, want it to reach *DowngradeError{s2, 1.14.8 -> 1.13.9}", name, err)
		}
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Errorf("%s: err = %v is no longer a *RefusedError", name, err)
		}
	}
}

// Every built-in rule's ID is the value of an exported constant of the
// package, so callers waive and match findings by name.
func TestEveryBuiltInRuleIDIsAnExportedConstant(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, sp := range gd.Specs {
				vs := sp.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !n.IsExported() || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						consts[v] = n.Name
					}
				}
			}
		}
	}
	for _, r := range Catalogue() {
		if _, ok := consts[string(r.ID)]; !ok {
			t.Errorf("rule %q has no exported constant", r.ID)
		}
	}
}

func TestStepAndHopPrintOnOneLine(t *testing.T) {
	for _, tc := range []struct {
		got  string
		want string
	}{
		{Step{Kind: StepSwapServer, Node: "s2", From: "1.12.9", To: "1.13.9"}.String(), "swap-server s2 -> 1.13.9"},
		{Step{Kind: StepTransferLeader, Node: "s1", Target: "s2"}.String(), "transfer-leader s1 => s2"},
		{Step{Kind: StepSwapClients, Datacenter: "dc1", Wave: 1, Nodes: []string{"c1", "c2"}, To: "1.13.9"}.String(), "swap-clients dc1 wave 1 (2 clients) [c1, c2] -> 1.13.9"},
		{Step{Kind: StepSnapshot, From: "1.12.9", To: "1.13.9"}.String(), "snapshot -> 1.13.9"},
		{Hop{From: "1.2.3", To: "1.2.4", Rule: RuleDedicated124}.String(), "1.2.3 -> 1.2.4 (dedicated-path-1.2.4)"},
		{Hop{From: "1.12.9", To: "1.13.9"}.String(), "1.12.9 -> 1.13.9"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
