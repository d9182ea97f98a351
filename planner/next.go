package planner

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	version "github.com/hashicorp/go-version"
)

// ErrNotSupported is wrapped by the error Next and Plan return for a policy
// they cannot carry out on the observed cluster: the replace (blue/green)
// strategy on servers older than 0.8.0. Test for it with errors.Is.
var ErrNotSupported = errors.New("not supported")

// PolicyError reports a policy field whose value Next cannot act on.
type PolicyError struct {
	Field string // the JSON name of the field, e.g. "clients.batch_percent"
	Value string // the offending value
	Want  string // what the field accepts
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("policy %s: %q is not allowed (want %s); fix the policy", e.Field, e.Value, e.Want)
}

// TombstoneWindowSeconds is how long servers on 0.5 and on older versions may
// run side by side before the old ones panic on the tombstone reap command:
// the default TombstoneTTL of 15 minutes. It is the Deadline of the server
// swaps of a hop crossing 0.5.0 when the policy does not order followers
// first.
const TombstoneWindowSeconds = 900

// One-way changes: once a server has started on a version at or above At,
// its data directory is in a format the old binary does not read (or should
// not be trusted to), so a binary downgrade of that server is unsafe and only
// a snapshot restore goes back. Server swaps that cross At carry the rule ID
// in Step.NoReturn. Client agents keep no such state, so client waves are
// never marked.
//
//   - 0.5.1: the Raft log store is migrated from LMDB to BoltDB on first start.
//   - 1.4.0: the new ACL system; once the primary leaves legacy mode, tokens
//     and policies are written in a form older servers do not know.
//   - 1.11.0: the Raft log library moves from boltdb to bbolt; bbolt reads the
//     old files, the reverse is not guaranteed.
var oneWayChanges = []struct {
	at   *version.Version
	rule RuleID
}{
	{version.Must(version.NewVersion("0.5.1")), RuleRaftBoltDB},
	{version.Must(version.NewVersion("1.4.0")), ruleNoReturnACL14},
	{version.Must(version.NewVersion("1.11.0")), ruleNoReturnBBolt},
}

const (
	ruleNoReturnACL14 RuleID = "new-acls-1.4"
	ruleNoReturnBBolt RuleID = "bbolt-1.11"
)

var (
	v050  = version.Must(version.NewVersion("0.5.0"))
	v071  = version.Must(version.NewVersion("0.7.1"))
	v1_15 = version.Must(version.NewVersion("1.15.0"))
)

var (
	serverGate = []GateCheck{GateLeaderKnown, GateVersion, GateVoter, GateAutopilotHealthy, GateStable, GateTrailingLogs, GateFailureTolerance}
	// Before 0.8 there is no autopilot, and before 0.7 no Raft
	// configuration endpoint: the gate runs the checks of Consul's own
	// upgrade guide on what those versions answer (the peer set from
	// /v1/status/peers or the Raft configuration, each server's raft stats
	// from its /v1/agent/self), with stability counted from the gate's own
	// observations. 0.4 to 0.7 share the list; the upgrade package's Gate
	// picks the API era's means of checking each condition.
	serverGateNoAutopilot = []GateCheck{GateLeaderKnown, GateVersion, GateSerfAlive, GateVoter, GateCommitIndex, GateLastContact, GateStable, GateFailureTolerance}
	clientGate            = []GateCheck{GateVersion, GateSerfAlive}
	// After a leadership transfer: the target leads, and the new leader's
	// autopilot sees it healthy with the failure tolerance back (a new
	// leader rebuilds its view of server health, and until it has, every
	// server reads as unhealthy).
	leaderGate = []GateCheck{GateLeaderKnown, GateAutopilotHealthy, GateFailureTolerance}
)

// serverGateFor returns the conditions that prove a server swapped to the
// version to is back: the autopilot-based gate from 0.8 on, the upgrade
// guide's checks before that.
func serverGateFor(to *version.Version) []GateCheck {
	if to.LessThan(v080) {
		return slices.Clone(serverGateNoAutopilot)
	}
	return slices.Clone(serverGate)
}

