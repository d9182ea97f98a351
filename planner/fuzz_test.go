package planner

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// fuzzVersions are the versions random clusters and targets are made of:
// the stepping stones, versions between them and a couple of odd ones.
var fuzzVersions = []string{
	"0.4.1", "0.5.0", "0.5.2", "0.6.4", "0.7.5", "0.8.0", "0.8.5", "0.9.4", "1.0.8", "1.2.4", "1.3.1",
	"1.5.2", "1.6.10", "1.7.14", "1.8.19", "1.9.17", "1.10.12", "1.11.11", "1.12.9", "1.13.9",
	"1.14.10", "1.15.2", "1.16.1", "1.17.3", "1.20.1", "v1.12.9", "1.x",
}

// randomPlanInput builds a random cluster, target and policy from the fuzz
// arguments.
func randomPlanInput(seed uint64, shape, polBits uint16) (Cluster, string, Policy) {
	r := rand.New(rand.NewPCG(seed, uint64(shape)<<16|uint64(polBits)))
	nDC := 1 + int(shape%3)
	nSrv := 1 + int(shape/3%7)
	nCli := int(shape / 21 % 13)
	base := r.IntN(len(fuzzVersions) - 2)
	pick := func() string {
		// Mostly one version, sometimes a neighbour or anything.
		switch r.IntN(10) {
		case 0:
			return fuzzVersions[r.IntN(len(fuzzVersions))]
		case 1, 2:
			return fuzzVersions[min(base+1, len(fuzzVersions)-1)]
		}
		return fuzzVersions[base]
	}
	var c Cluster
	for d := range nDC {
		c.Datacenters = append(c.Datacenters, Datacenter{Name: fmt.Sprintf("dc%d", d+1)})
	}
	if r.IntN(4) > 0 {
		c.Datacenters[r.IntN(nDC)].Primary = true
	}
	if nDC == 1 && r.IntN(2) == 0 {
		c.Datacenters = nil
	}
	leaders := map[string]bool{}
	for i := range nSrv {
		dc := fmt.Sprintf("dc%d", 1+i%nDC)
		if c.Datacenters == nil {
			dc = ""
		}
		s := Server{Name: fmt.Sprintf("s%d", i+1), Datacenter: dc, Version: pick(), Voter: r.IntN(8) > 0, Healthy: r.IntN(8) > 0, Zone: fmt.Sprintf("z%d", r.IntN(2))}
		if !leaders[dc] && r.IntN(10) > 0 {
			s.Leader, leaders[dc] = true, true
		}
		c.Servers = append(c.Servers, s)
	}
	for i := range nCli {
		dc := fmt.Sprintf("dc%d", 1+r.IntN(nDC))
		if c.Datacenters == nil {
			dc = ""
		}
		c.Clients = append(c.Clients, Client{Name: fmt.Sprintf("c%02d", i+1), Datacenter: dc, Version: pick(), Zone: fmt.Sprintf("z%d", r.IntN(3))})
	}
	c.Features.ACLReplication = polBits&1 != 0
	c.Features.ACLs = polBits&2 != 0
	if polBits&4 != 0 {
		c.SnapshotVersion = pick()
	}
	target := fuzzVersions[min(base+r.IntN(6), len(fuzzVersions)-1)]

	var pol Policy
	if polBits&8 != 0 {
		pol.ServerOrder = AsListed
	}
	if polBits&16 != 0 {
		pol.Clients.Mode = ClientLeaveBehind
	}
	if polBits&32 != 0 {
		pol.NoTransferLeadership = true
	}
	if polBits&64 != 0 {
		pol.NoSnapshot = true
	}
	pol.Clients.Canary = int(polBits >> 7 & 3)
	pol.Clients.BatchSize = int(polBits >> 9 & 3)
	pol.Clients.BatchPercent = int(polBits>>11&3) * 20
	pol.Clients.MaxUnavailable = int(polBits >> 13 & 3)
	// Waive what a test cluster cannot fix, so plans get made.
	if polBits&(1<<15) != 0 {
		for _, rule := range Catalogue() {
			pol.Waive = append(pol.Waive, rule.ID)
		}
	}
	return c, target, pol
}

func FuzzPlan(f *testing.F) {
	for i := range 40 {
		f.Add(uint64(i), uint16(i*37), uint16(i*2311))
	}
	f.Add(uint64(7), uint16(2), uint16(1<<15|1))
	f.Add(uint64(9), uint16(20), uint16(1<<15|8|32))
	f.Fuzz(func(t *testing.T, seed uint64, shape, polBits uint16) {
		c, target, pol := randomPlanInput(seed, shape, polBits)
		before := cloneCluster(c)
		p, err := Plan(c, target, pol)
		if p == nil {
			t.Fatalf("Plan returned a nil plan (err %v)", err)
		}
		if err != nil {
			return
		}
		checkPlanInvariants(t, before, target, pol, p)
	})
}

