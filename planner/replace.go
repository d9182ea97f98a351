package planner

import (
	"fmt"
	"slices"
	"strings"
)

// desiredServers is the number of servers datacenter d should have while
// its servers are replaced: Policy.ReplaceServers, else the observed count
// when it is odd, one less when it is even (one replacement in flight).
func (st *state) desiredServers(d *dcState) int {
	if st.pol.ReplaceServers > 0 {
		return st.pol.ReplaceServers
	}
	n := len(d.listed)
	if n%2 == 0 {
		return n - 1
	}
	return n
}

// replaceStep is the server step of datacenter d on hop h under the replace
// strategy (blue/green, what Consul Enterprise's automated upgrades do):
//
//   - while a server of d is below the hop's version: when d has its desired
//     count of servers (or fewer), add a new server on the hop's version;
//     when it has more and one of them already runs the hop's version,
//     retire an old one: followers by name first, the leader last (after a
//     leadership transfer to a new voter when the policy asks for it and
//     both versions are >= 1.15);
//   - so the count moves between desired and desired+1 and the failure
//     tolerance of desired servers never drops.
//
// An even count with no server on the hop's version yet is refused when
// Policy.ReplaceServers is 0: it cannot tell a replacement in flight from
// an even cluster. Policy.ServerOrder does not apply: old servers go
// followers first, leader last.
func (st *state) replaceStep(d *dcState, h, toID int) (Step, bool) {
	hop := st.path[h]
	toR := st.vs.r(toID)
	leader := -1
	var old []int // below the hop, by name
	newOnes := 0
	for _, i := range d.byName {
		if st.leader[i] {
			leader = i
		}
		if st.vs.r(st.srvV[i]) < toR {
			old = append(old, i)
		} else {
			newOnes++
		}
	}
	if len(old) == 0 {
		return Step{}, false
	}
	n := len(d.listed)
	want := st.desiredServers(d)
	if n <= want || newOnes == 0 {
		reason := fmt.Sprintf("replace: %s has %d server(s), %d below %s; add a new one on %s before the next old server is retired, so the failure tolerance of %d servers never drops (%s)",
			d.name, n, len(old), hop.To, hop.To, want, RuleAutomatedReplace)
		return Step{
			Kind:       StepAddServer,
			Datacenter: d.name,
			To:         hop.To,
			Hop:        h,
			Gate:       serverGateFor(st.vs.vers[toID]),
			Reason:     reason + st.dcReason(d, hop),
		}, true
	}
	pick := -1
	for _, i := range old {
		if i != leader {
			pick = i
			break
		}
	}
	var reason string
	switch {
	case pick >= 0 && leader >= 0 && st.vs.r(st.srvV[leader]) < toR:
		reason = fmt.Sprintf("replace: %s has %d server(s) (%d wanted) and a new one on %s; retire the old follower %s, the leader %s goes last (%s)",
			d.name, n, want, hop.To, st.c.Servers[pick].Name, st.c.Servers[leader].Name, RuleFollowersFirst)
	case pick >= 0:
		reason = fmt.Sprintf("replace: %s has %d server(s) (%d wanted) and a new one on %s; retire the old server %s (%s)",
			d.name, n, want, hop.To, st.c.Servers[pick].Name, RuleFollowersFirst)
	default:
		pick = leader
		if t := st.transferTarget(d, leader, toID); t >= 0 {
			return st.transferStep(d, h, leader, t, fmt.Sprintf("the leader %s is the last old server of %s: move leadership to the new voter %s first, so %s is retired as a follower without an election timeout (%s)",
				st.c.Servers[leader].Name, d.name, st.c.Servers[t].Name, st.c.Servers[leader].Name, RuleTransferLeader)), true
		}
		reason = fmt.Sprintf("replace: the leader %s is the last old server of %s; retire it last (%s)", st.c.Servers[leader].Name, d.name, RuleFollowersFirst)
	}
	from := st.vs.strs[st.srvV[pick]]
	return Step{
		Kind:       StepRetireServer,
		Node:       st.c.Servers[pick].Name,
		Datacenter: d.name,
		From:       from,
		To:         hop.To,
		Hop:        h,
		StopMode:   StopLeave,
		Gate:       slices.Clone(retireGate),
		Reason:     reason + st.dcReason(d, hop),
	}, true
}

