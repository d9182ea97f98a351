package planner

import (
	"fmt"
	"testing"
)

// benchCluster is 5 servers in 3 datacenters (3 + 1 + 1) on from, and n
// clients spread over the datacenters and three zones each.
func benchCluster(n int, from string) Cluster {
	c := Cluster{
		Datacenters: []Datacenter{{Name: "dc1", Primary: true}, {Name: "dc2"}, {Name: "dc3"}},
		Servers: []Server{
			srv("a1", "dc1", from, false), srv("a2", "dc1", from, true), srv("a3", "dc1", from, false),
			srv("b1", "dc2", from, true), srv("c1", "dc3", from, true),
		},
		Clients: make([]Client, 0, n),
	}
	for i := range n {
		dc := []string{"dc1", "dc2", "dc3"}[i%3]
		c.Clients = append(c.Clients, Client{
			Name:       fmt.Sprintf("%s-client-%06d", dc, i),
			Datacenter: dc,
			Zone:       fmt.Sprintf("%s-z%d", dc, i%7%3),
			Version:    from,
		})
	}
	return c
}

func benchPlan(b *testing.B, n int) {
	c := benchCluster(n, "1.10.12")
	pol := Policy{Clients: ClientPolicy{MaxUnavailable: 500}}
	b.ReportAllocs()
	b.ResetTimer()
	steps := 0
	for b.Loop() {
		p, err := Plan(c, "1.13.9", pol)
		if err != nil {
			b.Fatal(err)
		}
		steps = len(p.Steps)
	}
	b.ReportMetric(float64(steps), "steps/plan")
}

// BenchmarkPlan5Servers10kClients plans 5 servers and 10,000 clients in
// three datacenters over two hops (1.10.12 -> 1.12.9 -> 1.13.9), clients in
// waves with a per-zone bound. Target: <= 5 ms/op, <= 20 MB/op.
func BenchmarkPlan5Servers10kClients(b *testing.B) { benchPlan(b, 10_000) }

// BenchmarkPlan5Servers100kClients is the same with 100,000 clients.
// Target: <= 100 ms/op.
func BenchmarkPlan5Servers100kClients(b *testing.B) { benchPlan(b, 100_000) }

// BenchmarkNext100kClients is one decision on a 100,000-client cluster in
// the middle of its client waves.
func BenchmarkNext100kClients(b *testing.B) {
	c := benchCluster(100_000, "1.12.9")
	for i := range c.Servers {
		c.Servers[i].Version = "1.13.9"
	}
	for i := 0; i < len(c.Clients); i += 2 {
		c.Clients[i].Version = "1.13.9"
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Next(c, "1.13.9", Policy{}); err != nil {
			b.Fatal(err)
		}
	}
}