// backupFor is how a snapshot step saves the state of servers whose lowest
// version is low: the snapshot API from 0.7.1, a logical backup before.
func backupFor(low *version.Version) (BackupKind, string) {
	if low.LessThan(v071) {
		return BackupLogical, fmt.Sprintf("a logical backup (KV tree and ACL tokens through the HTTP API; it cannot restore sessions, catalog registrations, prepared queries or raft state), since %s has no snapshot API (0.7.1)", low)
	}
	return BackupSnapshot, "a snapshot through /v1/snapshot"
}

// Next returns the next step to take, decided from the observed cluster c:
// the runner calls Discover, Next, acts on the step and waits for its gate,
// again and again, until Next returns a StepDone step. Because the decision
// is taken from what the cluster runs now, a crashed run simply starts again
// and continues where reality is; nothing is done twice.
//
// Next first runs Check and returns its *RefusedError when a blocking
// finding is not waived. Then it computes the cluster's path to target
// over the versions in use (servers, and clients unless they are left
// behind): from the lowest, each hop ending on the nearest first stepping
// stone of every version it moves (PathFor's, with the cluster's features),
// so that no agent skips a stone of its own path; on a cluster of one
// version it is PathFor from that version. Next works on the first hop some
// agent has not reached:
//
//  1. a snapshot, before the first server swap of the hop (when
//     c.SnapshotVersion is not the servers' lowest version and the policy
//     does not skip snapshots);
//  2. datacenter by datacenter (primary first, others by name; on the
//     dedicated 1.2.4 and 1.6.10 hops of clusters with ACL replication,
//     secondaries first and the primary last): the datacenter's servers one
//     at a time (followers first, leader last, or as listed), with a
//     leadership transfer before the leader when both versions are >= 1.15
//     (unless the policy turns it off); then the datacenter's clients in waves (a
//     canary, then batches), unless they are left behind;
//  3. StepDone once every agent runs target.
//
// Step.Hop counts from the path computed from the observed cluster, so after
// a hop is complete the numbering restarts at 0; Plan numbers hops in its
// own (whole) path instead.
//
// With the replace strategy the servers of a datacenter are not swapped but
// replaced: a new server on the hop's version is added,
// then an old one retired, until none is left below it. Replace needs every
// server on 0.8.0 or later (autopilot); below that Next returns an error
// wrapping ErrNotSupported. A policy field with an unknown value gives a
// *PolicyError, a waiver of an unknown rule ID a *WaiverError. A version
// that does not parse (an agent's or the target) is the blocking finding
// bad-version, so Next returns the *RefusedError; only with bad-version
// waived does the parser's *VersionError come back instead.
func Next(c Cluster, target string, pol Policy) (Step, error) {
	if err := CheckWaivers(pol); err != nil {
		return Step{}, err
	}
	if err := refusal(Check(c, target, pol), target); err != nil {
		return Step{}, err
	}
	return next(&c, target, pol)
}

// next is Next without the check.
func next(c *Cluster, target string, pol Policy) (Step, error) {
	st, err := newState(c, target, pol)
	if err != nil {
		return Step{}, err
	}
	if err := st.refreshPath(); err != nil {
		return Step{}, err
	}
	return st.decide()
}

// versions interns the version strings of a run: each distinct string is
// parsed once and compared by rank (equal versions share a rank).
type versions struct {
	ids   map[string]int
	strs  []string
	vers  []*version.Version
	rank  []int
	dirty bool
}

func newVersions() *versions { return &versions{ids: make(map[string]int)} }

// id returns the interned id of s, parsing it on first sight. node names the
// agent for the error ("" for the target or a hop).
func (vs *versions) id(s, node string) (int, error) {
	if id, ok := vs.ids[s]; ok {
		return id, nil
	}
	v, err := ParseVersion(s)
	if err != nil {
		var ve *VersionError
		if errors.As(err, &ve) && node != "" {
			cp := *ve
			cp.Node = node
			return 0, &cp
		}
		return 0, err
	}
	id := len(vs.strs)
	vs.ids[s] = id
	vs.strs = append(vs.strs, s)
	vs.vers = append(vs.vers, v)
	vs.rank = append(vs.rank, 0)
	vs.dirty = true
	return id, nil
}

// r returns the rank of id; ranks are recomputed after new versions arrive.
func (vs *versions) r(id int) int {
	if vs.dirty {
		order := make([]int, len(vs.strs))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return vs.vers[a].Compare(vs.vers[b]) })
		rank := 0
		for i, id := range order {
			if i > 0 && !vs.vers[order[i-1]].Equal(vs.vers[id]) {
				rank++
			}
			vs.rank[id] = rank
		}
		vs.dirty = false
	}
	return vs.rank[id]
}

