package planner

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sort"
	"strconv"
	"strings"

	version "github.com/hashicorp/go-version"
)

// Check returns every finding for upgrading c to target under pol: the
// cluster's own pre-checks, then the built-in and the policy's rules for
// every hop of the servers' path to target (from the lowest server version,
// each hop ending no further than the first stepping stone of any server
// version it moves, or of a client version at or above the lowest server
// that follows in waves; with a single version, Path's). Findings
// come in a stable order: by hop (pre-checks first), then severity
// (blocking, warning, info), rule ID and node. Blocking findings whose rule
// ID is in pol.Waive are marked Waived and still listed.
//
// Client-scoped rules yield one finding per rule and hop for all clients it
// concerns, naming how many and the first few, so Check stays fast on
// clusters with 100,000 clients.
//
// A cluster or target on a Consul Enterprise build (+ent) is checked as
// Enterprise whether or not pol.Enterprise is set, and the rules read c's
// features with the facts its versions imply added (a fact declared is
// never cleared): ACLs on with a server below 1.4.0 mean every token is a
// legacy one; legacy tokens or ACL replication mean ACLs are on. Rules
// whose fact depends on a version ask it per version: the Raft protocol a
// server runs (configured, else its version's default), whether gRPC is
// served over TLS before 1.14 (an HTTPS port before 1.13, tls.defaults
// certificates on 1.13).
func Check(c Cluster, target string, pol Policy) Findings {
	pol = withObservedEnterprise(&c, target, pol)
	k := newChecker(&c, target, &pol)
	for i := range builtins {
		k.evaluate(&builtins[i])
	}
	for i := range k.users {
		if k.users[i].err == nil {
			k.evaluate(&k.users[i])
		}
	}
	return k.result()
}

// serverState is a server with its version parsed.
type serverState struct {
	s    *Server
	dc   string           // resolved datacenter
	v    *version.Version // nil when the version does not parse
	core *version.Version
}

// clientGroup is every client of one datacenter on one version string.
type clientGroup struct {
	rawDC string
	dc    string // resolved datacenter
	raw   string // version as reported
	v     *version.Version
	core  *version.Version
	err   error
	count int
	first []int32 // indexes of the first few clients, in order
}

// namesShown is how many client names an aggregated finding lists.
const namesShown = 3

// keyed is a finding with the hop index it belongs to (-1: none).
type keyed struct {
	hop int
	f   Finding
}

// checker holds what Check computes once and every rule reads.
type checker struct {
	c   *Cluster
	pol *Policy
	vc  VersionCache

	targetRaw  string
	target     *version.Version // nil when the target does not parse
	targetCore *version.Version
	targetErr  error

	defaultDC string
	servers   []serverState
	groups    []clientGroup
	dcMax     map[string]*version.Version // newest server version per datacenter

	lowest           *version.Version // lowest parsed server version
	path             []Hop
	pathFrom, pathTo []*version.Version // cores of the hops' ends
	pathErr          error

	users []compiled
	fired map[RuleID]bool // rules marked once that already fired
	out   []keyed
}

// defaultDatacenter is the datacenter of agents that name none: "dc1" when
// the cluster lists no datacenter, the only one when it lists one, else ""
// (ambiguous).
func defaultDatacenter(c *Cluster) string {
	switch len(c.Datacenters) {
	case 0:
		return "dc1"
	case 1:
		return c.Datacenters[0].Name
	default:
		return ""
	}
}

func (k *checker) resolveDC(dc string) string {
	if dc == "" {
		return k.defaultDC
	}
	return dc
}

