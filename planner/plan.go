package planner

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Plan previews a whole upgrade: it runs the decision of Next against a
// simulated copy of c until it returns StepDone, applying each step to the
// copy (a swapped agent runs the step's To, a leadership transfer moves the
// leader, a snapshot records the servers' version, an added server is a new
// healthy voter named "<dc>-new-<n>" on To, a retired one is gone). Because Plan and Next
// share one decision, the plan a human reviews and the steps a runner takes
// cannot disagree; only Step.Hop differs, counted here in the whole path
// (UpgradePlan.Path) rather than from the hop a resumed run is on.
//
// The plan records what it was made from in Basis (the servers, voters,
// versions, leader and failure tolerance of each datacenter, its members,
// an unfinished swap), so that a runner applying it later can refuse it
// once the cluster has changed (CheckBasis).
//
// Check runs once. When it refuses, Plan returns the *RefusedError together
// with a plan that holds the findings and the path (and no steps), so a
// caller can print why. Deadlines get the indexes of the first and last step
// they cover. The simulation is bounded; exceeding the bound is an error,
// never an endless loop. c itself is not modified. UpgradePlan.Policy is pol
// as applied: Enterprise is set when c or target runs an Enterprise build.
func Plan(c Cluster, target string, pol Policy) (*UpgradePlan, error) {
	if err := CheckWaivers(pol); err != nil {
		return &UpgradePlan{Target: target, Policy: pol}, err
	}
	pol = withObservedEnterprise(&c, target, pol)
	p := &UpgradePlan{Target: target, Policy: pol, Findings: Check(c, target, pol), Basis: newBasis(&c)}
	if err := refusal(p.Findings, target); err != nil {
		if st, serr := newState(&c, target, pol); serr == nil && st.refreshPath() == nil {
			p.Path = st.path
			p.fillDatacenters(&c)
		}
		return p, err
	}
	st, err := newState(&c, target, pol)
	if err != nil {
		return p, err
	}
	if err := st.refreshPath(); err != nil {
		return p, err
	}
	p.Path = slices.Clone(st.path)
	p.Steps = []Step{}

	// Bound: every server at most three steps per hop (swap, transfer,
	// swap), every client at most one wave per hop, a snapshot per hop.
	limit := (3*len(c.Servers)+len(c.Clients)+1)*(len(p.Path)+1) + 10
	base := 0 // index in p.Path of hop 0 of st.path
	for {
		if len(p.Steps) > limit {
			return p, fmt.Errorf("plan to %s: the simulation did not finish within %d steps (the bound for %d servers, %d clients and %d hops); this is a planner bug, please report it with the cluster",
				target, limit, len(c.Servers), len(c.Clients), len(p.Path))
		}
		if err := st.refreshPath(); err != nil {
			return p, err
		}
		base = p.locate(st.path, base)
		step, err := st.decide()
		if err != nil {
			return p, err
		}
		if step.Kind == StepDone {
			break
		}
		if err := st.apply(step); err != nil {
			return p, err
		}
		step.Hop += base
		p.Steps = append(p.Steps, step)
	}
	p.fillDeadlines()
	p.fillDatacenters(&c)
	return p, nil
}

// fillDatacenters records in every hop of the path the order its
// datacenters take (the order the steps follow), when c has several.
func (p *UpgradePlan) fillDatacenters(c *Cluster) {
	names := datacenterNames(c)
	if len(names) < 2 {
		return
	}
	for i := range p.Path {
		h := &p.Path[i]
		h.Datacenters = make([]string, 0, len(names))
		for _, k := range hopOrder(len(names), *h, c.Features) {
			h.Datacenters = append(h.Datacenters, names[k])
		}
	}
}

