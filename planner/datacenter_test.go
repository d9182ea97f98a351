package planner

import (
	"slices"
	"strings"
	"testing"
)

// One source of truth for datacenter order: the steps of a plan take the
// datacenters in the order each hop records, which is DatacenterOrder's,
// and Check's datacenter-order finding says the same.
func TestDatacenterOrderIsTheOrderThePlanFollows(t *testing.T) {
	// 0.9.4 with ACLs has only legacy tokens, which must be migrated on
	// 1.6.x before going further (legacy-acls-before-leaving-1.6): it is
	// planned to 1.6.10, over the 1.2.4 and the 1.6.10 path.
	for _, tc := range []struct{ from, target string }{{"1.5.2", "1.8.19"}, {"1.6.9", "1.8.19"}, {"0.9.4", "1.6.10"}} {
		from, target := tc.from, tc.target
		c := threeDC(from)
		p, err := Plan(c, target, Policy{Clients: ClientPolicy{BatchSize: 20}})
		if err != nil {
			t.Fatalf("%s: %v", from, err)
		}
		for hi, h := range p.Path {
			want := DatacenterOrder(c, h)
			if !slices.Equal(h.Datacenters, want) {
				t.Errorf("%s: hop %s -> %s records %v, DatacenterOrder says %v", from, h.From, h.To, h.Datacenters, want)
			}
			var seen []string
			for _, s := range p.Steps {
				if s.Hop != hi || s.Datacenter == "" {
					continue
				}
				if len(seen) == 0 || seen[len(seen)-1] != s.Datacenter {
					seen = append(seen, s.Datacenter)
				}
			}
			if !slices.Equal(seen, want) {
				t.Errorf("%s: hop %s -> %s: steps take %v, want %v", from, h.From, h.To, seen, want)
			}
			primaryLast := want[len(want)-1] == "dc1"
			for _, f := range p.Findings {
				if f.Rule == RuleDatacenterOrder && f.Hop == h.From+" -> "+h.To {
					if said := strings.Contains(f.Message, "the primary last"); said != primaryLast {
						t.Errorf("%s: hop %s -> %s: finding %q disagrees with the order %v", from, h.From, h.To, f.Message, want)
					}
				}
			}
		}
	}
}

func TestDatacenterOrderCases(t *testing.T) {
	c := threeDC("1.5.2")
	if got := DatacenterOrder(c, Hop{From: "1.5.2", To: "1.6.10"}); !slices.Equal(got, []string{"dc2", "dc3", "dc1"}) {
		t.Errorf("1.6.10 path with ACL replication: %v, want secondaries by name, then the primary", got)
	}
	if got := DatacenterOrder(c, Hop{From: "1.6.9", To: "1.8.19"}); !slices.Equal(got, []string{"dc1", "dc2", "dc3"}) {
		t.Errorf("1.8.19 path: %v, want the primary first", got)
	}
	// No datacenter listed: agents name them, none is marked, the first by
	// name is the primary; an agent naming none is in dc1.
	c = Cluster{
		Servers: []Server{{Name: "x", Datacenter: "west", Version: "1.12.9"}, {Name: "y", Version: "1.12.9"}},
		Clients: []Client{{Name: "z", Datacenter: "east", Version: "1.12.9"}},
	}
	if got := DatacenterOrder(c, Hop{From: "1.12.9", To: "1.13.9"}); !slices.Equal(got, []string{"dc1", "east", "west"}) {
		t.Errorf("unlisted datacenters: %v, want [dc1 east west]", got)
	}
	// One datacenter: Plan records no order.
	p, err := Plan(baseCluster("1.12.9"), "1.13.9", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range p.Path {
		if h.Datacenters != nil {
			t.Errorf("single datacenter: hop records %v, want none", h.Datacenters)
		}
	}
}