// dcState is one datacenter as the planner walks it.
type dcState struct {
	name    string
	primary bool
	byName  []int // server indexes, sorted by name
	listed  []int // server indexes, in the order of Cluster.Servers
	clients []int32
	waves   [][]int32 // the wave partition of clients, computed on first use
	sized   bool
	count   []int // clients per version id
	// cur is the first wave that may still hold a client below the version
	// id curTo; only Plan's simulation moves it past wave 0.
	cur, curTo int
	// added counts the servers Plan's simulation added (replace strategy),
	// to name them.
	added int
}

// state is the observed (or, in Plan, simulated) cluster in the form the
// decision reads: interned versions, datacenters and the path.
type state struct {
	c      *Cluster
	pol    Policy
	target string
	vs     *versions
	tgt    int

	srvV     []int   // version id per server
	cliV     []int32 // version id per client
	cliCount []int   // clients per version id
	leader   []bool  // per server
	gone     []bool  // per server: retired in Plan's simulation (nil until one is)
	snap     string

	dcs   []*dcState // primary first, then by name
	srvDC []int

	// path and the hop ranks, for the path computed from pathFrom.
	path     []Hop
	pathFrom int   // version id the path starts from (-1: none yet)
	pathIDs  []int // the version ids in use the path was computed from
	mark     []bool
	idBuf    []int
	hopTo    []int
}

// leaders returns the leader of each datacenter, in datacenter order: the
// servers a snapshot step is served by.
func (st *state) leaders() []string {
	var out []string
	for _, d := range st.dcs {
		for _, i := range d.byName {
			if st.leader[i] {
				out = append(out, st.c.Servers[i].Name)
				break
			}
		}
	}
	return out
}

func newState(c *Cluster, target string, pol Policy) (*state, error) {
	if err := validatePolicy(&pol); err != nil {
		return nil, err
	}
	if len(c.Servers) == 0 {
		return nil, errors.New("cluster: no servers (at least 1 is needed to plan an upgrade); discover the cluster again")
	}
	pol = withObservedEnterprise(c, target, pol)
	st := &state{c: c, pol: pol, target: target, vs: newVersions(), pathFrom: -1, snap: c.SnapshotVersion}
	var err error
	if st.tgt, err = st.vs.id(target, ""); err != nil {
		return nil, err
	}

	// Datacenters in their base order (primary first, then by name).
	names := datacenterNames(c)
	dcIndex := make(map[string]int, len(names))
	for i, name := range names {
		dcIndex[name] = i
		st.dcs = append(st.dcs, &dcState{name: name, primary: i == 0})
	}
	agentDC := agentDatacenter(c)
	dcOf := func(name string) int { return dcIndex[agentDC(name)] }

	st.srvV = make([]int, len(c.Servers))
	st.leader = make([]bool, len(c.Servers))
	st.srvDC = make([]int, len(c.Servers))
	for i := range c.Servers {
		s := &c.Servers[i]
		if st.srvV[i], err = st.vs.id(s.Version, s.Name); err != nil {
			return nil, err
		}
		if pol.Strategy == Replace && st.vs.vers[st.srvV[i]].LessThan(v080) {
			return nil, fmt.Errorf("strategy %q: %w for server %s on %s (replace needs 0.8.0 or later: a new server is gated as a stable voter through autopilot, and a retired one through the raft configuration); use strategy %q up to 0.8, then replace", Replace, ErrNotSupported, s.Name, s.Version, InPlace)
		}
		st.leader[i] = s.Leader
		d := dcOf(s.Datacenter)
		st.srvDC[i] = d
		st.dcs[d].listed = append(st.dcs[d].listed, i)
	}
	st.cliV = make([]int32, len(c.Clients))
	// Clients name few datacenters, in runs or interleaved: a short list
	// of the names seen spares a map lookup per client.
	type rawDC struct {
		name string
		idx  int
	}
	var recent []rawDC
	lastDC, lastIdx := "\x00", 0
	lastVer, lastID := "", -1
	for i := range c.Clients {
		cl := &c.Clients[i]
		id := lastID
		if lastID < 0 || cl.Version != lastVer {
			if id, err = st.vs.id(cl.Version, cl.Name); err != nil {
				return nil, err
			}
			lastVer, lastID = cl.Version, id
		}
		st.cliV[i] = int32(id)
		addCount(&st.cliCount, id, 1)
		if cl.Datacenter != lastDC {
			lastDC, lastIdx = cl.Datacenter, -1
			for _, r := range recent {
				if r.name == lastDC {
					lastIdx = r.idx
					break
				}
			}
			if lastIdx < 0 {
				lastIdx = dcOf(lastDC)
				if len(recent) < 16 {
					recent = append(recent, rawDC{lastDC, lastIdx})
				}
			}
		}
		d := st.dcs[lastIdx]
		d.clients = append(d.clients, int32(i))
		addCount(&d.count, id, 1)
	}

	for _, d := range st.dcs {
		d.byName = slices.Clone(d.listed)
		slices.SortStableFunc(d.byName, func(a, b int) int { return strings.Compare(c.Servers[a].Name, c.Servers[b].Name) })
		if !slices.IsSortedFunc(d.clients, func(a, b int32) int { return strings.Compare(c.Clients[a].Name, c.Clients[b].Name) }) {
			slices.SortStableFunc(d.clients, func(a, b int32) int { return strings.Compare(c.Clients[a].Name, c.Clients[b].Name) })
		}
	}
	return st, nil
}

