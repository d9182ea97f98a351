package planner

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// --- cluster builders shared by the planner's plan tests ---

// srv returns a voting, healthy server.
func srv(name, dc, ver string, leader bool) Server {
	return Server{Name: name, Datacenter: dc, Version: ver, Leader: leader, Voter: true, Healthy: true}
}

// clientsOf returns n clients of dc named prefix-0001 ..., zones cycling
// through zones (none when zones is empty).
func clientsOf(prefix, dc, ver string, n int, zones ...string) []Client {
	out := make([]Client, n)
	for i := range out {
		out[i] = Client{Name: fmt.Sprintf("%s-%04d", prefix, i+1), Datacenter: dc, Version: ver}
		if len(zones) > 0 {
			out[i].Zone = zones[i%len(zones)]
		}
	}
	return out
}

// cluster2015 is the seed's story: three servers (s1 leads) and 700 clients
// on 0.4.1, ACLs off.
func cluster2015() Cluster {
	return Cluster{
		Servers: []Server{srv("s1", "", "0.4.1", true), srv("s2", "", "0.4.1", false), srv("s3", "", "0.4.1", false)},
		Clients: clientsOf("c", "", "0.4.1", 700),
	}
}

// threeDC is a 5-server, 3-datacenter cluster on ver with ACL replication:
// dc1 (primary) has 3 servers, dc2 and dc3 one each, and 20 clients per
// datacenter.
func threeDC(ver string) Cluster {
	c := Cluster{
		Datacenters: []Datacenter{{Name: "dc3"}, {Name: "dc1", Primary: true}, {Name: "dc2"}},
		Servers: []Server{
			srv("a1", "dc1", ver, false), srv("a2", "dc1", ver, true), srv("a3", "dc1", ver, false),
			srv("b1", "dc2", ver, true),
			srv("c1", "dc3", ver, true),
		},
		Features: Features{ACLs: true, ACLReplication: true},
	}
	for _, dc := range []string{"dc1", "dc2", "dc3"} {
		c.Clients = append(c.Clients, clientsOf(dc+"-c", dc, ver, 20)...)
	}
	return c
}

// applyStep is the test's own model of what a step does to a cluster, kept
// apart from the planner's simulation so the two can be compared.
func applyStep(t testing.TB, c *Cluster, s Step) {
	t.Helper()
	switch s.Kind {
	case StepSnapshot:
		c.SnapshotVersion = s.From
	case StepSwapServer:
		for i := range c.Servers {
			if c.Servers[i].Name == s.Node {
				c.Servers[i].Version = s.To
				return
			}
		}
		t.Fatalf("step names unknown server %q", s.Node)
	case StepTransferLeader:
		found := false
		for i := range c.Servers {
			switch c.Servers[i].Name {
			case s.Node:
				c.Servers[i].Leader = false
			case s.Target:
				c.Servers[i].Leader = true
				found = true
			}
		}
		if !found {
			t.Fatalf("transfer-leader names unknown target %q", s.Target)
		}
	case StepSwapClients:
		want := make(map[string]bool, len(s.Nodes))
		for _, n := range s.Nodes {
			want[n] = true
		}
		for i := range c.Clients {
			if want[c.Clients[i].Name] {
				c.Clients[i].Version = s.To
				delete(want, c.Clients[i].Name)
			}
		}
		if len(want) > 0 {
			t.Fatalf("wave names %d unknown clients", len(want))
		}
	}
}

func cloneCluster(c Cluster) Cluster {
	c.Datacenters = append([]Datacenter(nil), c.Datacenters...)
	c.Servers = append([]Server(nil), c.Servers...)
	c.Clients = append([]Client(nil), c.Clients...)
	return c
}