func newChecker(c *Cluster, target string, pol *Policy) *checker {
	k := &checker{c: c, pol: pol, targetRaw: target, defaultDC: defaultDatacenter(c), fired: map[RuleID]bool{}}
	k.target, k.targetErr = k.vc.Parse(target)
	if k.target != nil {
		k.targetCore = coreOf(k.target)
	}

	k.servers = make([]serverState, len(c.Servers))
	k.dcMax = map[string]*version.Version{}
	for i := range c.Servers {
		s := &c.Servers[i]
		st := serverState{s: s, dc: k.resolveDC(s.Datacenter)}
		e := k.vc.entry(s.Version)
		if e.err == nil {
			st.v, st.core = e.v, e.core
			if k.lowest == nil || lessThan(st.v, k.lowest) {
				k.lowest = st.v
			}
			if m := k.dcMax[st.dc]; m == nil || lessThan(m, st.v) {
				k.dcMax[st.dc] = st.v
			}
		}
		k.servers[i] = st
	}
	// The rules read the features with what the versions imply (c is
	// Check's own copy of the cluster).
	c.Features = impliedFeatures(c.Features, k.lowest)

	// Clients mostly share a handful of (datacenter, version) pairs: look
	// them up by a short linear scan, and by a map only once there are many.
	type groupKey struct{ dc, ver string }
	const scanGroups = 16
	var index map[groupKey]int
	for i := range c.Clients {
		cl := &c.Clients[i]
		gi := -1
		if index == nil {
			for j := range k.groups {
				if g := &k.groups[j]; g.raw == cl.Version && g.rawDC == cl.Datacenter {
					gi = j
					break
				}
			}
		} else if j, ok := index[groupKey{cl.Datacenter, cl.Version}]; ok {
			gi = j
		}
		if gi < 0 {
			gi = len(k.groups)
			e := k.vc.entry(cl.Version)
			k.groups = append(k.groups, clientGroup{rawDC: cl.Datacenter, dc: k.resolveDC(cl.Datacenter), raw: cl.Version, v: e.v, core: e.core, err: e.err})
			if index != nil {
				index[groupKey{cl.Datacenter, cl.Version}] = gi
			} else if len(k.groups) > scanGroups {
				index = make(map[groupKey]int, 2*len(k.groups))
				for j := range k.groups {
					index[groupKey{k.groups[j].rawDC, k.groups[j].raw}] = j
				}
			}
		}
		g := &k.groups[gi]
		g.count++
		if len(g.first) < namesShown {
			g.first = append(g.first, int32(i))
		}
	}

	if k.lowest != nil && k.target != nil {
		// The servers' versions, and those of clients at or above the
		// lowest server that follow the hops in waves (clients below it
		// are counted on the hop's From: Next brings them up first).
		vs := make([]*version.Version, 0, len(k.servers)+len(k.groups))
		for _, s := range k.servers {
			if s.v != nil {
				vs = append(vs, s.v)
			}
		}
		if pol.Clients.Mode != ClientLeaveBehind {
			for _, g := range k.groups {
				if g.v != nil && !lessThan(g.v, k.lowest) {
					vs = append(vs, g.v)
				}
			}
		}
		k.path, k.pathErr = clusterPath(vs, k.target, *pol, factsOf(c.Features))
		for _, h := range k.path {
			f, _ := k.vc.Parse(h.From)
			t, _ := k.vc.Parse(h.To)
			if f == nil || t == nil {
				k.path, k.pathErr = nil, fmt.Errorf("hop %s -> %s does not parse", h.From, h.To)
				break
			}
			k.pathFrom = append(k.pathFrom, coreOf(f))
			k.pathTo = append(k.pathTo, coreOf(t))
		}
	}

	for _, r := range pol.Rules {
		b := builtin{Rule: r}
		if b.Scope == "" {
			b.Scope = ScopeCluster
		}
		k.users = append(k.users, compile(b))
	}
	return k
}

// add records a finding of rule r.
func (k *checker) add(hop int, r *compiled, sev Severity, node, value, lim, msg string) {
	if lim == "" {
		lim = r.limit
	}
	f := Finding{
		Rule: r.ID, Severity: sev, Kind: r.Kind, Node: node, Value: value, Limit: lim,
		Message: msg, Hint: r.Hint, URL: r.URL,
	}
	if hop >= 0 && hop < len(k.path) {
		f.Hop = k.path[hop].From + " -> " + k.path[hop].To
	}
	k.out = append(k.out, keyed{hop: hop, f: f})
}

