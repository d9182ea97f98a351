package consultest

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// Defaults of a new Cluster.
const (
	// DefaultRestartDelay is how long a swapped agent is down before it is
	// back (alive in serf, healthy in autopilot).
	DefaultRestartDelay = 2 * time.Second
	// DefaultStabilizationTime is the ServerStabilizationTime the
	// simulated autopilot configuration reports.
	DefaultStabilizationTime = 3 * time.Second
	// DefaultLastIndex is the Raft last index every server starts with.
	DefaultLastIndex = 100
	// Datacenter is the name of the simulated datacenter, and its primary,
	// unless WithDatacenter names others.
	Datacenter = "dc1"
)

// ACLMode is the value of the "acls" serf tag the servers carry, which is how
// Consul advertises its ACL system.
type ACLMode string

// The ACL modes of the "acls" serf tag.
const (
	ACLsDisabled ACLMode = "0" // ACLs are off
	ACLsEnabled  ACLMode = "1" // the current ACL system (tokens and policies)
	ACLsLegacy   ACLMode = "2" // the legacy ACL system (before 1.4)
)

// node is one agent of the simulated cluster.
type node struct {
	name, addr, version string
	role                transport.Role
	voter               bool
	// down: the agent is not running (failed in serf, unhealthy).
	down bool
	// upAt is when a restarted agent is back; before it, the agent is down.
	upAt time.Time
	// neverHealthy (set by the test) keeps autopilot reporting the server
	// unhealthy.
	neverHealthy bool
	// sick: the agent came back from its last restart unhealthy (a fake
	// transport said so); the next restart clears it.
	sick      bool
	lastIndex uint64
}

// up reports whether the node's agent is running and back at time now.
func (n *node) up(now time.Time) bool { return !n.down && !now.Before(n.upAt) }

func (n *node) server() bool { return n.role == transport.RoleServer }

func (n *node) raftID() string { return "id-" + n.name }

// Option configures a Cluster built by NewCluster.
type Option func(*Cluster)

// WithRestartDelay sets how long a swapped agent is down (failed in serf,
// unhealthy in autopilot) before it is back. Zero brings it back at once; a
// negative delay counts as zero.
func WithRestartDelay(d time.Duration) Option {
	return func(c *Cluster) { c.restartDelay = max(d, 0) }
}

// WithStabilizationTime sets the autopilot ServerStabilizationTime the
// cluster reports in /v1/operator/autopilot/configuration. A negative time
// counts as zero.
func WithStabilizationTime(d time.Duration) Option {
	return func(c *Cluster) { c.stabilization = max(d, 0) }
}

// WithStableSince sets when the servers became healthy, as autopilot reports
// it in StableSince (default: when NewCluster was called). Pass a time in the
// past for a cluster that has long been stable.
func WithStableSince(t time.Time) Option {
	return func(c *Cluster) { c.stableSince = t }
}

// WithSnapshot sets the archive /v1/snapshot answers with (default: a valid
// archive built by Snapshot). A nil archive makes /v1/snapshot fail with 500;
// a corrupt one lets a test check that it is refused.
func WithSnapshot(archive []byte) Option {
	return func(c *Cluster) { c.snapshot = archive }
}

// WithACLs sets the "acls" serf tag of the servers (default ACLsDisabled).
func WithACLs(m ACLMode) Option {
	return func(c *Cluster) { c.acls = m }
}

// WithDatacenter names the simulated datacenter and its primary (default:
// both Datacenter). Its agents carry the dc tag name, /v1/agent/self reports
// both names, and /v1/catalog/datacenters lists both (see also
// WithPeerDatacenters). Two clusters, one WithDatacenter("dc1", "dc1") and one
// WithDatacenter("dc2", "dc1") with WithNodePrefix("dc2-"), simulate a
// federation of two datacenters, each observed through its own client. An
// empty name keeps Datacenter; an empty primary makes the datacenter its own
// primary.
func WithDatacenter(name, primary string) Option {
	return func(c *Cluster) {
		if name == "" {
			name = Datacenter
		}
		if primary == "" {
			primary = name
		}
		c.dc, c.primary = name, primary
	}
}

