package consulrig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/proc"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
)

// Defaults for Options.
const (
	DefaultVersion    = "1.12.9"
	DefaultDatacenter = "dc1"
	// ReadyTimeout bounds the wait for a leader and live members in Start.
	ReadyTimeout = 60 * time.Second
	// LockDir holds the block locks and pid files.
	LockDir = "/tmp/consulrig"
	// MaxBlocks is how many address blocks (127.0.1.x .. 127.0.200.x) exist.
	MaxBlocks = 200
	// MaxServers and MaxClients bound a cluster's size. The address plan
	// of block N: servers on 127.0.N.11-.19, the first 200 clients on
	// 127.0.N.21-.220, and the clients after them (for clusters of real
	// size) on 127.N.1.21-.220, 127.N.2.21-.220, ...: block N also owns
	// 127.N.0.0/16, which no other address of the rigs uses (see
	// ClientAddress).
	MaxServers = 9
	MaxClients = 2000
	// blockClients is how many clients fit in one /24 of the plan.
	blockClients = 200
)

// ClientAddress is the address of client i (1-based) of block n: 127.0.n.(20+i)
// for the first 200, then 127.n.k.21-.220 for k = 1, 2, ... Every agent's
// -bind and -client are its own address, with Consul's default ports.
func ClientAddress(n, i int) string {
	if i <= blockClients {
		return fmt.Sprintf("127.0.%d.%d", n, 20+i)
	}
	j := i - blockClients - 1
	return fmt.Sprintf("127.%d.%d.%d", n, 1+j/blockClients, 21+j%blockClients)
}

// addresses lists the addresses of block n for a cluster of the given
// size: servers first, then clients.
func addresses(n, servers, clients int) []string {
	var out []string
	for i := 1; i <= servers; i++ {
		out = append(out, fmt.Sprintf("127.0.%d.%d", n, 10+i))
	}
	for i := 1; i <= clients; i++ {
		out = append(out, ClientAddress(n, i))
	}
	return out
}

// Options describe a cluster to start. The zero value is 3 servers and 1
// client on DefaultVersion in DefaultDatacenter.
type Options struct {
	// Servers is the number of servers; 0 means 3.
	Servers int
	// Clients is the number of client agents; 0 means 1, a negative number
	// means none.
	Clients int
	// Version is the Consul version every agent starts on; "" means
	// DefaultVersion.
	Version string
	// Datacenter is the datacenter name; "" means DefaultDatacenter.
	Datacenter string
	// NodePrefix goes before every node name (NodePrefix+"s1", ...,
	// NodePrefix+"c1", ...), so that the clusters of a WAN federation
	// have distinct node names, as Consul requires. Federate two clusters
	// by starting the second with ExtraServerArgs holding
	// "-retry-join-wan=" and the first's server addresses.
	NodePrefix string
	// ExtraServerArgs and ExtraClientArgs are appended to every server's
	// and client's agent arguments.
	ExtraServerArgs []string
	ExtraClientArgs []string
	// RaftMultiplier sets the servers' performance.raft_multiplier; 0 keeps
	// Consul's default (5). Consul 0.6 has no such setting: Start refuses a
	// multiplier for it (see SupportsRaftMultiplier). 1 makes elections about five times faster
	// (a 1-server cluster elects in about 1.5 s instead of 7 s) but, on a
	// busy machine, a multi-server cluster may then hold extra elections.
	RaftMultiplier int
	// ServerArgsFor, when set, adds server arguments for the version a
	// server starts on, at every start and swap (after the era's own
	// flags): e.g. -raft-protocol=2 on 1.x while older servers remain.
	ServerArgsFor func(version string) []string
	// Resolver, when set, finds the binaries (to inject a broken one);
	// by default binaries come from BinDir and are built when missing.
	Resolver local.BinaryResolver
	// ReadyTimeout bounds the start of every agent and the wait for a
	// healthy cluster in Start; 0 means ReadyTimeout (enough for tens of
	// agents, not for hundreds on 2 cores).
	ReadyTimeout time.Duration
	// StartConcurrency bounds how many agents start at once (each until
	// its HTTP API answers with its version); 0 starts them all at once.
	// Hundreds of agents starting together on 2 cores miss the
	// transport's start timeout.
	StartConcurrency int
	// Context, when set, also bounds Start: cancelling it stops the agents
	// not yet started and the wait for a healthy cluster (Start is then
	// t.Fatal, and the cleanup stops what did start).
	Context context.Context
}

// Cluster is a running test cluster. Its agents are stopped and its
// directories removed when the test ends.
type Cluster struct {
	t       testing.TB
	block   int
	lock    *os.File
	dir     string
	version string
	opt     Options // as Start completed them
	tr      *local.Transport
	servers []string
	clients []string
	addr    map[string]string

	mu   sync.Mutex // guards pids and the pid file
	pids []int

	stopOnce sync.Once
	stopErr  error
}