// precheck records a cluster pre-check finding with the rule's severity.
func (k *checker) precheck(r *compiled, node, value, msg string) {
	k.add(-1, r, r.Severity, node, value, "", msg)
}

// result sorts the findings and marks the waived ones.
func (k *checker) result() Findings {
	sort.SliceStable(k.out, func(i, j int) bool {
		a, b := k.out[i], k.out[j]
		if a.hop != b.hop {
			return a.hop < b.hop
		}
		if ra, rb := severityRank(a.f.Severity), severityRank(b.f.Severity); ra != rb {
			return ra < rb
		}
		if a.f.Rule != b.f.Rule {
			return a.f.Rule < b.f.Rule
		}
		return a.f.Node < b.f.Node
	})
	waive := make(map[RuleID]bool, len(k.pol.Waive))
	for _, id := range k.pol.Waive {
		waive[id] = true
	}
	out := make(Findings, len(k.out))
	for i, kf := range k.out {
		f := kf.f
		if f.Severity == Blocking && waive[f.Rule] {
			f.Waived = true
		}
		out[i] = f
	}
	return out
}

func severityRank(s Severity) int {
	switch s {
	case Blocking:
		return 0
	case Warning:
		return 1
	case Info:
		return 2
	}
	return 3
}

// evaluate runs one rule: its own evaluator, its stones, or the generic
// evaluation by scope and constraints over every hop.
func (k *checker) evaluate(r *compiled) {
	switch {
	case r.eval != nil:
		r.eval(k, r)
		return
	case r.stone:
		for i, h := range k.path {
			if h.Rule == r.ID {
				k.add(i, r, k.severity(r, k.ctx(i)), "", h.To, r.limit,
					fmt.Sprintf("stepping stone %s (hop %s -> %s): %s", h.To, h.From, h.To, h.Reason))
			}
		}
		return
	}
	for i := range k.path {
		if r.once && k.fired[r.ID] {
			return
		}
		if len(r.to) > 0 && !r.to.Check(k.pathTo[i]) {
			continue
		}
		rc := k.ctx(i)
		if r.When != nil && !r.When(rc) {
			continue
		}
		switch r.Scope {
		case ScopeServers:
			k.evalServers(i, r, rc)
		case ScopeClients:
			k.evalClients(i, r, rc)
		default:
			k.evalCluster(i, r, rc)
		}
	}
}

func (k *checker) ctx(hop int) RuleContext {
	rc := RuleContext{Cluster: k.c, Policy: k.pol}
	if hop >= 0 && hop < len(k.path) {
		rc.Hop = k.path[hop]
	}
	return rc
}

func (k *checker) severity(r *compiled, rc RuleContext) Severity {
	if r.severity != nil {
		return r.severity(rc)
	}
	return r.Severity
}

func (k *checker) message(r *compiled, rc RuleContext) string {
	if r.message != nil {
		return r.message(rc)
	}
	return r.Summary
}

// limitOf is the Limit of a generic finding.
func limitOf(r *compiled) string {
	if r.limit != "" {
		return r.limit
	}
	var parts []string
	if r.From != "" {
		parts = append(parts, "from "+r.From)
	}
	if r.To != "" {
		parts = append(parts, "to "+r.To)
	}
	return strings.Join(parts, "; ")
}

func (k *checker) evalCluster(i int, r *compiled, rc RuleContext) {
	h := k.path[i]
	if len(r.from) > 0 && !r.from.Check(k.pathFrom[i]) {
		return
	}
	value := h.From
	if r.targetValue {
		value = h.To
	}
	k.fired[r.ID] = true
	k.add(i, r, k.severity(r, rc), "", value, limitOf(r),
		fmt.Sprintf("%s -> %s: %s", h.From, h.To, k.message(r, rc)))
}