// checkPlanInvariants replays p on c with the tests' own model and checks
// the safety properties every accepted plan must have.
func checkPlanInvariants(t *testing.T, c Cluster, target string, pol Policy, p *UpgradePlan) {
	t.Helper()
	less := func(a, b string) bool {
		va, err1 := ParseVersion(a)
		vb, err2 := ParseVersion(b)
		if err1 != nil || err2 != nil {
			t.Fatalf("unparseable version in an accepted plan: %q or %q", a, b)
		}
		return va.LessThan(vb)
	}
	dcOf := func(dc string) string {
		if dc == "" {
			if len(c.Datacenters) == 1 {
				return c.Datacenters[0].Name
			}
			return "dc1"
		}
		return dc
	}
	// No agent goes further in one swap than the first stepping stone of
	// the path from its own version: it never skips a hop.
	checkNoSkip := func(i int, node, from, to string) {
		t.Helper()
		path, err := Path(from, target, pol)
		if err != nil || len(path) == 0 {
			t.Fatalf("step %d swaps %s from %s to %s, but Path(%s, %s) = %v, %v", i, node, from, to, from, target, path, err)
		}
		if less(path[0].To, to) {
			t.Fatalf("step %d swaps %s from %s to %s, skipping the stepping stone %s", i, node, from, to, path[0].To)
		}
	}
	for i, s := range p.Steps {
		if s.Hop < 0 || s.Hop >= len(p.Path) {
			t.Fatalf("step %d: hop %d outside the path of %d hops", i, s.Hop, len(p.Path))
		}
		hop := p.Path[s.Hop]
		if s.To != hop.To {
			t.Fatalf("step %d goes to %s, its hop %d to %s", i, s.To, s.Hop, hop.To)
		}
		if i > 0 && s.Hop < p.Steps[i-1].Hop {
			t.Fatalf("step %d is on hop %d after a step on hop %d", i, s.Hop, p.Steps[i-1].Hop)
		}
		switch s.Kind {
		case StepSwapServer:
			if s.Node == "" || len(s.Nodes) != 0 {
				t.Fatalf("server step %d names %q and %v; want exactly one server", i, s.Node, s.Nodes)
			}
			var me *Server
			for k := range c.Servers {
				if c.Servers[k].Name == s.Node {
					me = &c.Servers[k]
				}
			}
			if me == nil {
				t.Fatalf("step %d swaps unknown server %s", i, s.Node)
			}
			if !less(me.Version, s.To) {
				t.Fatalf("step %d swaps %s on %s to %s: not an upgrade", i, s.Node, me.Version, s.To)
			}
			checkNoSkip(i, me.Name, me.Version, s.To)
			if pol.ServerOrder != AsListed && me.Leader {
				for _, o := range c.Servers {
					if o.Name != me.Name && dcOf(o.Datacenter) == dcOf(me.Datacenter) && less(o.Version, s.To) {
						t.Fatalf("step %d swaps the leader %s of %s while %s is still on %s (below %s)", i, me.Name, dcOf(me.Datacenter), o.Name, o.Version, s.To)
					}
				}
			}
			if pol.ServerOrder == AsListed && s.Deadline != nil && (s.Deadline.First > i || s.Deadline.Last < i) {
				t.Fatalf("step %d deadline %d-%d does not cover it", i, s.Deadline.First, s.Deadline.Last)
			}
		case StepSwapClients:
			if len(s.Nodes) == 0 {
				t.Fatalf("client step %d names no clients", i)
			}
			if pol.Clients.Mode == ClientLeaveBehind {
				t.Fatalf("step %d swaps clients that the policy leaves behind", i)
			}
			for _, o := range c.Servers {
				if dcOf(o.Datacenter) == s.Datacenter && less(o.Version, s.To) {
					t.Fatalf("step %d swaps clients of %s to %s while server %s is on %s", i, s.Datacenter, s.To, o.Name, o.Version)
				}
			}
			inWave := make(map[string]bool, len(s.Nodes))
			for _, n := range s.Nodes {
				inWave[n] = true
			}
			for _, cl := range c.Clients {
				if inWave[cl.Name] {
					checkNoSkip(i, cl.Name, cl.Version, s.To)
				}
			}
		case StepTransferLeader:
			if s.Node == "" || s.Target == "" || s.Node == s.Target {
				t.Fatalf("transfer step %d from %q to %q", i, s.Node, s.Target)
			}
		case StepSnapshot:
		default:
			t.Fatalf("step %d has kind %q", i, s.Kind)
		}
		applyStep(t, &c, s)
	}
	for _, s := range c.Servers {
		if less(s.Version, target) {
			t.Fatalf("after the plan server %s runs %s, below the target %s", s.Name, s.Version, target)
		}
	}
	if pol.Clients.Mode != ClientLeaveBehind {
		for _, cl := range c.Clients {
			if less(cl.Version, target) {
				t.Fatalf("after the plan client %s runs %s, below the target %s", cl.Name, cl.Version, target)
			}
		}
	}
}

// TestRandomPlansKeepTheInvariants runs the fuzz body over a fixed set of
// inputs on every plain `go test`.
func TestRandomPlansKeepTheInvariants(t *testing.T) {
	accepted := 0
	for i := range 3000 {
		c, target, pol := randomPlanInput(uint64(i), uint16(i*7919), uint16(i*104729))
		before := cloneCluster(c)
		p, err := Plan(c, target, pol)
		if p == nil {
			t.Fatalf("input %d: nil plan (err %v)", i, err)
		}
		if err != nil {
			continue
		}
		accepted++
		checkPlanInvariants(t, before, target, pol, p)
	}
	if accepted < 300 {
		t.Fatalf("only %d of 3000 random inputs gave a plan; the generator is too harsh to test anything", accepted)
	}
}