// addCount adds delta to (*counts)[id], growing the slice as needed.
func addCount(counts *[]int, id, delta int) {
	if id >= len(*counts) {
		*counts = append(*counts, make([]int, id+1-len(*counts))...)
	}
	(*counts)[id] += delta
}

func validatePolicy(p *Policy) error {
	switch p.Strategy {
	case "", InPlace, Replace:
	default:
		return &PolicyError{Field: "strategy", Value: string(p.Strategy), Want: `"in-place" or "replace"`}
	}
	switch p.ServerOrder {
	case "", FollowersFirst, AsListed:
	default:
		return &PolicyError{Field: "server_order", Value: string(p.ServerOrder), Want: `"followers-first" or "as-listed"`}
	}
	switch p.StopMode {
	case StopDefault, StopKill, StopTerminate, StopLeave:
	default:
		return &PolicyError{Field: "stop_mode", Value: string(p.StopMode), Want: `"", "kill", "terminate" or "leave"`}
	}
	switch p.Clients.Mode {
	case "", ClientWaves, ClientLeaveBehind:
	default:
		return &PolicyError{Field: "clients.mode", Value: string(p.Clients.Mode), Want: `"waves" or "leave-behind"`}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"clients.canary", p.Clients.Canary}, {"clients.batch_size", p.Clients.BatchSize}, {"clients.batch_percent", p.Clients.BatchPercent}, {"clients.max_unavailable", p.Clients.MaxUnavailable}} {
		if f.v < 0 {
			return &PolicyError{Field: f.name, Value: fmt.Sprint(f.v), Want: "a number >= 0"}
		}
	}
	if p.ReplaceServers < 0 {
		return &PolicyError{Field: "replace_servers", Value: fmt.Sprint(p.ReplaceServers), Want: "a number >= 0 (0 derives it from the observed servers)"}
	}
	if p.Clients.BatchPercent > 100 {
		return &PolicyError{Field: "clients.batch_percent", Value: fmt.Sprint(p.Clients.BatchPercent), Want: "a percentage from 0 to 100"}
	}
	return nil
}

func (st *state) clientsUpgraded() bool { return st.pol.Clients.Mode != ClientLeaveBehind }

// lowest returns the version id of the lowest version in use (servers, and
// clients unless left behind) and of the servers alone. Of equal versions
// spelt differently (1.7.2 and 1.7.2+ent) it picks the spelling that sorts
// first, so the choice depends only on the versions in use, not on the
// order they were first seen: Plan, which has seen every version of its
// simulation, and Next on the same state then name the same hop.
func (st *state) lowest() (all, servers int) {
	below := func(a, b int) bool {
		ra, rb := st.vs.r(a), st.vs.r(b)
		return ra < rb || (ra == rb && st.vs.strs[a] < st.vs.strs[b])
	}
	servers = -1
	for i, id := range st.srvV {
		if (st.gone == nil || !st.gone[i]) && (servers < 0 || below(id, servers)) {
			servers = id
		}
	}
	all = servers
	if st.clientsUpgraded() {
		for id, n := range st.cliCount {
			if n > 0 && below(id, all) {
				all = id
			}
		}
	}
	return all, servers
}