func (k *checker) evalServers(i int, r *compiled, rc RuleContext) {
	h := k.path[i]
	from, to := k.pathFrom[i], k.pathTo[i]
	sev, msg := k.severity(r, rc), k.message(r, rc)
	for _, s := range k.servers {
		if s.core == nil || !lessThan(s.core, to) {
			continue
		}
		eff, value := from, h.From
		if lessThan(from, s.core) {
			eff, value = s.core, s.s.Version
		}
		if len(r.from) > 0 && !r.from.Check(eff) {
			continue
		}
		k.fired[r.ID] = true
		k.add(i, r, sev, s.s.Name, value, limitOf(r),
			fmt.Sprintf("server %s on %s -> %s: %s", s.s.Name, value, h.To, msg))
	}
}

func (k *checker) evalClients(i int, r *compiled, rc RuleContext) {
	h := k.path[i]
	from := k.pathFrom[i]
	leaveBehind := k.pol.Clients.Mode == ClientLeaveBehind
	count := 0
	var idx []int32
	var values []string
	for gi := range k.groups {
		g := &k.groups[gi]
		if g.core == nil {
			continue
		}
		eff, value := g.core, g.raw
		if !leaveBehind && lessThan(eff, from) {
			eff, value = from, h.From
		}
		if len(r.from) > 0 && !r.from.Check(eff) {
			continue
		}
		count += g.count
		idx = append(idx, g.first...)
		values = appendUnique(values, value)
	}
	if count == 0 {
		return
	}
	k.fired[r.ID] = true
	label := k.clientLabel(count, idx)
	k.add(i, r, k.severity(r, rc), label, strings.Join(values, ", "), limitOf(r),
		fmt.Sprintf("%s on %s -> %s: %s", label, strings.Join(values, ", "), h.To, k.message(r, rc)))
}

// appendUnique appends v unless present; it keeps at most namesShown
// values and marks the rest with "...".
func appendUnique(vs []string, v string) []string {
	for _, x := range vs {
		if x == v || x == "..." {
			return vs
		}
	}
	if len(vs) == namesShown {
		return append(vs, "...")
	}
	return append(vs, v)
}

// clientLabel names an aggregate of clients: how many, and the first few
// (by their order in Cluster.Clients).
func (k *checker) clientLabel(count int, idx []int32) string {
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	if len(idx) > namesShown {
		idx = idx[:namesShown]
	}
	names := make([]string, len(idx))
	for j, x := range idx {
		names[j] = k.c.Clients[x].Name
	}
	if count == 1 && len(names) == 1 {
		return "client " + names[0]
	}
	list := strings.Join(names, ", ")
	if count > len(names) {
		list += ", ..."
	}
	return fmt.Sprintf("%d clients (%s)", count, list)
}

// Cluster pre-checks.

func (k *checker) checkNoServers(r *compiled) {
	if len(k.servers) == 0 {
		k.precheck(r, "", "0 servers", "the cluster has no server agents")
		return
	}
	if len(k.c.Datacenters) == 0 {
		return
	}
	withServers := map[string]bool{}
	for _, s := range k.servers {
		withServers[s.dc] = true
	}
	clients := map[string]int{}
	for _, g := range k.groups {
		clients[g.dc] += g.count
	}
	for _, d := range k.c.Datacenters {
		if n := clients[d.Name]; n > 0 && !withServers[d.Name] {
			k.precheck(r, "", "0 servers", fmt.Sprintf("datacenter %s has %d client(s) and no server", d.Name, n))
		}
	}
}

// serverDatacenters lists the datacenters that have servers, in the order
// they first appear, with their servers.
func (k *checker) serverDatacenters() ([]string, map[string][]*serverState) {
	var order []string
	by := map[string][]*serverState{}
	for i := range k.servers {
		s := &k.servers[i]
		if _, ok := by[s.dc]; !ok {
			order = append(order, s.dc)
		}
		by[s.dc] = append(by[s.dc], s)
	}
	return order, by
}