// WithPeerDatacenters adds datacenters that /v1/catalog/datacenters lists,
// as a WAN-federated agent lists the other datacenters it knows.
func WithPeerDatacenters(names ...string) Option {
	return func(c *Cluster) { c.peers = append(c.peers, names...) }
}

// WithNodePrefix puts prefix before every node name (prefix+"s1",
// prefix+"c1", ...), so that the nodes of several simulated datacenters
// have distinct names, as Consul requires across a federation.
func WithNodePrefix(prefix string) Option {
	return func(c *Cluster) { c.prefix = prefix }
}

// Cluster is an in-process simulated Consul datacenter: an http.Handler that
// answers the HTTP API calls an upgrade makes from a small model of the
// agents, the Raft leader, autopilot and the session/KV store. It reads the
// clock with time.Now, so inside a testing/synctest bubble its restarts and
// stabilization times run on virtual time.
//
// A Cluster is safe for concurrent use. The zero value is not usable; call
// NewCluster.
type Cluster struct {
	mu            sync.Mutex
	nodes         []*node
	byName        map[string]*node // the nodes by name: find is O(1) in a fleet of 10,000
	leader        string           // node name, "" during an election
	pinned        bool             // SetLeader("") holds the election open
	restartDelay  time.Duration
	stabilization time.Duration
	stableSince   time.Time
	snapshot      []byte
	acls          ACLMode
	features      Features // WithFeatures (features.go)
	dc, primary   string   // the datacenter and its primary
	peers         []string // other datacenters the catalog lists
	prefix        string   // before every node name
	down          bool     // every endpoint answers 500
	unreachable   bool     // the client's transport refuses connections
	calls         map[string]int
	transfers     []string
	transferMiss  []transferMiss // SetTransferMisses, SetTransferLostElection: what the next transfers do
	reelect       string         // the old leader a lost transfer election gives the seat back to
	reelectAt     time.Time      // when it does
	sessions      map[string]*session
	sessionSeq    int
	kv            map[string]*kvEntry
	kvIndex       uint64
	added         int      // servers AddServer added
	removed       []string // servers RemoveServer took out
	left          []*node  // servers RemoveDeadServer took out: left in serf
	era           Era      // the API generation the agents answer with
	txnCrashed    []string // servers a transaction crashed (session.go)

	apConf   *api.AutopilotConfiguration  // autopilot.go; nil: the defaults
	apWrites []api.AutopilotConfiguration // autopilot.go
	term     uint64                       // elections since the first (term.go: Term, AddElections)

	logAge, lastRestore time.Duration // the leader's raft gauges (metrics.go)
}

// defaultSnapshot is the archive of a new cluster, built once: gzip is the
// dearest part of NewCluster, and a test that plays thousands of clusters
// (the property test of package upgrade) builds one per cluster otherwise.
// The archive is only ever read.
var defaultSnapshot = sync.OnceValue(func() []byte {
	return Snapshot(DefaultLastIndex, 1, []byte("simulated consul state"))
})

// NewCluster returns a healthy cluster of servers s1..sN (s1 leads, every
// server a voter) and clients c1..cM, all on version. A negative count means
// none. Options change the defaults: restart delay DefaultRestartDelay,
// stabilization time DefaultStabilizationTime, stable since now, ACLs off,
// a valid snapshot archive, datacenter Datacenter (its own primary) and no
// node name prefix.
func NewCluster(servers, clients int, version string, opts ...Option) *Cluster {
	c := &Cluster{
		restartDelay:  DefaultRestartDelay,
		stabilization: DefaultStabilizationTime,
		stableSince:   time.Now(),
		snapshot:      defaultSnapshot(),
		acls:          ACLsDisabled,
		dc:            Datacenter,
		primary:       Datacenter,
		calls:         map[string]int{},
		sessions:      map[string]*session{},
		kv:            map[string]*kvEntry{},
	}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	for i := 1; i <= servers; i++ {
		c.nodes = append(c.nodes, &node{name: fmt.Sprintf("%ss%d", c.prefix, i), addr: address(0, i), version: version,
			role: transport.RoleServer, voter: true, lastIndex: DefaultLastIndex})
	}
	for i := 1; i <= clients; i++ {
		c.nodes = append(c.nodes, &node{name: fmt.Sprintf("%sc%d", c.prefix, i), addr: address(1, i), version: version,
			role: transport.RoleClient})
	}
	c.byName = make(map[string]*node, len(c.nodes))
	for _, n := range c.nodes {
		c.byName[n.name] = n
	}
	if servers > 0 {
		c.leader = c.prefix + "s1"
	}
	return c
}