// inUseIDs returns the ids of the versions in use, ascending: the
// servers' (not retired), and the clients' unless they are left behind. It
// reuses st's buffers; the result is valid until the next call.
func (st *state) inUseIDs() []int {
	n := len(st.vs.strs)
	if cap(st.mark) < n {
		st.mark = make([]bool, n)
	}
	mark := st.mark[:n]
	clear(mark)
	for i, id := range st.srvV {
		if st.gone == nil || !st.gone[i] {
			mark[id] = true
		}
	}
	if st.clientsUpgraded() {
		for id, c := range st.cliCount {
			if c > 0 {
				mark[id] = true
			}
		}
	}
	ids := st.idBuf[:0]
	for id, in := range mark {
		if in {
			ids = append(ids, id)
		}
	}
	st.idBuf = ids
	return ids
}

// refreshPath recomputes the path when the versions in use changed: the
// cluster's path (clusterPath) over them. Plan's simulation keeps the path
// while its steps only move agents within a hop that changes no version's
// first stepping stone; Next computes it afresh from the observed cluster,
// and the two agree because both take it from the versions in use.
func (st *state) refreshPath() error {
	from, _ := st.lowest()
	ids := st.inUseIDs()
	if st.path != nil && from == st.pathFrom && slices.Equal(ids, st.pathIDs) {
		return nil
	}
	st.pathIDs = append(st.pathIDs[:0], ids...)
	if st.vs.r(from) >= st.vs.r(st.tgt) {
		st.path, st.hopTo, st.pathFrom = []Hop{}, nil, from
		return nil
	}
	vers := make([]*version.Version, len(ids))
	for i, id := range ids {
		vers[i] = st.vs.vers[id]
	}
	p, err := clusterPath(vers, st.vs.vers[st.tgt], st.pol, factsOf(st.c.Features))
	if err == nil {
		err = CheckRelease(st.target, st.pol)
	}
	if err != nil {
		return err
	}
	hopTo := make([]int, len(p))
	for i, h := range p {
		if hopTo[i], err = st.vs.id(h.To, ""); err != nil {
			return fmt.Errorf("path hop %d (%s -> %s): %w", i, h.From, h.To, err)
		}
	}
	st.path, st.hopTo, st.pathFrom = p, hopTo, from
	return nil
}

// decide is the decision itself, on the current state and path.
func (st *state) decide() (Step, error) {
	lowAll, lowSrv := st.lowest()
	h := -1
	for i, to := range st.hopTo {
		if st.vs.r(to) > st.vs.r(lowAll) {
			h = i
			break
		}
	}
	if h < 0 {
		return st.done(), nil
	}
	hop := st.path[h]
	toID := st.hopTo[h]
	toR := st.vs.r(toID)

	if st.pol.Strategy == Replace {
		if err := st.replaceCountKnown(toID); err != nil {
			return Step{}, err
		}
	}
	if !st.pol.NoSnapshot && st.vs.r(lowSrv) < toR && !st.snapshotCovers(lowSrv) {
		last := "no snapshot has been taken in this run"
		if st.snap != "" {
			last = "the last one was taken on " + st.snap
		}
		kind, how := backupFor(st.vs.vers[lowSrv])
		return Step{
			Kind:   StepSnapshot,
			Nodes:  st.leaders(),
			From:   st.vs.strs[lowSrv],
			To:     hop.To,
			Hop:    h,
			Backup: kind,
			Reason: fmt.Sprintf("save and verify a backup in every datacenter before the first server swap of hop %s -> %s: %s; the servers run %s and %s",
				hop.From, hop.To, how, st.vs.strs[lowSrv], last),
		}, nil
	}

	for _, d := range st.dcOrder(hop) {
		if step, ok := st.serverStep(d, h, toID); ok {
			return step, nil
		}
		if st.clientsUpgraded() {
			if step, ok := st.clientStep(d, h, toID); ok {
				return step, nil
			}
		}
	}
	// Unreachable while every agent belongs to a datacenter of st.dcs.
	return Step{}, fmt.Errorf("hop %s -> %s: an agent is below %s but no datacenter has work; this is a planner bug", hop.From, hop.To, hop.To)
}