func dcName(dc string) string {
	if dc == "" {
		return "(unnamed)"
	}
	return dc
}

func (k *checker) checkLeaders(r *compiled) {
	order, by := k.serverDatacenters()
	for _, dc := range order {
		var leaders []string
		for _, s := range by[dc] {
			if s.s.Leader {
				leaders = append(leaders, s.s.Name)
			}
		}
		switch {
		case r.ID == PrecheckNoLeader && len(leaders) == 0 && !k.c.LeaderUnknown:
			k.precheck(r, "", "0 leaders", fmt.Sprintf("datacenter %s: none of its %d server(s) is the known leader", dcName(dc), len(by[dc])))
		case r.ID == PrecheckSeveralLeaders && len(leaders) > 1:
			k.precheck(r, strings.Join(leaders, ", "), strconv.Itoa(len(leaders))+" leaders",
				fmt.Sprintf("datacenter %s: servers %s all report being leader", dcName(dc), strings.Join(leaders, ", ")))
		}
	}
}

func (k *checker) checkServerHealth(r *compiled) {
	for _, s := range k.servers {
		switch {
		case r.ID == PrecheckServerUnhealthy && !s.s.Healthy:
			k.precheck(r, s.s.Name, "healthy=false", fmt.Sprintf("server %s (%s) is not healthy", s.s.Name, s.s.Version))
		case r.ID == PrecheckServerNotVoter && !s.s.Voter:
			k.precheck(r, s.s.Name, "voter=false", fmt.Sprintf("server %s (%s) is not a voter", s.s.Name, s.s.Version))
		}
	}
}

func (k *checker) checkVoters(r *compiled) {
	order, by := k.serverDatacenters()
	for _, dc := range order {
		n, voters, healthy := len(by[dc]), 0, 0
		var names []string
		for _, s := range by[dc] {
			if s.s.Voter {
				voters++
				names = append(names, s.s.Name)
				if s.s.Healthy {
					healthy++
				}
			}
		}
		switch {
		case r.ID == PrecheckEvenVoters && voters > 0 && voters%2 == 0:
			k.precheck(r, "", strconv.Itoa(voters)+" voters",
				fmt.Sprintf("datacenter %s has %d voters: quorum is %d, so the last voter adds no fault tolerance", dcName(dc), voters, voters/2+1))
		case r.ID == PrecheckFailureTolerance && n == 1:
			s := by[dc][0].s
			msg := fmt.Sprintf("datacenter %s has a single server (%s): its swap is a planned outage: while %s restarts the datacenter has no leader and writes fail, until it is back", dcName(dc), s.Name, s.Name)
			if k.pol.Strategy == Replace {
				msg = fmt.Sprintf("datacenter %s has a single server (%s): under the replace strategy a new server joins before %s leaves, so there is no outage, but no failure is tolerated meanwhile", dcName(dc), s.Name, s.Name)
			}
			k.precheck(r, s.Name, "1 server", msg)
		case r.ID == PrecheckNoSpareVoter && voters >= 2 && FailureTolerance(voters, voters) == 0:
			// Even with every voter healthy there is no spare: 2 voters.
			// Voters that are not healthy are server-unhealthy's.
			msg := fmt.Sprintf("datacenter %s has %d voters (%s): quorum is %d of %d, so its failure tolerance is %d and stopping any voter leaves it without a leader",
				dcName(dc), voters, strings.Join(names, ", "), voters/2+1, voters, FailureTolerance(voters, healthy))
			var missing []string
			for _, m := range k.c.Missing {
				if k.resolveDC(m.Datacenter) == dc {
					missing = append(missing, m.String())
				}
			}
			if len(missing) > 0 {
				msg += "; missing: " + strings.Join(missing, ", ")
			}
			sev := Blocking
			if why := k.stopsNoVoter(by[dc]); why != "" {
				sev = Warning
				msg += "; " + why
			}
			k.add(-1, r, sev, "", fmt.Sprintf("failure tolerance 0 with %d voters", voters), "failure tolerance >= 1", msg)
		}
	}
}