// Start claims an address block, starts the cluster and waits (up to
// ReadyTimeout) until every agent agrees on a leader and the first server
// sees every agent alive in serf on its version. Any failure is t.Fatal,
// quoting the last answer and the tail of every agent's log.
func Start(t testing.TB, opt Options) *Cluster {
	t.Helper()
	if opt.Servers == 0 {
		opt.Servers = 3
	}
	switch {
	case opt.Clients == 0:
		opt.Clients = 1
	case opt.Clients < 0:
		opt.Clients = 0
	}
	if opt.Servers < 1 || opt.Servers > MaxServers {
		t.Fatalf("consulrig: %d servers asked for; the address plan allows 1..%d", opt.Servers, MaxServers)
	}
	if opt.Clients > MaxClients {
		t.Fatalf("consulrig: %d clients asked for; the address plan allows at most %d", opt.Clients, MaxClients)
	}
	if opt.RaftMultiplier < 0 || opt.RaftMultiplier > 10 {
		t.Fatalf("consulrig: raft multiplier %d is outside 0..10 (0 keeps Consul's default)", opt.RaftMultiplier)
	}
	if opt.Version == "" {
		opt.Version = DefaultVersion
	}
	if opt.Datacenter == "" {
		opt.Datacenter = DefaultDatacenter
	}
	resolver := opt.Resolver
	if resolver == nil {
		Binary(t, opt.Version)
		resolver = local.Dir(BinDir(t))
	}

	if opt.ReadyTimeout < 0 || opt.StartConcurrency < 0 {
		t.Fatalf("consulrig: ReadyTimeout %s and StartConcurrency %d must not be negative (0: the defaults)", opt.ReadyTimeout, opt.StartConcurrency)
	}
	c := &Cluster{t: t, version: opt.Version, addr: map[string]string{}, opt: opt}
	c.claimBlock(func(n int) []string { return addresses(n, opt.Servers, opt.Clients) })
	t.Cleanup(c.cleanup)

	dir, err := os.MkdirTemp("", fmt.Sprintf("consulrig-b%d-", c.block))
	if err != nil {
		t.Fatalf("consulrig: temp dir: %v", err)
	}
	c.dir = dir

	var serverIPs []string
	for i := 1; i <= opt.Servers; i++ {
		serverIPs = append(serverIPs, fmt.Sprintf("127.0.%d.%d", c.block, 10+i))
	}
	join := make([]string, 0, len(serverIPs))
	for _, ip := range serverIPs {
		join = append(join, "-retry-join="+ip)
	}
	// Refuse flags the first version cannot take before anything starts.
	if _, err := c.argsFor(true)(opt.Version); err != nil {
		t.Fatalf("consulrig: %v", err)
	}
	var agents []local.Agent
	add := func(name string, role transport.Role, ip string, args []string) {
		if err := writeNodeID(filepath.Join(dir, name, "data"), dir, name); err != nil {
			t.Fatalf("consulrig: node ID of %s: %v", name, err)
		}
		c.addr[name] = ip
		agents = append(agents, local.Agent{
			Name:    name,
			Role:    role,
			Version: opt.Version,
			Address: ip,
			DataDir: filepath.Join(dir, name, "data"),
			LogPath: filepath.Join(dir, name+".log"),
			Args:    args,
			ArgsFor: c.argsFor(role == transport.RoleServer),
		})
	}
	for i, ip := range serverIPs {
		name := opt.NodePrefix + "s" + strconv.Itoa(i+1)
		c.servers = append(c.servers, name)
		args := []string{"-bootstrap-expect=" + strconv.Itoa(opt.Servers), "-advertise=" + ip, "-log-level=debug", "-retry-interval=1s"}
		args = append(args, join...)
		add(name, transport.RoleServer, ip, append(args, opt.ExtraServerArgs...))
	}
	for i := 1; i <= opt.Clients; i++ {
		name := opt.NodePrefix + "c" + strconv.Itoa(i)
		ip := ClientAddress(c.block, i)
		c.clients = append(c.clients, name)
		args := []string{"-advertise=" + ip, "-log-level=debug", "-retry-interval=1s"}
		args = append(args, join...)
		add(name, transport.RoleClient, ip, append(args, opt.ExtraClientArgs...))
	}
	tr, err := local.New(resolver, agents...)
	if err != nil {
		t.Fatalf("consulrig: %v", err)
	}
	tr.OnStart(c.recordPID)
	c.tr = tr

	ready := opt.ReadyTimeout
	if ready == 0 {
		ready = ReadyTimeout
	}
	base := opt.Context
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithTimeout(base, ready)
	defer cancel()
	began := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(agents))
	slots := make(chan struct{}, max(opt.StartConcurrency, len(agents)))
	if opt.StartConcurrency > 0 {
		slots = make(chan struct{}, opt.StartConcurrency)
	}
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			case <-ctx.Done():
				errs[i] = fmt.Errorf("node %s not started: %w", a.Name, ctx.Err())
				return
			}
			errs[i] = tr.Start(ctx, a.Name)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("consulrig: starting block %d on consul %s: %v%s", c.block, opt.Version, err, c.logTails(15))
	}
	started := time.Now()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("consulrig: block %d on consul %s not ready within %s: %v%s", c.block, opt.Version, ready, err, c.logTails(15))
	}
	t.Logf("consulrig: block %d: %d servers, %d clients on consul %s in %s: agents answered after %s, healthy %s later (dir %s)",
		c.block, opt.Servers, opt.Clients, opt.Version, time.Since(began).Round(time.Millisecond),
		started.Sub(began).Round(time.Millisecond), time.Since(started).Round(time.Millisecond), dir)
	return c
}