func (st *state) snapshotCovers(lowSrv int) bool {
	if st.snap == "" {
		return false
	}
	id, err := st.vs.id(st.snap, "")
	if err != nil {
		return false
	}
	return st.vs.r(id) == st.vs.r(lowSrv)
}

// dcOrder is the order datacenters take on hop: DatacenterOrder's.
func (st *state) dcOrder(hop Hop) []*dcState {
	idx := hopOrder(len(st.dcs), hop, st.c.Features)
	out := make([]*dcState, len(idx))
	for k, i := range idx {
		out[k] = st.dcs[i]
	}
	return out
}

func (st *state) dcReason(d *dcState, hop Hop) string {
	return datacenterOrderReason(d.name, d.primary, len(st.dcs), hop, st.c.Features)
}

// serverStep returns the next server step of datacenter d on hop h, if any.
func (st *state) serverStep(d *dcState, h, toID int) (Step, bool) {
	if st.pol.Strategy == Replace {
		return st.replaceStep(d, h, toID)
	}
	hop := st.path[h]
	toR := st.vs.r(toID)
	below := func(i int) bool { return st.vs.r(st.srvV[i]) < toR }

	leader := -1
	for _, i := range d.listed {
		if st.leader[i] {
			leader = i
			break
		}
	}
	pick, nBelow := -1, 0
	var reason string
	if st.pol.ServerOrder == AsListed {
		for _, i := range d.listed {
			if below(i) {
				nBelow++
				if pick < 0 {
					pick = i
				}
			}
		}
		if pick < 0 {
			return Step{}, false
		}
		reason = fmt.Sprintf("next server of %s below %s in the listed order (server order %s)", d.name, hop.To, AsListed)
		if pick == leader {
			reason = fmt.Sprintf("leader of %s, next below %s in the listed order (server order %s)", d.name, hop.To, AsListed)
		}
	} else {
		for _, i := range d.byName {
			if below(i) {
				nBelow++
				if pick < 0 && i != leader {
					pick = i
				}
			}
		}
		if nBelow == 0 {
			return Step{}, false
		}
		switch {
		case pick >= 0 && leader < 0:
			reason = fmt.Sprintf("no leader of %s is known; servers go one at a time by name (%s)", d.name, RuleOneServerAtATime)
		case pick >= 0 && below(leader):
			reason = fmt.Sprintf("follower; the leader %s goes last (%s)", st.c.Servers[leader].Name, RuleFollowersFirst)
		case pick >= 0:
			reason = fmt.Sprintf("follower; the leader %s already runs %s (%s)", st.c.Servers[leader].Name, st.vs.strs[st.srvV[leader]], RuleFollowersFirst)
		default:
			pick = leader
			reason = fmt.Sprintf("leader, swapped last: every other server of %s runs %s or later (%s)", d.name, hop.To, RuleFollowersFirst)
			if t := st.transferTarget(d, leader, toID); t >= 0 {
				return st.transferStep(d, h, leader, t, fmt.Sprintf("the leader %s is the last server of %s below %s: move leadership to the upgraded voter %s first, so %s is swapped as a follower without an election timeout (%s)",
					st.c.Servers[leader].Name, d.name, hop.To, st.c.Servers[t].Name, st.c.Servers[leader].Name, RuleTransferLeader)), true
			}
		}
	}
	s := &st.c.Servers[pick]
	from := st.vs.strs[st.srvV[pick]]
	step := Step{
		Kind:       StepSwapServer,
		Node:       s.Name,
		Datacenter: d.name,
		From:       from,
		To:         hop.To,
		Hop:        h,
		StopMode:   st.stopMode("server", from, hop.To),
		Gate:       serverGateFor(st.vs.vers[toID]),
		Reason:     reason + st.dcReason(d, hop),
		NoReturn:   noReturn(st.vs.vers[st.srvV[pick]], st.vs.vers[toID]),
	}
	// The 0.5 tombstone window: as listed, any server may lead on 0.5
	// while old ones remain; followers first keeps the old leader until
	// last, unless a 0.5 server already leads (observed: a run stopped
	// midway, a failover), and then the window runs whatever the order.
	newLeader := leader >= 0 && !st.vs.vers[st.srvV[leader]].LessThan(v050)
	if (st.pol.ServerOrder == AsListed || newLeader) && st.vs.vers[toID].GreaterThanOrEqual(v050) {
		for _, i := range d.listed {
			if st.vs.vers[st.srvV[i]].LessThan(v050) {
				why := fmt.Sprintf("servers of %s on 0.5 and older ones may only run side by side for 15 minutes (tombstone reaping); finish every server swap of the hop within it, or order followers first", d.name)
				if newLeader {
					why = fmt.Sprintf("the leader %s of %s already runs %s while older servers remain: it reaps tombstones once their 15-minute TTL expires and the old servers panic on that; finish every remaining server swap of the hop within the window, which may have started before this run",
						st.c.Servers[leader].Name, d.name, st.vs.strs[st.srvV[leader]])
				}
				step.Deadline = &Deadline{
					Rule:    RuleTombstoneWindow,
					Seconds: TombstoneWindowSeconds,
					First:   -1,
					Last:    -1,
					Reason:  why,
				}
				break
			}
		}
	}
	return step, true
}

