package planner

import "slices"

// agentDatacenter returns how an agent's datacenter name resolves in c: an
// agent naming none is in the only listed datacenter, or in "dc1" (the
// Consul default) when none or several are listed.
func agentDatacenter(c *Cluster) func(string) string {
	def := "dc1"
	if len(c.Datacenters) == 1 {
		def = c.Datacenters[0].Name
	}
	return func(name string) string {
		if name == "" {
			return def
		}
		return name
	}
}

// datacenterNames returns the datacenters of c in their base order: the
// primary first, then the others by name. They are the listed datacenters
// and any that only agents name. The primary is the first one marked, else
// the first listed, else the first by name.
func datacenterNames(c *Cluster) []string {
	resolve := agentDatacenter(c)
	seen := map[string]bool{}
	var names []string
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	primary := ""
	for _, d := range c.Datacenters {
		add(d.Name)
		if d.Primary && primary == "" {
			primary = d.Name
		}
	}
	if primary == "" && len(c.Datacenters) > 0 {
		primary = c.Datacenters[0].Name
	}
	for i := range c.Servers {
		add(resolve(c.Servers[i].Datacenter))
	}
	// Clients name few datacenters, in runs or interleaved: a short list of
	// the names seen spares a map lookup per client.
	last := "\x00"
	var raw []string
	for i := range c.Clients {
		dc := c.Clients[i].Datacenter
		if dc == last {
			continue
		}
		last = dc
		if len(raw) < 16 {
			if slices.Contains(raw, dc) {
				continue
			}
			raw = append(raw, dc)
		}
		add(resolve(dc))
	}
	slices.Sort(names)
	if primary == "" && len(names) > 0 {
		primary = names[0]
	}
	if k := slices.Index(names, primary); k > 0 {
		copy(names[1:k+1], names[:k])
		names[0] = primary
	}
	return names
}

// hopOrder returns the order in which n datacenters in base order (primary
// first) take hop h: the base order, or the secondaries first and the
// primary last when PrimaryLast says so.
func hopOrder(n int, h Hop, f Features) []int {
	out := make([]int, 0, n)
	if n > 1 && PrimaryLast(h, f) {
		for i := 1; i < n; i++ {
			out = append(out, i)
		}
		return append(out, 0)
	}
	for i := 0; i < n; i++ {
		out = append(out, i)
	}
	return out
}

// DatacenterOrder returns the names of the datacenters of c in the order
// they take hop h (each datacenter's servers, then its clients, before the
// next datacenter starts): the primary first, then the others by name; on
// the dedicated 1.2.4 and 1.6.10 path hops of a cluster with ACL replication
// (PrimaryLast), the secondaries first and the primary last. The
// datacenters are the listed ones and any that only agents name; the
// primary is the one marked, else the first listed. Next and Plan take
// datacenters in this order, and Plan records it in each Hop's Datacenters.
func DatacenterOrder(c Cluster, h Hop) []string {
	names := datacenterNames(&c)
	out := make([]string, 0, len(names))
	for _, i := range hopOrder(len(names), h, c.Features) {
		out = append(out, names[i])
	}
	return out
}

// datacenterOrderReason says why a datacenter takes its place on hop h
// ("" for a single datacenter).
func datacenterOrderReason(name string, primary bool, n int, h Hop, f Features) string {
	if n < 2 {
		return ""
	}
	if PrimaryLast(h, f) {
		if primary {
			return "; primary " + name + " goes last on the " + h.To + " hop (ACL replication, " + string(RuleDatacenterOrder) + ")"
		}
		return "; secondary datacenters go before the primary on the " + h.To + " hop (ACL replication, " + string(RuleDatacenterOrder) + ")"
	}
	if primary {
		return "; the primary datacenter goes first (" + string(RuleDatacenterOrder) + ")"
	}
	return "; secondaries follow the primary, by name (" + string(RuleDatacenterOrder) + ")"
}