// FailureTolerance is how many voters a datacenter can lose and keep its
// quorum: the healthy voters beyond a quorum of all voters (at least 0),
// as autopilot counts it.
func FailureTolerance(voters, healthyVoters int) int {
	return max(0, healthyVoters-(voters/2+1))
}

// stopsNoVoter says why an upgrade of a datacenter with these servers
// stops none of its voters ("" when it does stop some): under the replace
// strategy a server is added before one leaves, and a retired server
// leaves the Raft configuration gracefully; with every server on the
// target already, only clients are left.
func (k *checker) stopsNoVoter(servers []*serverState) string {
	if k.pol.Strategy == Replace {
		return "the replace strategy stops no voter in place (it adds a server before it retires one, and a retired server leaves the Raft configuration gracefully), so this is a warning"
	}
	if k.target == nil {
		return ""
	}
	for _, s := range servers {
		if s.core == nil || lessThan(s.core, k.targetCore) {
			return ""
		}
	}
	return "every server already runs the target, so no voter is stopped, and this is a warning"
}

// checkMissing names each server that serf lists but the Raft
// configuration does not (Cluster.Missing).
func (k *checker) checkMissing(r *compiled) {
	for _, m := range k.c.Missing {
		dc := k.resolveDC(m.Datacenter)
		voters := 0
		for _, s := range k.servers {
			if s.dc == dc && s.s.Voter {
				voters++
			}
		}
		k.precheck(r, m.Name, m.Status,
			fmt.Sprintf("server %s of datacenter %s is missing: %s; it was retired on purpose, or it died and autopilot removed it (or someone did, by hand), and datacenter %s counts %d voter(s) without it",
				m.Name, dcName(dc), m, dcName(dc), voters))
	}
}

func (k *checker) checkMixed(r *compiled) {
	var seen []*version.Version
	var raws []string
	for _, s := range k.servers {
		if s.core == nil {
			continue
		}
		dup := false
		for _, v := range seen {
			if v.Equal(s.core) {
				dup = true
				break
			}
		}
		if !dup {
			seen = append(seen, s.core)
			raws = append(raws, s.s.Version)
		}
	}
	if len(seen) > 1 {
		sort.Sort(byVersion{seen, raws})
		k.precheck(r, "", strings.Join(raws, ", "),
			fmt.Sprintf("servers run %d versions (%s): the plan continues from the observed state", len(seen), strings.Join(raws, ", ")))
	}
}

func (k *checker) checkDuplicates(r *compiled) {
	ns, nc := len(k.c.Servers), len(k.c.Clients)
	name := func(i int) string {
		if i < ns {
			return k.c.Servers[i].Name
		}
		return k.c.Clients[i-ns].Name
	}
	order, counts := duplicates(ns+nc, name)
	for _, n := range order {
		k.precheck(r, n, strconv.Itoa(counts[n])+" agents",
			fmt.Sprintf("node name %q is used by %d agents", n, counts[n]))
	}
}

// duplicates finds the names used more than once among n, in the order
// they first appear, with their counts. It puts a hash of every name into
// an open-addressing table (slot from the low bits, a 32-bit fingerprint
// from the high bits): much cheaper than a set of 100,000 strings. Names
// whose slot chain and fingerprint meet are then compared exactly, so a
// hash collision costs time, never a wrong finding.
func duplicates(n int, name func(int) string) ([]string, map[string]int) {
	seed := maphash.MakeSeed()
	size := 16
	for size < 2*n {
		size <<= 1
	}
	table := make([]uint32, size)
	mask := uint64(size - 1)
	var cand map[uint32]bool
	for i := 0; i < n; i++ {
		h := maphash.String(seed, name(i))
		fp := uint32(h>>32) | 1 // 0 marks an empty slot
		for j := h & mask; ; j = (j + 1) & mask {
			if table[j] == 0 {
				table[j] = fp
				break
			}
			if table[j] == fp {
				if cand == nil {
					cand = map[uint32]bool{}
				}
				cand[fp] = true
				break
			}
		}
	}
	if cand == nil {
		return nil, nil
	}
	counts := map[string]int{}
	var order []string
	for i := 0; i < n; i++ {
		s := name(i)
		if !cand[uint32(maphash.String(seed, s)>>32)|1] {
			continue
		}
		if counts[s] == 1 {
			order = append(order, s)
		}
		counts[s]++
	}
	return order, counts
}

