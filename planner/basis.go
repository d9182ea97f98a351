package planner

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Basis is what a plan was reviewed on: the facts of the cluster given to
// Plan that make its steps safe, per datacenter. A saved plan carries it
// (UpgradePlan.Basis) so that whoever applies the plan later can check
// that the cluster is still the one that was reviewed (CheckBasis), as
// `terraform apply` refuses a saved plan whose state changed. It is a
// value computed purely from the Cluster, and round-trips through JSON.
type Basis struct {
	// Datacenters holds the facts of each datacenter with servers,
	// clients or missing servers, by name.
	Datacenters []BasisDatacenter `json:"datacenters"`
	// UnfinishedSwap is the swap a dead run left unfinished when the plan
	// was made (Cluster.UnfinishedSwap), if the cluster carried one.
	UnfinishedSwap *UnfinishedSwap `json:"unfinished_swap,omitempty"`
}

// BasisDatacenter is what a plan was reviewed on in one datacenter.
type BasisDatacenter struct {
	Name string `json:"name"`
	// Leader is the server that led ("" when the cluster did not say: a
	// hand-built one with LeaderUnknown).
	Leader string `json:"leader,omitempty"`
	// Voters is the number of voters among Servers.
	Voters int `json:"voters"`
	// FailureTolerance is how many voters the datacenter could lose and
	// keep its quorum (see FailureTolerance).
	FailureTolerance int `json:"failure_tolerance"`
	// Servers are the servers, by name, with their version, health and
	// vote as observed.
	Servers []Server `json:"servers"`
	// Missing are the servers serf listed outside the Raft configuration.
	Missing []MissingServer `json:"missing,omitempty"`
	// Clients are the names of the client agents that serf listed (alive
	// or failed, not left), sorted, by the version they ran.
	Clients map[string][]string `json:"clients,omitempty"`
}

// ClientCount is the number of clients in d.Clients.
func (d *BasisDatacenter) ClientCount() int {
	n := 0
	for _, names := range d.Clients {
		n += len(names)
	}
	return n
}

// newBasis records c as a plan's basis.
func newBasis(c *Cluster) *Basis {
	def := basisDefaultDC(c)
	dcOf := func(dc string) string {
		if dc == "" {
			return def
		}
		return dc
	}
	b := &Basis{}
	at := map[string]int{}
	get := func(name string) *BasisDatacenter {
		i, ok := at[name]
		if !ok {
			i = len(b.Datacenters)
			at[name] = i
			b.Datacenters = append(b.Datacenters, BasisDatacenter{Name: name})
		}
		return &b.Datacenters[i]
	}
	for _, s := range c.Servers {
		d := get(dcOf(s.Datacenter))
		d.Servers = append(d.Servers, s)
		if s.Leader && d.Leader == "" && !c.LeaderUnknown {
			d.Leader = s.Name
		}
	}
	for _, m := range c.Missing {
		d := get(dcOf(m.Datacenter))
		d.Missing = append(d.Missing, m)
	}
	for _, g := range groupClients(c.Clients, func(rawDC string) int {
		get(dcOf(rawDC))
		return at[dcOf(rawDC)]
	}) {
		d := &b.Datacenters[g.dc]
		if d.Clients == nil {
			d.Clients = map[string][]string{}
		}
		if have, ok := d.Clients[g.ver]; ok {
			// "" and the default datacenter's name are one datacenter.
			d.Clients[g.ver] = append(have, g.names...)
		} else {
			d.Clients[g.ver] = g.names
		}
	}
	for i := range b.Datacenters {
		d := &b.Datacenters[i]
		healthy := 0
		for _, s := range d.Servers {
			if s.Voter {
				d.Voters++
				if s.Healthy {
					healthy++
				}
			}
		}
		d.FailureTolerance = FailureTolerance(d.Voters, healthy)
		sort.SliceStable(d.Servers, func(a, b int) bool { return d.Servers[a].Name < d.Servers[b].Name })
		sort.SliceStable(d.Missing, func(a, b int) bool { return d.Missing[a].Name < d.Missing[b].Name })
		for _, names := range d.Clients {
			if !slices.IsSorted(names) {
				slices.Sort(names)
			}
		}
	}
	sort.SliceStable(b.Datacenters, func(i, j int) bool { return b.Datacenters[i].Name < b.Datacenters[j].Name })
	if c.UnfinishedSwap != nil {
		u := *c.UnfinishedSwap
		b.UnfinishedSwap = &u
	}
	return b
}

