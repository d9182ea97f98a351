package planner

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

var replacePol = Policy{Strategy: Replace}

// replaceCluster is 3 servers (s2 leads) and 4 clients on ver.
func replaceCluster(ver string) Cluster {
	return Cluster{
		Servers: []Server{srv("s1", "", ver, false), srv("s2", "", ver, true), srv("s3", "", ver, false)},
		Clients: clientsOf("c", "", ver, 4),
	}
}

// applyReplaceStep is the tests' own model of the replace steps (on top of
// applyStep): an added server is a healthy voter named by the test, a
// retired one disappears and a retired leader hands over to the first
// server of its datacenter by name.
func applyReplaceStep(t testing.TB, c *Cluster, s Step, added map[string]int) {
	t.Helper()
	switch s.Kind {
	case StepAddServer:
		added[s.Datacenter]++
		c.Servers = append(c.Servers, Server{Name: fmt.Sprintf("%s-new-%d", s.Datacenter, added[s.Datacenter]), Datacenter: dcField(c, s.Datacenter), Version: s.To, Voter: true, Healthy: true})
	case StepRetireServer:
		for i := range c.Servers {
			if c.Servers[i].Name != s.Node {
				continue
			}
			wasLeader, dc := c.Servers[i].Leader, c.Servers[i].Datacenter
			c.Servers = append(c.Servers[:i:i], c.Servers[i+1:]...)
			if wasLeader {
				handOver(c, dc, func(d string) string { return d })
			}
			return
		}
		t.Fatalf("retire-server names unknown server %q", s.Node)
	default:
		applyStep(t, c, s)
	}
}

// handOver makes the first server of datacenter dc by name the leader: the
// model of an election after the old leader was retired.
func handOver(c *Cluster, dc string, dcOf func(string) string) {
	best := -1
	for k := range c.Servers {
		if dcOf(c.Servers[k].Datacenter) == dc && (best < 0 || c.Servers[k].Name < c.Servers[best].Name) {
			best = k
		}
	}
	if best >= 0 {
		c.Servers[best].Leader = true
	}
}

// dcField is the Datacenter field agents of datacenter dc carry in c.
func dcField(c *Cluster, dc string) string {
	if len(c.Datacenters) == 0 {
		return ""
	}
	return dc
}

// runNextReplace drives Next like a runner until done and returns the steps.
func runNextReplace(t *testing.T, c Cluster, target string, pol Policy) []Step {
	t.Helper()
	c = cloneCluster(c)
	added := map[string]int{}
	var steps []Step
	for range 200 {
		s, err := Next(c, target, pol)
		if err != nil {
			t.Fatalf("Next after %d steps: %v", len(steps), err)
		}
		if s.Kind == StepDone {
			return steps
		}
		steps = append(steps, s)
		if s.Kind == StepSnapshot {
			c.SnapshotVersion = s.From
			continue
		}
		applyReplaceStep(t, &c, s, added)
	}
	t.Fatal("Next did not finish within 200 steps")
	return nil
}

func kinds(steps []Step) string {
	var b []string
	for _, s := range steps {
		k := string(s.Kind)
		if s.Node != "" {
			k += " " + s.Node
		}
		b = append(b, k)
	}
	return strings.Join(b, ", ")
}