func (k *checker) checkDowngrade(r *compiled) {
	if k.target == nil {
		return
	}
	for _, s := range k.servers {
		if s.v != nil && lessThan(k.target, s.v) {
			k.precheck(r, s.s.Name, s.s.Version,
				fmt.Sprintf("server %s runs %s, newer than the target %s", s.s.Name, s.s.Version, k.targetRaw))
		}
	}
	count := 0
	var idx []int32
	var values []string
	for _, g := range k.groups {
		if g.v != nil && lessThan(k.target, g.v) {
			count += g.count
			idx = append(idx, g.first...)
			values = appendUnique(values, g.raw)
		}
	}
	if count > 0 {
		label := k.clientLabel(count, idx)
		k.precheck(r, label, strings.Join(values, ", "),
			fmt.Sprintf("%s run %s, newer than the target %s", label, strings.Join(values, ", "), k.targetRaw))
	}
}

func (k *checker) checkBadVersions(r *compiled) {
	if k.targetErr != nil {
		k.precheck(r, "target", k.targetRaw, fmt.Sprintf("target version %q does not parse: %v", k.targetRaw, unwrapVersionErr(k.targetErr)))
	}
	for _, s := range k.servers {
		if s.v == nil {
			e := k.vc.entry(s.s.Version)
			k.precheck(r, s.s.Name, s.s.Version, fmt.Sprintf("server %s reports version %q, which does not parse: %v", s.s.Name, s.s.Version, unwrapVersionErr(e.err)))
		}
	}
	// One finding per bad version string, over every datacenter.
	type bad struct {
		count int
		idx   []int32
		err   error
	}
	var order []string
	by := map[string]*bad{}
	for _, g := range k.groups {
		if g.err == nil {
			continue
		}
		b := by[g.raw]
		if b == nil {
			b = &bad{err: g.err}
			by[g.raw] = b
			order = append(order, g.raw)
		}
		b.count += g.count
		b.idx = append(b.idx, g.first...)
	}
	for _, raw := range order {
		b := by[raw]
		label := k.clientLabel(b.count, b.idx)
		k.precheck(r, label, raw, fmt.Sprintf("%s report version %q, which does not parse: %v", label, raw, unwrapVersionErr(b.err)))
	}
}

func unwrapVersionErr(err error) error {
	var ve *VersionError
	if errors.As(err, &ve) && ve.Err != nil {
		return ve.Err
	}
	return err
}