// clientNames are the names of the clients of one datacenter (an index)
// on one version.
type clientNames struct {
	dc    int
	ver   string
	names []string
}

// groupClients groups the clients by datacenter and version, dcIndex
// giving the index of a client's datacenter. It counts the groups in a
// first pass and fills each name list, allocated at its size, in a second:
// a basis of 100,000 clients holds 100,000 names and not the garbage of
// lists grown one name at a time; a client's group is found by a short
// scan of the few groups a cluster has (a map only past scanGroups).
func groupClients(clients []Client, dcIndex func(rawDC string) int) []clientNames {
	type group struct {
		rawDC string
		n     int
		clientNames
	}
	const scanGroups = 16
	var groups []group
	var index map[[2]string]int
	last := -1
	find := func(cl *Client) int {
		if last >= 0 && groups[last].rawDC == cl.Datacenter && groups[last].ver == cl.Version {
			return last
		}
		if index != nil {
			if g, ok := index[[2]string{cl.Datacenter, cl.Version}]; ok {
				last = g
				return g
			}
			return -1
		}
		for g := range groups {
			if groups[g].rawDC == cl.Datacenter && groups[g].ver == cl.Version {
				last = g
				return g
			}
		}
		return -1
	}
	for i := range clients {
		cl := &clients[i]
		g := find(cl)
		if g < 0 {
			g = len(groups)
			groups = append(groups, group{rawDC: cl.Datacenter, clientNames: clientNames{dc: dcIndex(cl.Datacenter), ver: cl.Version}})
			if index != nil {
				index[[2]string{cl.Datacenter, cl.Version}] = g
			} else if len(groups) > scanGroups {
				index = make(map[[2]string]int, 2*len(groups))
				for k := range groups {
					index[[2]string{groups[k].rawDC, groups[k].ver}] = k
				}
			}
			last = g
		}
		groups[g].n++
	}
	for g := range groups {
		groups[g].names = make([]string, 0, groups[g].n)
	}
	for i := range clients {
		g := find(&clients[i])
		groups[g].names = append(groups[g].names, clients[i].Name)
	}
	out := make([]clientNames, len(groups))
	for g := range groups {
		out[g] = groups[g].clientNames
	}
	return out
}

// lines describe the basis for a person, a line per datacenter, one per
// missing server and one for an unfinished swap.
func (b *Basis) lines() []string {
	var out []string
	if u := b.UnfinishedSwap; u != nil {
		who := ""
		if u.Holder != "" {
			who = fmt.Sprintf(" by %q", u.Holder)
		}
		out = append(out, fmt.Sprintf("unfinished swap: %s, started%s; a run finishes it before anything else", u, who))
	}
	for _, d := range b.Datacenters {
		leader := d.Leader
		if leader == "" {
			leader = "unknown"
		}
		out = append(out, fmt.Sprintf("%s: %d server(s) (%d voter(s), leader %s, failure tolerance %d), %d client(s)",
			dcName(d.Name), len(d.Servers), d.Voters, leader, d.FailureTolerance, d.ClientCount()))
		for _, m := range d.Missing {
			out = append(out, fmt.Sprintf("%s: missing %s", dcName(d.Name), m))
		}
	}
	return out
}

// basisDefaultDC is the datacenter of agents that name none: the cluster's
// only one, else "dc1" (Consul's default).
func basisDefaultDC(c *Cluster) string {
	if d := defaultDatacenter(c); d != "" {
		return d
	}
	return "dc1"
}