func TestReplaceDecisions(t *testing.T) {
	cases := []struct {
		name   string
		c      Cluster
		pol    Policy
		target string
		want   string
	}{
		{"three servers are replaced one at a time: add, then retire the followers by name, the leader last",
			replaceCluster("1.12.9"), Policy{Strategy: Replace, NoSnapshot: true}, "1.13.9",
			"add-server, retire-server s1, add-server, retire-server s3, add-server, retire-server s2, swap-clients, swap-clients, swap-clients, swap-clients"},
		{"a snapshot comes before the first added server of a hop",
			replaceCluster("1.12.9"), replacePol, "1.13.9",
			"snapshot, add-server, retire-server s1, add-server, retire-server s3, add-server, retire-server s2, swap-clients, swap-clients, swap-clients, swap-clients"},
		{"a run that stopped with four servers (one replacement in flight) retires an old follower next",
			with(replaceCluster("1.12.9"), func(c *Cluster) {
				c.Servers = append(c.Servers, srv("n1", "", "1.13.9", false))
				c.SnapshotVersion = "1.12.9"
				c.Clients = nil
			}), replacePol, "1.13.9",
			"retire-server s1, add-server, retire-server s3, add-server, retire-server s2"},
		{"with leadership transfer on 1.15 and later the leader hands over to a new voter before it is retired",
			with(replaceCluster("1.15.2"), func(c *Cluster) { c.Clients = nil }), Policy{Strategy: Replace, NoSnapshot: true}, "1.16.2",
			"add-server, retire-server s1, add-server, retire-server s3, add-server, transfer-leader s2, retire-server s2"},
		{"an explicit server count of five grows a three-server datacenter before retiring",
			with(replaceCluster("1.12.9"), func(c *Cluster) { c.Clients = nil }), Policy{Strategy: Replace, NoSnapshot: true, ReplaceServers: 5}, "1.13.9",
			"add-server, add-server, add-server, retire-server s1, add-server, retire-server s3, add-server, retire-server s2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := kinds(runNextReplace(t, tc.c, tc.target, tc.pol))
			if got != tc.want {
				t.Errorf("steps:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestReplaceStepsCarryTheirGatesAndStopMode(t *testing.T) {
	steps := runNextReplace(t, replaceCluster("1.12.9"), "1.13.9", Policy{Strategy: Replace, NoSnapshot: true})
	for _, s := range steps {
		switch s.Kind {
		case StepAddServer:
			if s.Node != "" || s.Datacenter != "dc1" || s.To != "1.13.9" || !strings.Contains(fmt.Sprint(s.Gate), "stable") || !strings.Contains(fmt.Sprint(s.Gate), "voter") {
				t.Errorf("add-server step %+v: want no node, dc1, to 1.13.9, gated on voter and stable", s)
			}
		case StepRetireServer:
			if s.From != "1.12.9" || s.StopMode != StopLeave || fmt.Sprint(s.Gate) != "[leader-known removed failure-tolerance]" {
				t.Errorf("retire-server step %+v: want from 1.12.9, stop mode leave, gate leader-known, removed, failure-tolerance", s)
			}
		}
	}
}

func TestReplaceRefusals(t *testing.T) {
	cases := []struct {
		name  string
		c     Cluster
		pol   Policy
		check func(error) bool
	}{
		{"replace is not supported below 0.8 (no autopilot to gate a new voter)", replaceCluster("0.7.5"), replacePol,
			func(err error) bool { return errors.Is(err, ErrNotSupported) }},
		{"an even server count with no new server yet cannot be derived and asks for replace_servers",
			with(replaceCluster("1.12.9"), func(c *Cluster) { c.Servers = append(c.Servers, srv("s4", "", "1.12.9", false)) }), replacePol,
			func(err error) bool {
				var pe *PolicyError
				return errors.As(err, &pe) && pe.Field == "replace_servers" && strings.Contains(err.Error(), "4")
			}},
		{"a negative replace_servers is a policy error", replaceCluster("1.12.9"), Policy{Strategy: Replace, ReplaceServers: -1},
			func(err error) bool {
				var pe *PolicyError
				return errors.As(err, &pe) && pe.Field == "replace_servers"
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Next(tc.c, "1.13.9", tc.pol)
			if !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
			if _, perr := Plan(tc.c, "1.13.9", tc.pol); !tc.check(perr) {
				t.Fatalf("Plan err = %v", perr)
			}
		})
	}
}

func TestReplacePlanEqualsRepeatedNext(t *testing.T) {
	for _, pol := range []Policy{replacePol, {Strategy: Replace, Clients: ClientPolicy{BatchSize: 2}}} {
		c := threeDC("1.15.2")
		p, err := Plan(c, "1.16.2", pol)
		if err != nil {
			t.Fatal(err)
		}
		steps := runNextReplace(t, c, "1.16.2", pol)
		if len(p.Steps) != len(steps) {
			t.Fatalf("plan has %d steps, repeated Next %d", len(p.Steps), len(steps))
		}
		for i := range steps {
			a, b := p.Steps[i], steps[i]
			// Added servers are named by each model; retire steps name old
			// servers only, so names agree.
			if a.Kind != b.Kind || a.Node != b.Node || a.Target != b.Target || a.Datacenter != b.Datacenter || a.To != b.To {
				t.Fatalf("step %d: plan %s %s->%s %s, Next %s %s->%s %s", i, a.Kind, a.Node, a.Target, a.Datacenter, b.Kind, b.Node, b.Target, b.Datacenter)
			}
		}
	}
}

func TestGoldenReplacePlan(t *testing.T) {
	c := Cluster{
		Servers: []Server{srv("s1", "", "1.12.9", false), srv("s2", "", "1.12.9", true), srv("s3", "", "1.12.9", false)},
		Clients: clientsOf("web", "", "1.12.9", 4),
	}
	p, err := Plan(c, "1.13.9", Policy{Strategy: Replace, Clients: ClientPolicy{BatchPercent: 50}})
	if err != nil {
		t.Fatal(err)
	}
	js, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	compareGolden(t, filepath.Join("testdata", "replace-1.12.9-to-1.13.9.golden"), []byte(p.String()))
	compareGolden(t, filepath.Join("testdata", "replace-1.12.9-to-1.13.9.json.golden"), append(js, '\n'))
}

// randomReplaceInput is randomPlanInput with the replace strategy, versions
// of 0.8 and later and odd server counts per datacenter.
func randomReplaceInput(seed uint64, shape, polBits uint16) (Cluster, string, Policy) {
	c, _, pol := randomPlanInput(seed, shape, polBits)
	r := rand.New(rand.NewPCG(seed^0x5eed, uint64(shape)))
	modern := fuzzVersions[6:19] // 0.8.5 .. 1.13.9
	base := r.IntN(len(modern) - 1)
	for i := range c.Servers {
		c.Servers[i].Version = modern[base]
		if r.IntN(6) == 0 {
			c.Servers[i].Version = modern[base+1]
		}
	}
	for i := range c.Clients {
		c.Clients[i].Version = modern[base]
	}
	target := modern[min(base+1+r.IntN(4), len(modern)-1)]
	pol.Strategy = Replace
	pol.ServerOrder = ""
	c.SnapshotVersion = ""
	return c, target, pol
}

func FuzzPlanReplace(f *testing.F) {
	for i := range 30 {
		f.Add(uint64(i), uint16(i*41), uint16(i*2311))
	}
	f.Fuzz(func(t *testing.T, seed uint64, shape, polBits uint16) {
		c, target, pol := randomReplaceInput(seed, shape, polBits)
		p, err := Plan(cloneCluster(c), target, pol)
		if p == nil {
			t.Fatalf("nil plan (err %v)", err)
		}
		if err != nil {
			return
		}
		checkReplaceInvariants(t, c, target, pol, p)
	})
}

func TestRandomReplacePlansKeepTheInvariants(t *testing.T) {
	accepted := 0
	for i := range 2000 {
		c, target, pol := randomReplaceInput(uint64(i), uint16(i*7919), uint16(i*104729))
		p, err := Plan(cloneCluster(c), target, pol)
		if p == nil {
			t.Fatalf("input %d: nil plan (err %v)", i, err)
		}
		if err != nil {
			continue
		}
		accepted++
		checkReplaceInvariants(t, c, target, pol, p)
	}
	if accepted < 200 {
		t.Fatalf("only %d of 2000 random inputs gave a replace plan; the generator is too harsh to test anything", accepted)
	}
}

// checkReplaceInvariants replays p with the tests' own model: per
// datacenter the server count never drops below the desired count (so the
// failure tolerance never drops) nor exceeds it by more than one; every old
// server is retired; a leader is retired only as the last old server of its
// datacenter; nothing is swapped in place.
func checkReplaceInvariants(t *testing.T, c Cluster, target string, pol Policy, p *UpgradePlan) {
	t.Helper()
	dcOf := func(dc string) string {
		if dc == "" {
			if len(c.Datacenters) == 1 {
				return c.Datacenters[0].Name
			}
			return "dc1"
		}
		return dc
	}
	count := func(c *Cluster) map[string]int {
		m := map[string]int{}
		for _, s := range c.Servers {
			m[dcOf(s.Datacenter)]++
		}
		return m
	}
	desired := count(&c)
	for dc, n := range desired {
		if pol.ReplaceServers > 0 {
			desired[dc] = pol.ReplaceServers
		} else if n%2 == 0 {
			desired[dc] = n - 1
		}
	}
	original := map[string]bool{}
	for _, s := range c.Servers {
		original[s.Name] = true
	}
	// Name the model's added servers like the planner's simulation does, so
	// that later steps (transfers, retires) name them the same.
	cur := cloneCluster(c)
	seq := map[string]int{}
	touched := map[string]bool{} // datacenters whose servers were replaced
	for i, s := range p.Steps {
		switch s.Kind {
		case StepSwapServer:
			t.Fatalf("step %d swaps server %s in place under the replace strategy", i, s.Node)
		case StepAddServer:
			seq[s.Datacenter]++
			cur.Servers = append(cur.Servers, Server{Name: fmt.Sprintf("%s-new-%d", s.Datacenter, seq[s.Datacenter]), Datacenter: dcField(&cur, s.Datacenter), Version: s.To, Voter: true, Healthy: true})
		case StepRetireServer:
			k := -1
			for j := range cur.Servers {
				if cur.Servers[j].Name == s.Node {
					k = j
				}
			}
			if k < 0 {
				t.Fatalf("step %d retires unknown server %s", i, s.Node)
			}
			me := cur.Servers[k]
			if me.Leader {
				for _, o := range cur.Servers {
					if o.Name != me.Name && dcOf(o.Datacenter) == dcOf(me.Datacenter) && o.Version != s.To && original[o.Name] && o.Version == me.Version {
						t.Fatalf("step %d retires the leader %s while the old server %s of %s remains", i, me.Name, o.Name, dcOf(me.Datacenter))
					}
				}
			}
			cur.Servers = append(cur.Servers[:k:k], cur.Servers[k+1:]...)
			if me.Leader {
				handOver(&cur, dcOf(me.Datacenter), dcOf)
			}
		case StepSnapshot, StepTransferLeader, StepSwapClients:
			applyStep(t, &cur, s)
		default:
			t.Fatalf("step %d has kind %q", i, s.Kind)
		}
		if s.Kind == StepAddServer || s.Kind == StepRetireServer {
			touched[s.Datacenter] = true
			n := count(&cur)[s.Datacenter]
			start := count(&c)[s.Datacenter]
			if n < min(desired[s.Datacenter], start) {
				t.Fatalf("step %d leaves %s with %d servers, below the desired %d", i, s.Datacenter, n, desired[s.Datacenter])
			}
			if n > max(desired[s.Datacenter], start)+1 {
				t.Fatalf("step %d leaves %s with %d servers, more than one above the desired %d", i, s.Datacenter, n, desired[s.Datacenter])
			}
		}
	}
	for _, s := range cur.Servers {
		if original[s.Name] && !versionAtLeast(s.Version, target) {
			t.Fatalf("after the plan the old server %s still runs %s, below %s", s.Name, s.Version, target)
		}
		if !versionAtLeast(s.Version, target) {
			t.Fatalf("after the plan server %s runs %s, below %s", s.Name, s.Version, target)
		}
	}
	for dc, n := range count(&cur) {
		if touched[dc] && n != desired[dc] {
			t.Fatalf("after the plan %s has %d servers, want %d", dc, n, desired[dc])
		}
	}
}