func (k *checker) checkDatacenters(r *compiled) {
	dcs := k.c.Datacenters
	if r.ID == PrecheckNoPrimary {
		if len(dcs) < 2 {
			return
		}
		var primaries []string
		for _, d := range dcs {
			if d.Primary {
				primaries = append(primaries, d.Name)
			}
		}
		if len(primaries) != 1 {
			k.precheck(r, "", strconv.Itoa(len(primaries))+" primaries",
				fmt.Sprintf("%d datacenters and %d marked primary (%s)", len(dcs), len(primaries), strings.Join(primaries, ", ")))
		}
		return
	}
	if len(dcs) == 0 {
		return
	}
	if r.ID == PrecheckDatacenterNotSeen {
		seen := make(map[string]bool, len(dcs))
		for _, s := range k.servers {
			seen[s.dc] = true
		}
		for _, d := range dcs {
			if !seen[d.Name] {
				role := "secondary"
				if d.Primary {
					role = "primary"
				}
				k.precheck(r, "", d.Name, fmt.Sprintf("%s datacenter %s has no servers in this snapshot: this plan leaves it as it is", role, d.Name))
			}
		}
		return
	}
	known := make(map[string]bool, len(dcs))
	for _, d := range dcs {
		known[d.Name] = true
	}
	for _, s := range k.servers {
		if !known[s.dc] {
			k.precheck(r, s.s.Name, s.s.Datacenter,
				fmt.Sprintf("server %s names datacenter %q, which is not among the cluster's datacenters", s.s.Name, s.s.Datacenter))
		}
	}
	type agg struct {
		count int
		idx   []int32
	}
	var order []string
	by := map[string]*agg{}
	for _, g := range k.groups {
		if known[g.dc] {
			continue
		}
		a := by[g.rawDC]
		if a == nil {
			a = &agg{}
			by[g.rawDC] = a
			order = append(order, g.rawDC)
		}
		a.count += g.count
		a.idx = append(a.idx, g.first...)
	}
	for _, dc := range order {
		a := by[dc]
		label := k.clientLabel(a.count, a.idx)
		k.precheck(r, label, dc, fmt.Sprintf("%s name datacenter %q, which is not among the cluster's datacenters", label, dc))
	}
}

func (k *checker) checkClientSkew(r *compiled) {
	type agg struct {
		count  int
		idx    []int32
		values []string
	}
	var order []string
	by := map[string]*agg{}
	for _, g := range k.groups {
		max := k.dcMax[g.dc]
		if g.v == nil || max == nil || !lessThan(max, g.v) {
			continue
		}
		a := by[g.dc]
		if a == nil {
			a = &agg{}
			by[g.dc] = a
			order = append(order, g.dc)
		}
		a.count += g.count
		a.idx = append(a.idx, g.first...)
		a.values = appendUnique(a.values, g.raw)
	}
	for _, dc := range order {
		a := by[dc]
		label := k.clientLabel(a.count, a.idx)
		k.add(-1, r, r.Severity, label, strings.Join(a.values, ", "), "<= "+k.dcMax[dc].Original(),
			fmt.Sprintf("%s in datacenter %s run %s, newer than its newest server (%s)", label, dcName(dc), strings.Join(a.values, ", "), k.dcMax[dc].Original()))
	}
}

func (k *checker) checkUserRules(r *compiled) {
	for _, u := range k.users {
		if u.err != nil {
			k.precheck(r, "", string(u.ID), fmt.Sprintf("rule %q: constraint from %q / to %q does not parse: %v", u.ID, u.From, u.To, u.err))
		}
	}
}

func (k *checker) checkUnsupported(r *compiled) {
	var ue *UnsupportedVersionError
	if errors.As(k.pathErr, &ue) {
		k.precheck(r, "", ue.Value, fmt.Sprintf("version %s is beyond the catalogue (%s)", ue.Value, ue.Limit))
		return
	}
	// A downgrade to 2.x never builds a path; report the target anyway.
	if k.targetCore != nil && !lessThan(k.targetCore, maxSupported) && k.pathErr == nil && k.path == nil && k.lowest == nil {
		k.precheck(r, "", k.targetRaw, fmt.Sprintf("target %s is beyond the catalogue (< %s)", k.targetRaw, maxSupported))
	}
}

// byVersion sorts versions (and their reported strings) ascending.
type byVersion struct {
	vs   []*version.Version
	raws []string
}

func (b byVersion) Len() int           { return len(b.vs) }
func (b byVersion) Less(i, j int) bool { return lessThan(b.vs[i], b.vs[j]) }
func (b byVersion) Swap(i, j int) {
	b.vs[i], b.vs[j] = b.vs[j], b.vs[i]
	b.raws[i], b.raws[j] = b.raws[j], b.raws[i]
}