// BasisDiff is one way the observed cluster differs from a plan's basis
// moved along by the plan's done steps.
type BasisDiff struct {
	Datacenter string `json:"datacenter,omitempty"`
	// Item is what differs: "server" (one is gone, missing or new),
	// "version", "voter", "health" (of Node), "leader", "voters",
	// "failure-tolerance" (of Datacenter), "client" (one is gone or new),
	// "client-version", "clients" (a summary when many clients differ),
	// or "unfinished-swap".
	Item string `json:"item"`
	Node string `json:"node,omitempty"`
	// Recorded is what the basis says, moved along by the done steps.
	Recorded string `json:"recorded"`
	// Observed is what the cluster shows now.
	Observed string `json:"observed"`
}

// String is "server s3: recorded a healthy voter on 1.12.9, observed
// missing: s3 (1.12.9, left in serf, not in the Raft configuration)".
func (d BasisDiff) String() string {
	var subject string
	switch d.Item {
	case "server", "client":
		subject = d.Item + " " + d.Node
	case "version", "voter", "health", "client-version":
		subject = strings.TrimPrefix(d.Item, "client-") + " of " + d.Node
	case "unfinished-swap":
		subject = "unfinished swap"
	default:
		subject = strings.ReplaceAll(d.Item, "-", " ") + " of " + dcName(d.Datacenter)
	}
	return fmt.Sprintf("%s: recorded %s, observed %s", subject, d.Recorded, d.Observed)
}

// StalePlanError refuses a saved plan whose basis no longer holds: the
// cluster changed since the plan was reviewed, in ways that the plan's
// done steps do not explain (a server died or is missing, a server or
// client appeared or went, a version moved out of band, the leader moved
// without a swap or transfer of the plan, the failure tolerance dropped),
// or the plan records no basis at all. Nothing of the step it was checked
// before should be touched: plan again and review.
type StalePlanError struct {
	// NoBasis: the plan records no basis (saved before plans recorded one),
	// so it cannot be checked; Diffs is empty.
	NoBasis bool
	// Done is how many of the plan's steps the cluster shows done (whose
	// changes were allowed); Total is len(Steps).
	Done, Total int
	// Diffs lists every difference, datacenter by datacenter.
	Diffs []BasisDiff
}

// diffsShown is how many differences StalePlanError.Error lists.
const diffsShown = 10

func (e *StalePlanError) Error() string {
	if e.NoBasis {
		return "the saved plan records no basis (the cluster it was reviewed on): it was saved before plans recorded one, so it cannot be checked against the cluster as it is now; plan again and review the new plan"
	}
	parts := make([]string, 0, min(len(e.Diffs), diffsShown)+1)
	for i, d := range e.Diffs {
		if i == diffsShown {
			parts = append(parts, fmt.Sprintf("and %d more", len(e.Diffs)-diffsShown))
			break
		}
		parts = append(parts, d.String())
	}
	return fmt.Sprintf("the saved plan is stale: the cluster is not the one it was reviewed on, %s: %s; plan again and review the new plan",
		e.Beyond(), strings.Join(parts, "; "))
}

// Beyond says which changes were allowed: "and none of the plan's 5
// step(s) is done yet", or "beyond what the 2 of the plan's 5 step(s) done
// so far changed".
func (e *StalePlanError) Beyond() string {
	if e.Done == 0 {
		return fmt.Sprintf("and none of the plan's %d step(s) is done yet", e.Total)
	}
	return fmt.Sprintf("beyond what the %d of the plan's %d step(s) done so far changed", e.Done, e.Total)
}