// address returns a distinct private IPv4 address for the i-th (from 1)
// node of a group (0 servers, 1 clients): 10.0.0.i for servers, 10.0.1.i
// for clients, spilling into the second octet past 250.
func address(group, i int) string {
	return fmt.Sprintf("10.%d.%d.%d", (i-1)/250, group, (i-1)%250+1)
}

// find returns the named node or nil. Callers hold c.mu.
func (c *Cluster) find(name string) *node {
	return c.byName[name]
}

// lookup is find with an error naming the nodes there are. Callers hold c.mu.
func (c *Cluster) lookup(name string) (*node, error) {
	if n := c.find(name); n != nil {
		return n, nil
	}
	names := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		names[i] = n.name
	}
	return nil, fmt.Errorf("consultest: node %q is not in the simulated cluster (it has %s); use one of those names", name, strings.Join(names, ", "))
}

// healthy is autopilot's view of a server at now. Callers hold c.mu.
func (c *Cluster) healthy(n *node, now time.Time) bool {
	return n.up(now) && !n.neverHealthy && !n.sick && c.leader != ""
}

// elect fills an empty leader seat with the first server other than except
// that is a healthy voter, unless SetLeader("") holds the election open.
// When a transfer's election was lost (SetTransferLostElection), the old
// leader gets the seat back once the election is over. Callers hold c.mu.
func (c *Cluster) elect(now time.Time, except string) {
	if c.reelect != "" && c.leader == "" && !now.Before(c.reelectAt) {
		c.leader, c.pinned, c.reelect = c.reelect, false, ""
		c.term++ // a new election, won by the old leader
	}
	if c.leader != "" || c.pinned {
		return
	}
	for _, n := range c.nodes {
		if n.name != except && n.server() && n.voter && n.up(now) && !n.neverHealthy && !n.sick {
			c.leader = n.name
			c.term++ // each election is a new raft term (term.go)
			return
		}
	}
}

// Swap tells the cluster that node's agent was restarted on version (ok) or
// failed to come up on it (!ok). A restarted agent is down for the restart
// delay and then back, healthy (unless SetNeverHealthy). An agent that did
// not come up stays down, still reporting its old version, until the next
// Swap. Swapping the leader hands leadership at once to the first other
// server that is a healthy voter; with none, the cluster has no leader until
// one is back. Sessions bound to node with the serfHealth check are
// invalidated, as Consul does when an agent fails.
//
// Swap is the hook a transport fake calls; see OnSwap and NewFake for
// transporttest.Fake. It fails only for a node that is not in the cluster.
func (c *Cluster) Swap(node, version string, ok bool) error {
	return c.restart(node, version, ok, true)
}

// restart moves node to version: up (healthy or sick) or down.
func (c *Cluster) restart(name, version string, up, healthy bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(name)
	if err != nil {
		return err
	}
	now := time.Now()
	n.down = !up
	n.sick = up && !healthy
	if up {
		n.version = version
		n.upAt = now.Add(c.restartDelay)
	}
	c.agentFailed(n.name)
	if c.reelect == n.name {
		c.reelect = "" // a stopped server does not win the election it was to win
	}
	if c.leader == n.name {
		// The leader stopped: another server wins the election at once, or,
		// with none, the seat stays empty until a server is back.
		c.leader, c.pinned = "", false
		c.elect(now, n.name)
	}
	return nil
}