// transferTarget returns the server that should receive leadership before
// leader is swapped, or -1 when no transfer applies: the policy must not
// turn it off, both versions must support it (>= 1.15), and an upgraded
// voter must exist (healthy ones first, then by name).
func (st *state) transferTarget(d *dcState, leader, toID int) int {
	if st.pol.NoTransferLeadership || st.vs.vers[st.srvV[leader]].LessThan(v1_15) || st.vs.vers[toID].LessThan(v1_15) {
		return -1
	}
	toR := st.vs.r(toID)
	best := -1
	for _, i := range d.byName {
		s := &st.c.Servers[i]
		if i == leader || !s.Voter || st.vs.r(st.srvV[i]) < toR {
			continue
		}
		if s.Healthy {
			return i
		}
		if best < 0 {
			best = i
		}
	}
	return best
}

func noReturn(from, to *version.Version) RuleID {
	for _, w := range oneWayChanges {
		if from.LessThan(w.at) && to.GreaterThanOrEqual(w.at) {
			return w.rule
		}
	}
	return ""
}

func (st *state) stopMode(role, from, to string) StopMode {
	if st.pol.StopMode != StopDefault {
		return st.pol.StopMode
	}
	return DefaultStopMode(role, from, to)
}

// waveSizes returns the canary and batch sizes for a datacenter of n clients.
func (p *ClientPolicy) waveSizes(n int) (canary, batch int) {
	canary = p.Canary
	if canary <= 0 {
		canary = 1
	}
	switch {
	case p.BatchSize > 0:
		batch = p.BatchSize
	case p.BatchPercent > 0:
		batch = (n*p.BatchPercent + 99) / 100
	default:
		batch = (n*10 + 99) / 100
	}
	if batch < 1 {
		batch = 1
	}
	return canary, batch
}

// partition splits the datacenter's clients (sorted by name) into waves: a
// canary, then batches, never more than MaxUnavailable clients of one zone
// in a wave. It depends only on names and zones, not on versions, so the
// wave a client belongs to is the same on every call and a resumed run
// finds its place by looking at which clients are already upgraded.
func (st *state) partition(d *dcState) {
	if d.sized {
		return
	}
	d.sized = true
	canary, batch := st.pol.Clients.waveSizes(len(d.clients))
	capOf := func(w int) int {
		if w == 0 {
			return canary
		}
		return batch
	}
	mu := st.pol.Clients.MaxUnavailable
	if mu <= 0 {
		for off := 0; off < len(d.clients); {
			n := min(capOf(len(d.waves)), len(d.clients)-off)
			d.waves = append(d.waves, d.clients[off:off+n:off+n])
			off += n
		}
		return
	}
	zoneID := make(map[string]int32)
	var zoneStart []int   // per zone: first wave that may still have room
	var zoneCount [][]int // per wave: count per zone
	var total []int
	firstOpen := 0
	for _, ci := range d.clients {
		zn := st.c.Clients[ci].Zone
		z, ok := zoneID[zn]
		if !ok {
			z = int32(len(zoneStart))
			zoneID[zn] = z
			zoneStart = append(zoneStart, 0)
		}
		w := max(zoneStart[z], firstOpen)
		for ; w < len(d.waves); w++ {
			if total[w] < capOf(w) && (int(z) >= len(zoneCount[w]) || zoneCount[w][z] < mu) {
				break
			}
		}
		if w == len(d.waves) {
			d.waves = append(d.waves, make([]int32, 0, min(capOf(w), len(d.clients))))
			total = append(total, 0)
			zoneCount = append(zoneCount, nil)
		}
		d.waves[w] = append(d.waves[w], ci)
		total[w]++
		if int(z) >= len(zoneCount[w]) {
			zoneCount[w] = append(zoneCount[w], make([]int, int(z)+1-len(zoneCount[w]))...)
		}
		zoneCount[w][z]++
		if zoneCount[w][z] >= mu {
			zoneStart[z] = w + 1
		} else {
			zoneStart[z] = w
		}
		for firstOpen < len(d.waves) && total[firstOpen] >= capOf(firstOpen) {
			firstOpen++
		}
	}
}

