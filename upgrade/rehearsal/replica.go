package rehearsal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	version "github.com/hashicorp/go-version"

	"github.com/seed-e5e14ead/consul-upgrade/internal/proc"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// The replica's agents live on a loopback address block 127.0.N.x (servers
// .11-.19, clients .21-...), each with Consul's default ports. Blocks are
// handed out with the same lock files as the project's test rig
// (tests/rig/consul), so a rehearsal and the real-cluster tests never
// take the same addresses.
const (
	lockDir   = "/tmp/consulrig"
	maxBlocks = 200
)

// replica is a running loopback copy of a datacenter's shape.
type replica struct {
	dir   string
	block int
	lock  *os.File
	tr    *local.Transport
	addr  map[string]string // node -> IP
	specs []local.Agent

	mu   sync.Mutex
	pids []int
}

// The agent flags that differ by era (the versions this project builds):
//   - before 0.7: the datacenter flag is -dc (-datacenter came in 0.7);
//   - 1.0 and later default to raft protocol 3, which a server cannot use
//     beside servers of 0.x (raft protocol 2): while any server of the
//     replica runs 0.x, a 1.x server starts with -raft-protocol=2.
var (
	firstDatacenterFlag = version.Must(version.NewVersion("0.7.0"))
	firstRaft3          = version.Must(version.NewVersion("1.0.0"))
	firstSnapshotAPI    = version.Must(version.NewVersion("0.7.1"))
	firstNewACLs        = version.Must(version.NewVersion("1.4.0"))
	firstInitialMgmt    = version.Must(version.NewVersion("1.11.0"))
)

func before(v string, limit *version.Version) bool {
	pv, err := version.NewVersion(v)
	return err == nil && pv.LessThan(limit)
}