// SetLeader makes node the Raft leader. An empty name starts an election that
// lasts until the next SetLeader: no leader, every server unhealthy in
// autopilot. It fails for a node that is not a server of the cluster.
func (c *Cluster) SetLeader(node string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reelect = ""
	if node == "" {
		c.leader, c.pinned = "", true
		return nil
	}
	n, err := c.lookup(node)
	if err != nil {
		return err
	}
	if !n.server() {
		return fmt.Errorf("consultest: node %s is a client, and only a server can lead; pick a server", node)
	}
	if c.leader != node {
		c.term++ // a new leader is a new election
	}
	c.leader, c.pinned = node, false
	return nil
}

// SetNeverHealthy makes autopilot report server node unhealthy (never) or
// healthy again (!never) once it is up. An unhealthy server does not win
// elections.
func (c *Cluster) SetNeverHealthy(node string, never bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(node)
	if err != nil {
		return err
	}
	n.neverHealthy = never
	return nil
}

// SetVoter makes server node a voter or a non-voter in the Raft
// configuration.
func (c *Cluster) SetVoter(node string, voter bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(node)
	if err != nil {
		return err
	}
	if !n.server() {
		return fmt.Errorf("consultest: node %s is a client, and only servers are in the raft configuration; pick a server", node)
	}
	n.voter = voter
	return nil
}

// SetLastIndex sets the Raft last log index autopilot reports for server
// node; a server trails the leader by the difference of the two.
func (c *Cluster) SetLastIndex(node string, index uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup(node)
	if err != nil {
		return err
	}
	if !n.server() {
		return fmt.Errorf("consultest: node %s is a client, and only servers have a raft log; pick a server", node)
	}
	n.lastIndex = index
	return nil
}

// SetDown makes every endpoint answer 500 ("no cluster leader") while down
// is true: the agent answers, but the cluster behind it does not.
func (c *Cluster) SetDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
}

// SetUnreachable makes the clients from Client and RoundTripper fail every
// request with a refused connection (wrapping syscall.ECONNREFUSED) while
// unreachable is true, as when the agent the client talks to is stopped.
// Such requests do not reach the handler and are not counted by Calls.
func (c *Cluster) SetUnreachable(unreachable bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unreachable = unreachable
}

// Node is the state of one simulated agent, as the cluster sees it now.
type Node struct {
	Name    string
	Address string // the LAN address (without a port)
	ID      string // the Raft server ID (servers)
	Role    transport.Role
	// Version is the version the agent runs, or ran before it went down.
	Version string
	// Up: the agent is running and back from its last restart.
	Up bool
	// Healthy: autopilot reports the server healthy (for a client: Up).
	Healthy bool
	// Voter: the server is a voter in the Raft configuration.
	Voter bool
	// Leader: the server is the Raft leader.
	Leader    bool
	LastIndex uint64
}

// Node returns the state of the named node.
func (c *Cluster) Node(name string) (Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.find(name)
	if n == nil {
		return Node{}, false
	}
	return c.view(n, time.Now()), true
}

// Nodes returns the state of every node: the servers in order, then the
// clients.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	out := make([]Node, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = c.view(n, now)
	}
	return out
}

// view describes n at now. Callers hold c.mu.
func (c *Cluster) view(n *node, now time.Time) Node {
	c.elect(now, "")
	v := Node{Name: n.name, Address: n.addr, Role: n.role, Version: n.version, Up: n.up(now)}
	v.Healthy = v.Up
	if n.server() {
		v.ID, v.Voter, v.Leader, v.LastIndex = n.raftID(), n.voter, c.leader == n.name, n.lastIndex
		v.Healthy = c.healthy(n, now)
	}
	return v
}

// Version returns the version node runs ("" for a node not in the cluster).
func (c *Cluster) Version(node string) string {
	n, _ := c.Node(node)
	return n.Version
}

// Leader returns the name of the Raft leader, or "" during an election.
func (c *Cluster) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.elect(time.Now(), "")
	return c.leader
}

// Calls returns how many requests reached the handler for the URL path (for
// instance "/v1/operator/autopilot/health"), including those it failed.
func (c *Cluster) Calls(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[path]
}

// Transfers returns the Raft IDs that /v1/operator/raft/transfer-leader was
// asked to hand leadership to, in order, whether or not the transfer
// succeeded.
func (c *Cluster) Transfers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.transfers...)
}