// runNext drives Next against c (applying every step with applyStep) until
// done, the way a runner would, and returns the steps.
func runNext(t testing.TB, c Cluster, target string, pol Policy) []Step {
	t.Helper()
	c = cloneCluster(c)
	var steps []Step
	for range 10000 {
		s, err := Next(c, target, pol)
		if err != nil {
			t.Fatalf("Next after %d steps: %v", len(steps), err)
		}
		if s.Kind == StepDone {
			return steps
		}
		applyStep(t, &c, s)
		steps = append(steps, s)
	}
	t.Fatalf("Next did not finish within 10000 steps")
	return nil
}

func TestPlanIsWhatNextDoesStepByStep(t *testing.T) {
	mixed := cluster2015()
	mixed.Servers[2].Version = "0.5.2"
	mixed.Clients[5].Version = "0.5.2"
	cases := []struct {
		name    string
		c       Cluster
		target  string
		pol     Policy
		wantMin int
	}{
		{"the 2015 scenario with clients in waves", cluster2015(), "0.5.2", Policy{}, 4 + 11},
		{"the 2015 scenario with clients left behind", cluster2015(), "0.5.2", Policy{Clients: ClientPolicy{Mode: ClientLeaveBehind}}, 4},
		{"a half-upgraded cluster resumes", mixed, "0.5.2", Policy{}, 3},
		{"three datacenters with ACL replication", threeDC("1.5.2"), "1.6.10", Policy{Clients: ClientPolicy{BatchSize: 7}}, 6},
		{"as-listed servers", cluster2015(), "0.5.2", Policy{ServerOrder: AsListed, Clients: ClientPolicy{Mode: ClientLeaveBehind}}, 4},
		{"leadership transfer on 1.15+", threeDC("1.15.2"), "1.16.2", Policy{Clients: ClientPolicy{Mode: ClientLeaveBehind}}, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneCluster(tc.c)
			p, err := Plan(tc.c, tc.target, tc.pol)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if !reflect.DeepEqual(before, tc.c) {
				t.Fatalf("Plan modified its input cluster")
			}
			got := runNext(t, tc.c, tc.target, tc.pol)
			if len(p.Steps) != len(got) {
				t.Fatalf("Plan has %d steps, Next took %d", len(p.Steps), len(got))
			}
			if len(got) < tc.wantMin {
				t.Fatalf("only %d steps, want at least %d", len(got), tc.wantMin)
			}
			for i := range got {
				ps, ns := p.Steps[i], got[i]
				if p.Path[ps.Hop].To != ps.To {
					t.Errorf("step %d: plan hop %d goes to %s, step to %s", i, ps.Hop, p.Path[ps.Hop].To, ps.To)
				}
				ps.Hop, ns.Hop = 0, 0
				if ps.Deadline != nil && ns.Deadline != nil {
					d1, d2 := *ps.Deadline, *ns.Deadline
					d1.First, d1.Last = -1, -1
					ps.Deadline, ns.Deadline = &d1, &d2
				}
				if !reflect.DeepEqual(ps, ns) {
					t.Fatalf("step %d differs:\nplan %+v\nnext %+v", i, ps, ns)
				}
			}
		})
	}
}

func TestPlanMarshalsToJSONAndBackToAnEqualValue(t *testing.T) {
	c := cluster2015()
	for _, pol := range []Policy{
		{},
		{ServerOrder: AsListed, Clients: ClientPolicy{Mode: ClientLeaveBehind}, Waive: []RuleID{RuleTombstoneWindow}},
		{Clients: ClientPolicy{Canary: 2, BatchPercent: 25, MaxUnavailable: 3}, StopMode: StopKill},
	} {
		p, err := Plan(c, "0.5.2", pol)
		if err != nil {
			t.Fatal(err)
		}
		data, err := p.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var back UpgradePlan
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*p, back) {
			t.Fatalf("round trip differs:\n%+v\n%+v", *p, back)
		}
	}
}