// clientStep returns the next wave of datacenter d on hop h, if any client of
// d is below the hop's version. Servers of d are all at or above it here.
func (st *state) clientStep(d *dcState, h, toID int) (Step, bool) {
	if len(d.clients) == 0 {
		return Step{}, false
	}
	hop := st.path[h]
	toR := st.vs.r(toID)
	below, done := 0, 0
	for id, n := range d.count {
		if st.vs.rank[id] < toR {
			below += n
		} else {
			done += n
		}
	}
	if below == 0 {
		return Step{}, false
	}
	st.partition(d)
	if d.curTo != toID {
		d.cur, d.curTo = 0, toID
	}
	for w := d.cur; w < len(d.waves); w++ {
		wave := d.waves[w]
		var nodes []string // allocated on the first client below the hop
		low := -1
		mixed := false
		for _, ci := range wave {
			id := int(st.cliV[ci])
			if st.vs.rank[id] >= toR {
				continue
			}
			if nodes == nil {
				nodes = make([]string, 0, len(wave))
			}
			nodes = append(nodes, st.c.Clients[ci].Name)
			if low < 0 {
				low = id
			} else if id != low {
				mixed = true
				if st.vs.rank[id] < st.vs.rank[low] {
					low = id
				}
			}
		}
		if len(nodes) == 0 {
			continue
		}
		d.cur = w
		from := st.vs.strs[low]
		stepFrom := from
		if mixed {
			stepFrom = ""
		}
		what := fmt.Sprintf("wave %d of %d", w, len(d.waves)-1)
		if w == 0 {
			what = "canary wave"
		}
		return Step{
			Kind:       StepSwapClients,
			Nodes:      nodes,
			Datacenter: d.name,
			From:       stepFrom,
			To:         hop.To,
			Hop:        h,
			Wave:       w,
			StopMode:   st.stopMode("client", from, hop.To),
			Gate:       slices.Clone(clientGate),
			Reason: fmt.Sprintf("%s of %s: %d client(s), %d of %d already on %s or later; every server of %s runs %s or later (%s)",
				what, d.name, len(nodes), done, len(d.clients), hop.To, d.name, hop.To, RuleServersFirst),
		}, true
	}
	return Step{}, false
}

func (st *state) done() Step {
	var b strings.Builder
	fmt.Fprintf(&b, "every server runs %s", st.target)
	if st.clientsUpgraded() {
		if len(st.cliV) > 0 {
			fmt.Fprintf(&b, " and so does every client")
		}
	} else {
		tr := st.vs.r(st.tgt)
		n := 0
		for id, k := range st.cliCount {
			if st.vs.rank[id] < tr {
				n += k
			}
		}
		if n > 0 {
			fmt.Fprintf(&b, "; %d client(s) are left behind below %s on purpose (clients %s): upgrade them later", n, st.target, ClientLeaveBehind)
		}
	}
	return Step{Kind: StepDone, To: st.target, Reason: b.String()}
}

// transferStep moves leadership in datacenter d from the server leader to
// the server t before the old leader is swapped or retired (hop h).
func (st *state) transferStep(d *dcState, h, leader, t int, reason string) Step {
	return Step{
		Kind:       StepTransferLeader,
		Node:       st.c.Servers[leader].Name,
		Target:     st.c.Servers[t].Name,
		Datacenter: d.name,
		From:       st.vs.strs[st.srvV[leader]],
		To:         st.path[h].To,
		Hop:        h,
		Gate:       slices.Clone(leaderGate),
		Reason:     reason,
	}
}