// CheckBasis checks that c is still the cluster the plan was reviewed on
// (p.Basis), allowing exactly the changes of the plan's steps that c shows
// done, in order: the longest run of steps from the first that are done in
// c (StepDoneIn; snapshot steps change nothing the basis records and are
// passed over) moves the basis along: a swapped server or client runs the
// step's To, a retired server is gone (serf may still list it as left), an
// added server is a new voter on To, a leadership transfer moves the
// leader to its target, and a server swap or retirement in a datacenter
// lets its leader change (a restarted server can start an election). The
// clients of the first step not done may run its To already (a wave halted
// midway). Anything else that differs is reported: a recorded server that
// is gone or missing, a server or client that is new or gone, a version
// moved out of band, a leader changed without such a step, an unfinished
// swap that appeared; and what got worse: a voter demoted, a server no
// longer healthy, fewer voters, a lower failure tolerance (a server that
// recovered, or a failure tolerance that rose, makes no step less safe and
// is not reported).
//
// It returns nil when the basis holds, and a *StalePlanError otherwise
// (NoBasis when p has no basis). It is pure: a runner calls it with the
// cluster observed before each step.
func (p *UpgradePlan) CheckBasis(c Cluster) error {
	if p.Basis == nil {
		return &StalePlanError{NoBasis: true, Total: len(p.Steps)}
	}
	exp := expectBasis(p.Basis)
	done := exp.advance(p.Steps, c)
	exp.underway(p.Steps, c.UnfinishedSwap)
	if diffs := exp.compare(newBasis(&c)); len(diffs) > 0 {
		return &StalePlanError{Done: done, Total: len(p.Steps), Diffs: diffs}
	}
	return nil
}

// expected is a basis moved along by the done steps of a plan.
type expected struct {
	def     string
	dcs     map[string]*expDC
	servers map[string]*expServer
	clients map[string]*expClient
	swap    *UnfinishedSwap
}

type expDC struct {
	name       string
	leader     string
	leaderOpen bool     // a done step may have moved the leader
	added      []string // the versions of the servers that done add-server steps added
	missing    map[string]bool
	servers    []string // names, as recorded
	clients    []string
}

type expServer struct {
	Server
	dc      string
	retired bool
	// swapping: the plan's swap of this server is under way (the cluster
	// carries it as its unfinished swap): the server may be down, and on
	// its version or the swap's To (alt).
	swapping bool
	alt      string
}

type expClient struct {
	dc, version, alt string // alt: the To of a wave under way
}

func expectBasis(b *Basis) *expected {
	e := &expected{dcs: map[string]*expDC{}, servers: map[string]*expServer{}, clients: map[string]*expClient{}, swap: b.UnfinishedSwap}
	for _, d := range b.Datacenters {
		x := &expDC{name: d.Name, leader: d.Leader, missing: map[string]bool{}}
		e.dcs[d.Name] = x
		for _, s := range d.Servers {
			e.servers[s.Name] = &expServer{Server: s, dc: d.Name}
			x.servers = append(x.servers, s.Name)
		}
		for _, m := range d.Missing {
			x.missing[m.Name] = true
		}
		for v, names := range d.Clients {
			for _, n := range names {
				e.clients[n] = &expClient{dc: d.Name, version: v}
				x.clients = append(x.clients, n)
			}
		}
		slices.Sort(x.clients)
	}
	e.def = "dc1"
	if len(b.Datacenters) == 1 {
		e.def = b.Datacenters[0].Name
	}
	return e
}

// dc returns the expected datacenter of name ("" is the default one),
// creating it when the basis had none of that name.
func (e *expected) dc(name string) *expDC {
	if name == "" {
		name = e.def
	}
	x := e.dcs[name]
	if x == nil {
		x = &expDC{name: name, missing: map[string]bool{}}
		e.dcs[name] = x
	}
	return x
}

// advance applies the changes of the steps that c shows done, from the
// first on, and returns how many steps that is.
func (e *expected) advance(steps []Step, c Cluster) int {
	for i, s := range steps {
		if s.Kind == StepSnapshot {
			continue
		}
		if !StepDoneIn(c, steps, i) {
			if s.Kind == StepSwapClients {
				for _, n := range s.Nodes {
					if cl := e.clients[n]; cl != nil {
						cl.alt = s.To
					}
				}
			}
			done := 0
			for j := range i {
				if StepDoneIn(c, steps, j) {
					done++
				}
			}
			return done
		}
		switch s.Kind {
		case StepSwapServer:
			if sv := e.servers[s.Node]; sv != nil {
				sv.Version = s.To
				e.dc(sv.dc).leaderOpen = true
			}
		case StepRetireServer:
			if sv := e.servers[s.Node]; sv != nil {
				sv.retired = true
				if d := e.dc(sv.dc); d.leader == s.Node {
					d.leaderOpen = true
				}
			}
		case StepAddServer:
			d := e.dc(s.Datacenter)
			d.added = append(d.added, s.To)
		case StepTransferLeader:
			sv := e.servers[s.Target]
			if sv == nil { // a server the plan's simulation added: its real name is not known
				e.dc(s.Datacenter).leaderOpen = true
				break
			}
			d := e.dc(sv.dc)
			d.leader, d.leaderOpen = s.Target, false
		case StepSwapClients:
			for _, n := range s.Nodes {
				if cl := e.clients[n]; cl != nil {
					cl.version = s.To
				}
			}
		}
	}
	return len(steps)
}

