package planner

import "strings"

// withObservedEnterprise returns pol with Enterprise set when the cluster or
// the target is a Consul Enterprise build: a server's or client's version
// (the serf build tag Discover reads) or the target carries "+ent" build
// metadata. The Enterprise rules then apply without the operator setting
// Policy.Enterprise; an operator cannot turn them off for a cluster that
// runs Enterprise. Check, Next, Plan and Path all read the policy through it.
func withObservedEnterprise(c *Cluster, target string, pol Policy) Policy {
	if pol.Enterprise {
		return pol
	}
	if enterpriseBuild(target) {
		pol.Enterprise = true
		return pol
	}
	if c == nil {
		return pol
	}
	for i := range c.Servers {
		if enterpriseBuild(c.Servers[i].Version) {
			pol.Enterprise = true
			return pol
		}
	}
	last := ""
	for i := range c.Clients {
		// Clients mostly share a handful of version strings.
		if v := c.Clients[i].Version; v != last {
			if enterpriseBuild(v) {
				pol.Enterprise = true
				return pol
			}
			last = v
		}
	}
	return pol
}

// enterpriseBuild is IsEnterprise, with a cheap test first: most versions
// carry no build metadata at all.
func enterpriseBuild(s string) bool {
	return strings.Contains(s, "+ent") && IsEnterprise(s)
}
