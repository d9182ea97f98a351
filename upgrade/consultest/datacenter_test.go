package consultest_test

import (
	"slices"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func TestASecondaryDatacenterNamesItselfItsPrimaryAndItsPrefixedNodes(t *testing.T) {
	sim := consultest.NewCluster(1, 1, "1.12.9",
		consultest.WithDatacenter("dc2", "dc1"), consultest.WithPeerDatacenters("dc3"), consultest.WithNodePrefix("dc2-"))
	c, err := upgrade.Discover(t.Context(), upgrade.NewConsul(client(t, sim)))
	must(t, err)
	if len(c.Servers) != 1 || c.Servers[0].Name != "dc2-s1" || c.Servers[0].Datacenter != "dc2" || !c.Servers[0].Leader {
		t.Errorf("servers %+v, want the leader dc2-s1 in dc2", c.Servers)
	}
	if len(c.Clients) != 1 || c.Clients[0].Name != "dc2-c1" || c.Clients[0].Datacenter != "dc2" {
		t.Errorf("clients %+v, want dc2-c1 in dc2", c.Clients)
	}
	var dcs []string
	for _, d := range c.Datacenters {
		name := d.Name
		if d.Primary {
			name += "*"
		}
		dcs = append(dcs, name)
	}
	if want := []string{"dc1*", "dc2", "dc3"}; !slices.Equal(dcs, want) {
		t.Errorf("datacenters %v, want %v (primary starred)", dcs, want)
	}
	if l := sim.Leader(); l != "dc2-s1" {
		t.Errorf("leader %q, want dc2-s1", l)
	}
}

func TestWithDatacenterWithoutAPrimaryMakesTheDatacenterItsOwnPrimary(t *testing.T) {
	sim := consultest.NewCluster(1, 0, "1.12.9", consultest.WithDatacenter("east", ""))
	c, err := upgrade.Discover(t.Context(), upgrade.NewConsul(client(t, sim)))
	must(t, err)
	if len(c.Datacenters) != 1 || c.Datacenters[0].Name != "east" || !c.Datacenters[0].Primary {
		t.Errorf("datacenters %+v, want east as its own primary", c.Datacenters)
	}
}