// startReplica claims an address block, starts every agent of the shape on
// its version and waits until upgrade.Discover sees a leader and every
// server a healthy voter. On error everything started is torn down.
func startReplica(ctx context.Context, r *resolved) (_ *replica, err error) {
	rp := &replica{addr: map[string]string{}}
	defer func() {
		if err != nil {
			rp.close()
		}
	}()
	n := len(r.shape.servers)
	ips := func(block int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("127.0.%d.%d", block, 11+i))
		}
		for i := range r.shape.clients {
			out = append(out, fmt.Sprintf("127.0.%d.%d", block, 21+i))
		}
		return out
	}
	if err := rp.claimBlock(ips); err != nil {
		return rp, err
	}
	rp.dir, err = os.MkdirTemp("", fmt.Sprintf("consul-rehearsal-b%d-", rp.block))
	if err != nil {
		return rp, err
	}
	addrs := ips(rp.block)
	var join []string
	for _, ip := range addrs[:n] {
		join = append(join, "-retry-join="+ip)
	}
	dc := r.shape.datacenter
	argsFor := func(server bool) func(string) ([]string, error) {
		return func(v string) ([]string, error) {
			var flags []string
			if before(v, firstDatacenterFlag) {
				flags = append(flags, "-dc="+dc)
			} else {
				flags = append(flags, "-datacenter="+dc)
			}
			if server && !before(v, firstRaft3) && rp.anyServerBefore(firstRaft3) {
				flags = append(flags, "-raft-protocol=2")
			}
			if r.Token != "" {
				f, err := rp.aclConfig(v, r.Token)
				if err != nil {
					return nil, err
				}
				flags = append(flags, "-config-file="+f)
			}
			return flags, nil
		}
	}
	add := func(a agentSpec, role transport.Role, ip string, args []string) error {
		data := filepath.Join(rp.dir, a.name, "data")
		if err := writeNodeID(data, rp.dir, a.name); err != nil {
			return fmt.Errorf("node ID of %s: %w", a.name, err)
		}
		rp.addr[a.name] = ip
		rp.specs = append(rp.specs, local.Agent{
			Name: a.name, Role: role, Version: a.version, Address: ip,
			DataDir: data, LogPath: filepath.Join(rp.dir, a.name+".log"),
			Args:    append(append([]string{"-advertise=" + ip, "-retry-interval=1s"}, join...), args...),
			ArgsFor: argsFor(role == transport.RoleServer),
		})
		return nil
	}
	for i, a := range r.shape.servers {
		if err := add(a, transport.RoleServer, addrs[i], []string{"-bootstrap-expect=" + strconv.Itoa(n)}); err != nil {
			return rp, err
		}
	}
	for i, a := range r.shape.clients {
		if err := add(a, transport.RoleClient, addrs[n+i], nil); err != nil {
			return rp, err
		}
	}
	bins := r.bins
	rp.tr, err = local.New(func(v string) (string, error) {
		if p, ok := bins[v]; ok {
			return p, nil
		}
		return "", fmt.Errorf("consul %s is not a version of this rehearsal's path (have %s); build it with %s %s", v, strings.Join(slices.Sorted(maps.Keys(bins)), ", "), BuildScript, v)
	}, rp.specs...)
	if err != nil {
		return rp, err
	}
	rp.tr.SetStartTimeout(time.Minute)
	rp.tr.OnStart(rp.recordPID)

	var wg sync.WaitGroup
	errs := make([]error, len(rp.specs))
	for i, a := range rp.specs {
		wg.Go(func() { errs[i] = rp.tr.Start(ctx, a.Name) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return rp, fmt.Errorf("rehearsal: starting the replica: %w%s", err, rp.logTails(10))
	}
	if err := rp.waitReady(ctx, n); err != nil {
		return rp, fmt.Errorf("%w%s", err, rp.logTails(10))
	}
	return rp, nil
}

// anyServerBefore reports whether a server of the replica runs (or is
// set to run) a version older than limit.
func (rp *replica) anyServerBefore(limit *version.Version) bool {
	for _, s := range rp.specs {
		if s.Role != transport.RoleServer {
			continue
		}
		if a, ok := rp.tr.Agent(s.Name); ok && before(a.Version, limit) {
			return true
		}
	}
	return false
}

// consulAddr is the HTTP address the run talks to: the first client (it
// stays up while servers are swapped), else the first server.
func (rp *replica) consulAddr() string {
	for _, s := range rp.specs {
		if s.Role == transport.RoleClient {
			return s.HTTPAddr()
		}
	}
	return rp.specs[0].HTTPAddr()
}

// waitReady waits until a leader is known and n servers are healthy voters.
func (rp *replica) waitReady(ctx context.Context, n int) error {
	c, err := upgrade.ConnectAddr(rp.consulAddr())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	last := "no answer yet"
	for {
		cl, err := upgrade.Discover(ctx, c)
		if err != nil {
			last = err.Error()
		} else {
			healthy, leaders := 0, 0
			for _, s := range cl.Servers {
				if s.Healthy && s.Voter {
					healthy++
				}
				if s.Leader {
					leaders++
				}
			}
			if healthy == n && len(cl.Servers) == n && leaders == 1 {
				return nil
			}
			last = fmt.Sprintf("%d of %d servers healthy voters, %d leader(s)", healthy, len(cl.Servers), leaders)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rehearsal: the replica never became ready for an upgrade (last: %s): %w", last, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (rp *replica) recordPID(node string, pid int) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.pids = append(rp.pids, pid)
	if f, err := os.OpenFile(pidFile(rp.block), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666); err == nil {
		fmt.Fprintf(f, "%d %s\n", pid, node)
		f.Close()
	}
}

// PIDs are every agent process id started, in order.
func (rp *replica) PIDs() []int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return slices.Clone(rp.pids)
}

// close kills every agent (SIGKILL by pid, through the transport), waits
// until each process is gone, removes the replica's files and releases
// the block. It returns the pids still alive, if any.
func (rp *replica) close() error {
	var errs []error
	if rp.tr != nil {
		if err := rp.tr.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, pid := range rp.PIDs() {
		if !proc.WaitGone(pid, 10*time.Second) {
			errs = append(errs, fmt.Errorf("agent pid %d still runs after SIGKILL", pid))
		}
	}
	if len(errs) == 0 && rp.lock != nil {
		os.WriteFile(pidFile(rp.block), nil, 0o666)
	}
	if rp.dir != "" {
		if err := os.RemoveAll(rp.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if rp.lock != nil {
		rp.lock.Close()
		rp.lock = nil
	}
	return errors.Join(errs...)
}

// logTails is the last n lines of every agent's log.
func (rp *replica) logTails(n int) string {
	var b strings.Builder
	for _, s := range rp.specs {
		data, err := os.ReadFile(s.LogPath)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "\n--- %s, last %d lines:\n%s", s.Name, n, strings.Join(lines[max(0, len(lines)-n):], "\n"))
	}
	return b.String()
}

func pidFile(block int) string { return filepath.Join(lockDir, fmt.Sprintf("block-%d.pids", block)) }

// claimBlock takes the first address block whose lock file it can lock and
// whose addresses have the Consul ports free. Agents a crashed earlier
// holder left behind (recorded in the block's pid file) are killed first.
func (rp *replica) claimBlock(ips func(int) []string) error {
	if err := os.MkdirAll(lockDir, 0o777); err != nil {
		return fmt.Errorf("rehearsal: lock dir: %w", err)
	}
	for n := 1; n <= maxBlocks; n++ {
		f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("block-%d.lock", n)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return fmt.Errorf("rehearsal: lock file: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		killStale(n)
		if !portsFree(ips(n)) {
			f.Close()
			continue
		}
		rp.block, rp.lock = n, f
		return os.WriteFile(pidFile(n), nil, 0o666)
	}
	return fmt.Errorf("rehearsal: no free loopback address block among %d (locks in %s)", maxBlocks, lockDir)
}

func portsFree(ips []string) bool {
	for _, ip := range ips {
		for _, port := range []string{"8300", "8301", "8302", "8500"} {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}

// killStale kills each pid recorded for block n whose command line still
// names consul and the block's addresses (a pid reused by another program
// is left alone).
func killStale(n int) {
	data, err := os.ReadFile(pidFile(n))
	if err != nil {
		return
	}
	marker := fmt.Sprintf("127.0.%d.", n)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 1 {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "consul") || !strings.Contains(string(cmdline), marker) {
			continue
		}
		syscall.Kill(pid, syscall.SIGKILL)
		proc.WaitGone(pid, 5*time.Second)
	}
}

// writeNodeID gives an agent its own node ID before its first start
// (<data>/node-id, read from 0.7.3 on): agents sharing one host would
// otherwise derive the same ID, which 0.8.5 and later refuse.
func writeNodeID(dataDir, dir, name string) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	h := sha256.Sum256([]byte(dir + "\x00" + name))
	x := hex.EncodeToString(h[:16])
	id := x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
	return os.WriteFile(filepath.Join(dataDir, "node-id"), []byte(id), 0o644)
}

// aclConfig writes (once per version) the ACL configuration of a replica
// whose cluster has ACLs on: enabled, default policy allow, and token its
// initial management token (1.11 and later; "master" before), so the
// operator's token works before the restore as after it, and its default
// token, so the run (whose snapshots need a management token) and the
// recorded traffic use it without naming it. The file is 0600 in the replica's
// folder, removed with it; the token never appears on a command line.
func (rp *replica) aclConfig(v, token string) (string, error) {
	name := "initial_management"
	if before(v, firstInitialMgmt) {
		name = "master"
	}
	body, err := json.Marshal(map[string]any{"acl": map[string]any{
		"enabled": true, "default_policy": "allow", "tokens": map[string]string{name: token, "default": token},
	}})
	if err != nil {
		return "", err
	}
	p := filepath.Join(rp.dir, "acl-"+name+".json")
	if err := os.WriteFile(p, body, 0o600); err != nil {
		return "", fmt.Errorf("ACL configuration of the replica: %w", err)
	}
	return p, nil
}