func TestPlanDeadlinesCoverEveryServerSwapOfTheirHop(t *testing.T) {
	pol := Policy{ServerOrder: AsListed, Clients: ClientPolicy{Mode: ClientLeaveBehind}}
	p, err := Plan(cluster2015(), "0.5.2", pol)
	if err != nil {
		t.Fatal(err)
	}
	first, last := -1, -1
	for i, s := range p.Steps {
		if s.Kind != StepSwapServer {
			continue
		}
		if s.Deadline == nil {
			t.Fatalf("step %d (%s) crosses 0.5.0 in listed order but has no deadline", i, s.Node)
		}
		if first < 0 {
			first = i
		}
		last = i
	}
	for i, s := range p.Steps {
		if s.Deadline == nil {
			continue
		}
		if s.Deadline.First != first || s.Deadline.Last != last || s.Deadline.Seconds != TombstoneWindowSeconds {
			t.Errorf("step %d deadline = %+v, want steps %d-%d within %d s", i, *s.Deadline, first, last, TombstoneWindowSeconds)
		}
	}
	if !strings.Contains(p.String(), "Deadlines:") {
		t.Errorf("rendering does not list the deadline:\n%s", p)
	}
}

func TestPlanWithFollowersFirstNeedsNoDeadline(t *testing.T) {
	p, err := Plan(cluster2015(), "0.5.2", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range p.Steps {
		if s.Deadline != nil {
			t.Errorf("step %d has a deadline %+v with followers first", i, *s.Deadline)
		}
	}
}

// cluster2015On is the 2015 cluster with every agent on v.
func cluster2015On(v string) Cluster {
	c := cluster2015()
	for i := range c.Servers {
		c.Servers[i].Version = v
	}
	for i := range c.Clients {
		c.Clients[i].Version = v
	}
	return c
}

func TestPlanOfAClusterOnTargetHasNoSteps(t *testing.T) {
	c := cluster2015On("0.5.2")
	p, err := Plan(c, "0.5.2", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps) != 0 || len(p.Path) != 0 {
		t.Fatalf("plan of an upgraded cluster: %d steps, %d hops; want none", len(p.Steps), len(p.Path))
	}
}

// A refused plan has no path; its table says it was refused, not that
// every agent already runs the target (which is what it said of a target
// that is not a release).
func TestARefusedPlanSaysWhyItHasNoPath(t *testing.T) {
	c := cluster2015()
	p, err := Plan(c, "1.13.99", Policy{})
	if err == nil || len(p.Path) != 0 {
		t.Fatalf("plan to 1.13.99: err %v, path %v; want refused with no path", err, p.Path)
	}
	out := p.String()
	if !strings.Contains(out, "(none: the plan is refused; see the blocking findings below)") || strings.Contains(out, "already runs the target") {
		t.Errorf("refused plan's path:\n%s", out)
	}
	done, err := Plan(cluster2015On("0.5.2"), "0.5.2", Policy{})
	if err != nil || !strings.Contains(done.String(), "(none: every agent already runs the target)") {
		t.Errorf("plan of a cluster on its target: %v\n%s", err, done)
	}
}

func TestPlanRefusesTheReplaceStrategyAsNotSupported(t *testing.T) {
	_, err := Plan(cluster2015(), "0.5.2", Policy{Strategy: Replace})
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("err = %v, want ErrNotSupported", err)
	}
}

func TestPlanRendersPathFindingsAndNumberedSteps(t *testing.T) {
	p, err := Plan(cluster2015(), "0.5.2", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	out := p.String()
	for _, want := range []string{"Upgrade plan to 0.5.2", "Path (", "Findings (", "Steps (", "0.4.1 -> 0.5.2", "snapshot", "swap-server", "swap-clients", "+67 more", "Points of no return:"} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %q:\n%s", want, out)
		}
	}
	for i := range p.Steps {
		if !strings.Contains(out, fmt.Sprintf("\n  %d ", i+1)) {
			t.Errorf("rendering lacks step number %d", i+1)
		}
	}
}