// retireGate is what must hold after a server is retired: a leader, the
// server out of the raft configuration, and the failure tolerance back.
var retireGate = []GateCheck{GateLeaderKnown, GateRemoved, GateFailureTolerance}

// RuleAutomatedReplace is the ID of the rule behind the replace strategy's
// add-then-retire order.
const RuleAutomatedReplace = "automated-upgrades-replace"

// addServer adds a simulated new server on version id to to datacenter
// dcName: named "<dc>-new-<n>", a healthy voter.
func (st *state) addServer(dcName string, to int) error {
	di := -1
	for i, d := range st.dcs {
		if d.name == dcName {
			di = i
		}
	}
	if di < 0 {
		return fmt.Errorf("simulate step %s: datacenter %s does not exist; this is a planner bug", StepAddServer, dcName)
	}
	d := st.dcs[di]
	var name string
	for {
		d.added++
		name = fmt.Sprintf("%s-new-%d", d.name, d.added)
		if st.serverIndex(name) < 0 {
			break
		}
	}
	dcField := d.name
	if len(st.c.Datacenters) == 0 {
		for _, i := range d.listed {
			dcField = st.c.Servers[i].Datacenter
			break
		}
	}
	// Clip: never append into the caller's backing array.
	st.c.Servers = append(slices.Clip(st.c.Servers), Server{Name: name, Datacenter: dcField, Version: st.vs.strs[to], Voter: true, Healthy: true})
	i := len(st.c.Servers) - 1
	st.srvV = append(st.srvV, to)
	st.leader = append(st.leader, false)
	st.srvDC = append(st.srvDC, di)
	if st.gone != nil {
		st.gone = append(st.gone, false)
	}
	d.listed = append(d.listed, i)
	at, _ := slices.BinarySearchFunc(d.byName, name, func(a int, n string) int { return strings.Compare(st.c.Servers[a].Name, n) })
	d.byName = slices.Insert(d.byName, at, i)
	return nil
}

// retireServer removes server name from the simulation; a retired leader
// hands leadership to the first server of its datacenter by name.
func (st *state) retireServer(name string) error {
	i := st.serverIndex(name)
	if i < 0 || (st.gone != nil && st.gone[i]) {
		return fmt.Errorf("simulate step %s: server %s is not in the cluster; this is a planner bug", StepRetireServer, name)
	}
	if st.gone == nil {
		st.gone = make([]bool, len(st.srvV))
	}
	st.gone[i] = true
	d := st.dcs[st.srvDC[i]]
	d.listed = slices.DeleteFunc(d.listed, func(k int) bool { return k == i })
	d.byName = slices.DeleteFunc(d.byName, func(k int) bool { return k == i })
	if st.leader[i] {
		st.leader[i] = false
		// The leader is retired last, so every server left is on the hop's
		// version or later: the first by name takes over.
		if len(d.byName) > 0 {
			st.leader[d.byName[0]] = true
		}
	}
	return nil
}

// replaceCountKnown refuses a datacenter whose desired server count cannot
// be derived: an even count, none of its servers on the hop's version yet,
// and no Policy.ReplaceServers.
func (st *state) replaceCountKnown(toID int) error {
	if st.pol.ReplaceServers > 0 {
		return nil
	}
	toR := st.vs.r(toID)
	for _, d := range st.dcs {
		n := len(d.listed)
		if n == 0 || n%2 != 0 {
			continue
		}
		done := false
		for _, i := range d.listed {
			if st.vs.r(st.srvV[i]) >= toR {
				done = true
				break
			}
		}
		if !done {
			return &PolicyError{Field: "replace_servers", Value: "0",
				Want: fmt.Sprintf("the number of servers %s should keep: it has %d, an even count, and none on %s yet, so the count cannot be derived", d.name, n, st.vs.strs[toID])}
		}
	}
	return nil
}