// underway marks the server of the unfinished swap u as under way when u
// is one of the plan's own server swaps (a run applying the plan died or
// halted during it; the next run finishes it first): that swap explains
// itself, and the recorded unfinished swap is then no difference either.
func (e *expected) underway(steps []Step, u *UnfinishedSwap) {
	if u == nil {
		return
	}
	for _, s := range steps {
		if s.Kind == StepSwapServer && s.Node == u.Node && SameVersion(s.To, u.To) {
			if sv := e.servers[u.Node]; sv != nil {
				sv.swapping, sv.alt = true, u.To
				e.swap = u
			}
			return
		}
	}
}

// compare lists how obs differs from e, datacenter by datacenter.
func (e *expected) compare(obs *Basis) []BasisDiff {
	var out []BasisDiff
	obsDC := map[string]*BasisDatacenter{}
	obsServer := map[string]*Server{}
	obsMissing := map[string]*MissingServer{}
	obsClient := map[string]string{} // name -> version
	for i := range obs.Datacenters {
		d := &obs.Datacenters[i]
		obsDC[d.Name] = d
		for j := range d.Servers {
			obsServer[d.Servers[j].Name] = &d.Servers[j]
		}
		for j := range d.Missing {
			obsMissing[d.Missing[j].Name] = &d.Missing[j]
		}
		for v, names := range d.Clients {
			for _, n := range names {
				obsClient[n] = v
			}
		}
	}
	names := make([]string, 0, len(e.dcs)+len(obsDC))
	for n := range e.dcs {
		names = append(names, n)
	}
	for n := range obsDC {
		if e.dcs[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		x := e.dc(name)
		o := obsDC[name]
		if o == nil {
			o = &BasisDatacenter{Name: name}
		}
		out = append(out, e.compareServers(x, o, obsServer, obsMissing)...)
		out = append(out, e.compareClients(x, o, obsClient)...)
	}
	if s := obs.UnfinishedSwap; s != nil && (e.swap == nil || e.swap.Node != s.Node || !SameVersion(e.swap.To, s.To)) {
		rec := "none"
		if e.swap != nil {
			rec = e.swap.String()
		}
		out = append(out, BasisDiff{Item: "unfinished-swap", Node: s.Node, Datacenter: s.Datacenter, Recorded: rec,
			Observed: s.String() + " (a run that died left it; the next run finishes it first)"})
	}
	return out
}

func (e *expected) compareServers(x *expDC, o *BasisDatacenter, obsServer map[string]*Server, obsMissing map[string]*MissingServer) []BasisDiff {
	var out []BasisDiff
	add := func(item, node, rec, got string) {
		out = append(out, BasisDiff{Datacenter: x.name, Item: item, Node: node, Recorded: rec, Observed: got})
	}
	expVoters, expHealthy := 0, 0
	var expVoterNames []string
	for _, name := range x.servers {
		sv := e.servers[name]
		got := obsServer[name]
		if sv.retired {
			if got != nil {
				add("server", name, "retired by the plan", describeServer(*got))
			}
			continue
		}
		if sv.Voter {
			expVoters++
			expVoterNames = append(expVoterNames, name)
			if sv.Healthy && !sv.swapping {
				expHealthy++
			}
		}
		switch {
		case got == nil && obsMissing[name] != nil:
			add("server", name, describeServer(sv.Server), "missing: "+obsMissing[name].String())
			continue
		case got == nil:
			add("server", name, describeServer(sv.Server), "gone: not a member of the cluster")
			continue
		}
		if !SameVersion(got.Version, sv.Version) && (sv.alt == "" || !SameVersion(got.Version, sv.alt)) {
			add("version", name, sv.Version, got.Version)
		}
		if sv.swapping {
			continue // down or coming back: the swap under way explains it
		}
		if sv.Voter && !got.Voter {
			add("voter", name, "a voter", "not a voter")
		}
		if sv.Healthy && !got.Healthy {
			add("health", name, "healthy", "not healthy")
		}
	}
	for _, v := range x.added {
		expVoters++
		expHealthy++
		expVoterNames = append(expVoterNames, "a new server on "+v)
	}
	added := slices.Clone(x.added)
	for _, got := range o.Servers {
		if e.servers[got.Name] != nil {
			continue
		}
		if k := slices.IndexFunc(added, func(v string) bool { return atLeastVersion(got.Version, v) }); k >= 0 {
			added = slices.Delete(added, k, k+1)
			continue
		}
		rec := "not in the cluster"
		if x.missing[got.Name] {
			rec = "missing (not in the Raft configuration)"
		}
		add("server", got.Name, rec, describeServer(got))
	}
	for _, m := range o.Missing {
		if e.servers[m.Name] != nil || x.missing[m.Name] {
			continue // reported above, or recorded missing already
		}
		add("server", m.Name, "not in the cluster", "missing: "+m.String())
	}
	if !x.leaderOpen && x.leader != "" {
		got := ""
		for _, s := range o.Servers {
			if s.Leader {
				got = s.Name
				break
			}
		}
		if got != x.leader {
			add("leader", "", x.leader, orNoneText(got, "none (an election under way, or no quorum)")+" (no step of the plan done so far moves the leader)")
		}
	}
	obsHealthy := 0
	var obsVoterNames []string
	for _, s := range o.Servers {
		if s.Voter {
			obsVoterNames = append(obsVoterNames, s.Name)
			if s.Healthy {
				obsHealthy++
			}
		}
	}
	if len(obsVoterNames) < expVoters {
		add("voters", "", fmt.Sprintf("%d (%s)", expVoters, strings.Join(expVoterNames, ", ")), fmt.Sprintf("%d (%s)", len(obsVoterNames), orNoneText(strings.Join(obsVoterNames, ", "), "none")))
	}
	if want, got := FailureTolerance(expVoters, expHealthy), FailureTolerance(len(obsVoterNames), obsHealthy); got < want {
		add("failure-tolerance", "", fmt.Sprintf("%d", want), fmt.Sprintf("%d", got))
	}
	return out
}

// clientDiffsShown is how many client differences of a datacenter are
// listed one by one; a summary counts the rest.
const clientDiffsShown = 10

func (e *expected) compareClients(x *expDC, o *BasisDatacenter, obsClient map[string]string) []BasisDiff {
	var out []BasisDiff
	gone, changed := 0, 0
	add := func(item, node, rec, got string) {
		if len(out) < clientDiffsShown {
			out = append(out, BasisDiff{Datacenter: x.name, Item: item, Node: node, Recorded: rec, Observed: got})
		}
	}
	for _, name := range x.clients {
		cl := e.clients[name]
		got, ok := obsClient[name]
		switch {
		case !ok:
			gone++
			add("client", name, "a member on "+cl.version, "gone: not a member of the cluster")
		case !SameVersion(got, cl.version) && (cl.alt == "" || !SameVersion(got, cl.alt)):
			changed++
			add("client-version", name, cl.version, got)
		}
	}
	var fresh []string
	for v, names := range o.Clients {
		for _, n := range names {
			if e.clients[n] == nil {
				fresh = append(fresh, n+"\x00"+v)
			}
		}
	}
	slices.Sort(fresh)
	for _, f := range fresh {
		n, v, _ := strings.Cut(f, "\x00")
		add("client", n, "not in the cluster", "a member on "+v)
	}
	if n := gone + changed + len(fresh); n > clientDiffsShown {
		out = append(out, BasisDiff{Datacenter: x.name, Item: "clients",
			Recorded: fmt.Sprintf("%d client(s)", len(x.clients)),
			Observed: fmt.Sprintf("%d client(s), %d difference(s) (%d gone, %d new, %d on another version; the first %d listed)", o.ClientCount(), n, gone, len(fresh), changed, clientDiffsShown)})
	}
	return out
}

// describeServer is "a healthy voter on 1.12.9", "the leader, ...".
func describeServer(s Server) string {
	var parts []string
	if !s.Healthy {
		parts = append(parts, "not healthy")
	}
	if s.Leader {
		parts = append(parts, "the leader")
	}
	role := "a voter"
	if !s.Voter {
		role = "a non-voter"
	}
	if s.Healthy {
		role = strings.Replace(role, "a ", "a healthy ", 1)
	}
	out := role + " on " + s.Version
	if len(parts) > 0 {
		out += " (" + strings.Join(parts, ", ") + ")"
	}
	return out
}

func orNoneText(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// StepDoneIn reports whether steps[i] is done in c, judged from what the step
// changes: a swapped server runs To (or later), a wave's clients that are
// in c all do, a transfer's old leader no longer leads (or runs To), a
// retired server is gone, an added server is counted among the servers of
// its datacenter on To (the k-th add-server step of a datacenter and
// version needs k of them), a backup was taken on From (c.SnapshotVersion)
// or the servers have all left From. Runners use it to place an observed
// cluster on an approved plan.
func StepDoneIn(c Cluster, steps []Step, i int) bool {
	s := steps[i]
	switch s.Kind {
	case StepSnapshot:
		if c.SnapshotVersion != "" && SameVersion(c.SnapshotVersion, s.From) {
			return true
		}
		for _, sv := range c.Servers {
			if !atLeastVersion(sv.Version, s.To) && !afterVersion(sv.Version, s.From) {
				return false
			}
		}
		return len(c.Servers) > 0
	case StepSwapServer:
		for _, sv := range c.Servers {
			if sv.Name == s.Node {
				return atLeastVersion(sv.Version, s.To)
			}
		}
		return false
	case StepSwapClients:
		ver := make(map[string]string, len(s.Nodes))
		for _, n := range s.Nodes {
			ver[n] = ""
		}
		for _, cl := range c.Clients {
			if _, ok := ver[cl.Name]; ok && !atLeastVersion(cl.Version, s.To) {
				return false
			}
		}
		return true
	case StepTransferLeader:
		for _, sv := range c.Servers {
			if sv.Name == s.Node {
				return !sv.Leader || atLeastVersion(sv.Version, s.To)
			}
		}
		return true
	case StepRetireServer:
		return !slices.ContainsFunc(c.Servers, func(sv Server) bool { return sv.Name == s.Node })
	case StepAddServer:
		k := 0
		for _, o := range steps[:i+1] {
			if o.Kind == StepAddServer && o.Datacenter == s.Datacenter && SameVersion(o.To, s.To) {
				k++
			}
		}
		n := 0
		for _, sv := range c.Servers {
			if sameDatacenter(sv.Datacenter, s.Datacenter) && atLeastVersion(sv.Version, s.To) {
				n++
			}
		}
		return n >= k
	}
	return false
}

// atLeastVersion reports whether version v is at least want, by their
// cores (false when either does not parse).
func atLeastVersion(v, want string) bool {
	a, err := ParseVersion(v)
	if err != nil {
		return false
	}
	b, err := ParseVersion(want)
	if err != nil {
		return false
	}
	return !coreOf(a).LessThan(coreOf(b))
}

// afterVersion reports whether version v is later than from.
func afterVersion(v, from string) bool {
	return atLeastVersion(v, from) && !SameVersion(v, from)
}

// sameDatacenter compares datacenter names, "" being the default dc1.
func sameDatacenter(a, b string) bool {
	if a == "" {
		a = "dc1"
	}
	if b == "" {
		b = "dc1"
	}
	return a == b
}