// claimBlock takes the first free address block: its lock file can be
// locked and every address of it has the Consul ports free. Stale agents of
// a crashed earlier run are killed first.
func (c *Cluster) claimBlock(ips func(n int) []string) {
	t := c.t
	t.Helper()
	if err := os.MkdirAll(LockDir, 0o777); err != nil {
		t.Fatalf("consulrig: lock dir: %v", err)
	}
	var busy []string
	for n := 1; n <= MaxBlocks; n++ {
		f, err := os.OpenFile(filepath.Join(LockDir, fmt.Sprintf("block-%d.lock", n)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatalf("consulrig: lock file: %v", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue // another test process holds it
		}
		killStale(t, n)
		if addr, ok := portsFree(ips(n)); !ok {
			busy = append(busy, fmt.Sprintf("block %d (%s in use)", n, addr))
			f.Close() // releases the lock
			continue
		}
		c.block, c.lock = n, f
		if err := os.WriteFile(c.pidFile(), nil, 0o666); err != nil {
			t.Fatalf("consulrig: pid file: %v", err)
		}
		return
	}
	t.Fatalf("consulrig: no free address block among %d (locks in %s held by other test processes; busy: %s)", MaxBlocks, LockDir, strings.Join(busy, ", "))
}

// portsFree reports whether the Consul ports are free on every address.
func portsFree(ips []string) (string, bool) {
	for _, ip := range ips {
		for _, port := range []string{"8300", "8301", "8302", "8500"} {
			addr := net.JoinHostPort(ip, port)
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return addr, false
			}
			l.Close()
		}
	}
	return "", true
}

func pidFile(block int) string { return filepath.Join(LockDir, fmt.Sprintf("block-%d.pids", block)) }

func (c *Cluster) pidFile() string { return pidFile(c.block) }

// recordPID appends an agent's pid to the block's pid file.
func (c *Cluster) recordPID(node string, pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pids = append(c.pids, pid)
	f, err := os.OpenFile(c.pidFile(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
	if err != nil {
		c.t.Logf("consulrig: recording pid %d of %s: %v", pid, node, err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d %s\n", pid, node)
}

// killStale kills the agents a crashed earlier run of block n left behind:
// each recorded pid whose command line names consul and the block's
// addresses.
func killStale(t testing.TB, n int) {
	t.Helper()
	data, err := os.ReadFile(pidFile(n))
	if err != nil {
		return
	}
	marker := fmt.Sprintf("127.0.%d.", n)
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pid, err := strconv.Atoi(fields[0])
		if err != nil || pid <= 1 {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue // gone
		}
		cl := string(cmdline)
		if !strings.Contains(cl, "consul") || !strings.Contains(cl, marker) {
			continue // the pid was reused by something else
		}
		t.Logf("consulrig: killing stale agent pid %d of block %d: %s", pid, n, strings.ReplaceAll(cl, "\x00", " "))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Logf("consulrig: SIGKILL to stale pid %d: %v", pid, err)
			continue
		}
		proc.WaitGone(pid, 5*time.Second)
	}
}

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool { return proc.Alive(pid) }

// Stop kills every agent of the cluster (SIGKILL by pid) and waits until
// they are gone. The cluster's files stay until the test ends. Stop is safe
// to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		if c.tr != nil {
			c.stopErr = c.tr.Close()
		}
		c.mu.Lock()
		pids := slices.Clone(c.pids)
		c.mu.Unlock()
		for _, pid := range pids {
			if !proc.WaitGone(pid, 5*time.Second) {
				c.stopErr = errors.Join(c.stopErr, fmt.Errorf("agent pid %d still runs after SIGKILL", pid))
			}
		}
		if c.stopErr == nil && c.lock != nil {
			os.WriteFile(c.pidFile(), nil, 0o666)
		}
	})
	if c.stopErr != nil {
		c.t.Errorf("consulrig: stopping block %d: %v", c.block, c.stopErr)
	}
}