// locate returns the index in p.Path where path (recomputed from a later
// lowest version) starts. Path is expected to continue the way it started;
// should it not, the new hops replace the rest of p.Path.
func (p *UpgradePlan) locate(path []Hop, from int) int {
	if len(path) == 0 {
		return from
	}
	for i := from; i < len(p.Path); i++ {
		if p.Path[i].From == path[0].From && p.Path[i].To == path[0].To {
			return i
		}
	}
	for i := from; i < len(p.Path); i++ {
		if p.Path[i].To == path[0].To {
			p.Path = append(p.Path[:i], path...)
			return i
		}
	}
	at := min(from+1, len(p.Path))
	p.Path = append(p.Path[:at], path...)
	return at
}

// apply changes the simulated cluster the way step would change the real
// one.
func (st *state) apply(step Step) error {
	to, err := st.vs.id(step.To, "")
	if err != nil {
		return err
	}
	switch step.Kind {
	case StepSnapshot:
		_, low := st.lowest()
		st.snap = st.vs.strs[low]
	case StepSwapServer:
		i := st.serverIndex(step.Node)
		if i < 0 {
			return fmt.Errorf("simulate step %s: server %s is not in the cluster; this is a planner bug", step.Kind, step.Node)
		}
		st.srvV[i] = to
	case StepAddServer:
		return st.addServer(step.Datacenter, to)
	case StepRetireServer:
		return st.retireServer(step.Node)
	case StepTransferLeader:
		from, tgt := st.serverIndex(step.Node), st.serverIndex(step.Target)
		if from < 0 || tgt < 0 {
			return fmt.Errorf("simulate step %s: %s or %s is not in the cluster; this is a planner bug", step.Kind, step.Node, step.Target)
		}
		st.leader[from], st.leader[tgt] = false, true
	case StepSwapClients:
		// The wave's nodes are the below-target clients of one wave, in
		// order: walk that wave.
		d := st.dcByName(step.Datacenter)
		if d == nil || step.Wave >= len(d.waves) {
			return fmt.Errorf("simulate step %s: wave %d of %s does not exist; this is a planner bug", step.Kind, step.Wave, step.Datacenter)
		}
		k := 0
		for _, ci := range d.waves[step.Wave] {
			if k < len(step.Nodes) && st.c.Clients[ci].Name == step.Nodes[k] {
				old := int(st.cliV[ci])
				addCount(&st.cliCount, old, -1)
				addCount(&d.count, old, -1)
				addCount(&st.cliCount, to, 1)
				addCount(&d.count, to, 1)
				st.cliV[ci] = int32(to)
				k++
			}
		}
		if k != len(step.Nodes) {
			return fmt.Errorf("simulate step %s: %d of %d clients of wave %d of %s found; this is a planner bug", step.Kind, k, len(step.Nodes), step.Wave, step.Datacenter)
		}
	}
	return nil
}

func (st *state) serverIndex(name string) int {
	for i := range st.c.Servers {
		if st.c.Servers[i].Name == name {
			return i
		}
	}
	return -1
}

func (st *state) dcByName(name string) *dcState {
	for _, d := range st.dcs {
		if d.name == name {
			return d
		}
	}
	return nil
}

// fillDeadlines sets First and Last of every deadline to the indexes of the
// first and last step that share it (same rule, datacenter and hop).
func (p *UpgradePlan) fillDeadlines() {
	type key struct {
		rule RuleID
		dc   string
		hop  int
	}
	span := make(map[key][2]int)
	for i, s := range p.Steps {
		if s.Deadline == nil {
			continue
		}
		k := key{s.Deadline.Rule, s.Datacenter, s.Hop}
		if sp, ok := span[k]; ok {
			span[k] = [2]int{sp[0], i}
		} else {
			span[k] = [2]int{i, i}
		}
	}
	for i := range p.Steps {
		s := &p.Steps[i]
		if s.Deadline == nil {
			continue
		}
		sp := span[key{s.Deadline.Rule, s.Datacenter, s.Hop}]
		s.Deadline.First, s.Deadline.Last = sp[0], sp[1]
	}
}

// JSON returns the plan as indented JSON. It unmarshals back into an equal
// UpgradePlan (rules' When functions aside, which JSON cannot carry).
func (p *UpgradePlan) JSON() ([]byte, error) {
	return json.MarshalIndent(p, "", "  ")
}