func (c *Cluster) cleanup() {
	c.Stop()
	if c.t.Failed() && c.tr != nil {
		c.t.Logf("consulrig: block %d logs (kept in the failure output only):%s", c.block, c.logTails(30))
	}
	if c.dir != "" && c.t.Failed() && os.Getenv("CONSULRIG_KEEP") == "1" {
		c.t.Logf("consulrig: CONSULRIG_KEEP=1: the failed cluster's directory %s is kept (logs, data dirs)", c.dir)
	} else if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			c.t.Logf("consulrig: removing %s: %v", c.dir, err)
		}
	}
	if c.lock != nil {
		c.lock.Close() // releases the flock
		c.lock = nil
	}
}

// logTails renders the last n lines of every agent's log.
func (c *Cluster) logTails(n int) string {
	if c.tr == nil {
		return ""
	}
	var b strings.Builder
	for _, node := range c.Nodes() {
		path := c.LogPath(node)
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(&b, "\n--- %s: %v", node, err)
			continue
		}
		fmt.Fprintf(&b, "\n--- %s (%s), last %d lines without the HTTP request lines:\n%s", node, path, n, tail(withoutRequests(string(data)), n))
	}
	return b.String()
}

// withoutRequests drops the agents' debug lines about finished HTTP
// requests: under recorded traffic they are nearly every line, and a
// failure's tail should show Raft, serf and the agent's own news.
func withoutRequests(log string) string {
	var b strings.Builder
	for line := range strings.Lines(log) {
		if !strings.Contains(line, "agent.http: Request finished") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// Transport returns the transport that runs the cluster's agents.
func (c *Cluster) Transport() *local.Transport { return c.tr }

// Block returns the cluster's address block N (its agents use 127.0.N.x).
func (c *Cluster) Block() int { return c.block }

// Version returns the version the cluster was started on.
func (c *Cluster) Version() string { return c.version }

// Servers returns the server node names, s1..sN (after Options.NodePrefix).
//
// Servers provisioned through the transport (see ProvisionServers) come
// after the started ones; retired servers are left out.
func (c *Cluster) Servers() []string {
	if c.tr == nil {
		return slices.Clone(c.servers)
	}
	var out []string
	for _, n := range c.tr.Nodes() {
		if a, ok := c.tr.Agent(n); ok && a.Role == transport.RoleServer {
			out = append(out, n)
		}
	}
	return out
}

// Clients returns the client node names, c1..cN (after Options.NodePrefix).
func (c *Cluster) Clients() []string { return slices.Clone(c.clients) }

// Nodes returns every node name, servers first.
func (c *Cluster) Nodes() []string { return append(c.Servers(), c.clients...) }

// Address returns the node's IP ("" for an unknown node).
func (c *Cluster) Address(node string) string { return c.ipOf(node) }

// ipOf is the node's IP: a started node's, else a provisioned one's.
func (c *Cluster) ipOf(node string) string {
	if ip, ok := c.addr[node]; ok {
		return ip
	}
	if c.tr != nil {
		if a, ok := c.tr.Agent(node); ok {
			return a.Address
		}
	}
	return ""
}

// HTTPAddr returns the node's HTTP address, e.g. "127.0.3.11:8500" ("" for
// an unknown node).
func (c *Cluster) HTTPAddr(node string) string {
	ip := c.ipOf(node)
	if ip == "" {
		return ""
	}
	return net.JoinHostPort(ip, strconv.Itoa(local.DefaultHTTPPort))
}

// LogPath returns the file the node's agent logs to.
func (c *Cluster) LogPath(node string) string { return c.tr.LogPath(node) }

// DataDir returns the node's data directory.
func (c *Cluster) DataDir(node string) string {
	a, ok := c.tr.Agent(node)
	if !ok {
		return ""
	}
	return a.DataDir
}

// PIDs returns every agent process id the cluster has started, in order.
func (c *Cluster) PIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pids)
}

// nodeByIP maps an address to its node.
func (c *Cluster) nodeByIP(ip string) (string, bool) {
	for node, a := range c.addr {
		if a == ip {
			return node, true
		}
	}
	if c.tr != nil {
		for _, node := range c.tr.Nodes() {
			if a, ok := c.tr.Agent(node); ok && a.Address == ip {
				return node, true
			}
		}
	}
	return "", false
}
