package ssh_test

// A fleet from the catalog, swapped through the systemd service manager, on
// real Consul agents behind a real sshd.
//
// systemd cannot run here (it is not PID 1), so each agent runs as a unit of
// Debian's systemctl package (docker-systemctl-replacement 1.4: a daemonless
// systemctl that reads real unit files, starts ExecStart detached, tracks the
// main PID, reports ActiveState/SubState/MainPID through systemctl show and
// logs the unit's output to a journal file). scripts/ensure-systemctl.sh
// puts it in the cache without installing it. Two thin shims stand in front
// of it on every host: systemctl, which picks the host's unit root from the
// address the SSH session reached and implements kill --signal (the
// replacement sends the unit's KillSignal whatever is asked), and
// journalctl -u UNIT -n N, a tail of the unit's journal file. What the stand-in
// does not do as systemd does: it restarts nothing by itself (Restart= needs
// it to run as init), Type=notify units block its start for minutes (so the
// units are Type=simple, and the swap's UnitSettle applies), and it keeps no
// cgroup (KillMode is per process).
//
// Each agent has an address of its own (127.0.B.x, a block locked as the
// consul rig locks them), and sshd listens on each address: each address is a
// host. The servers' sshd port is the fleet's default; the client, whose node
// meta says rack r2, is reached on another port that only the fleet's group
// "rack r2" gives.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	sshrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/sshd"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// standIn returns Debian's systemctl script (the replacement), fetching it
// into the cache with scripts/ensure-systemctl.sh when it is missing. A
// failure fails the test: it is never skipped.
func standIn(t *testing.T) string {
	t.Helper()
	script, err := filepath.Abs("../../../scripts/ensure-systemctl.sh")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", script).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s: %v: %s", script, err, ee.Stderr)
		}
		t.Fatalf("%s: %v", script, err)
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s printed %q: %v", script, p, err)
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Fatalf("Debian's systemctl package runs on /usr/bin/python3 (scripts/ensure-systemctl.sh installs it): %v", err)
	}
	return p
}

// claimBlock takes an address block 127.0.N.x the way the consul rig does
// (an flock on /tmp/consulrig/block-N.lock, Consul's ports free on every
// address), from the top so as not to race the rig's own scan from 1. The
// lock is held until the test ends. The agents' pids go to the block's pid
// file, so that the rig kills them if this test process dies.
func claimBlock(t *testing.T, ips func(n int) []string) (int, string) {
	t.Helper()
	if err := os.MkdirAll(consulrig.LockDir, 0o777); err != nil {
		t.Fatal(err)
	}
	for n := consulrig.MaxBlocks; n >= 1; n-- {
		f, err := os.OpenFile(filepath.Join(consulrig.LockDir, fmt.Sprintf("block-%d.lock", n)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		free := true
		for _, ip := range ips(n) {
			for _, port := range []string{"8300", "8301", "8302", "8500"} {
				l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
				if err != nil {
					free = false
					break
				}
				l.Close()
			}
		}
		if !free {
			f.Close()
			continue
		}
		t.Cleanup(func() { f.Close() })
		pids := filepath.Join(consulrig.LockDir, fmt.Sprintf("block-%d.pids", n))
		if err := os.WriteFile(pids, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		return n, pids
	}
	t.Fatal("no free address block")
	return 0, ""
}

// unitHost is one node of the fleet: an agent at its own address, run by the
// stand-in systemd of that address.
type unitHost struct {
	name, ip string
	server   bool
	rack     string
	bin      string // the agent's binary (BinaryPath)
	cfg      string
}

// systemdFleet is the cluster of the test and what drives it.
type systemdFleet struct {
	dir       string
	systemctl string // the shim
	journal   string // the shim
	refuse    string // while this file exists, every unit refuses toVersion
	hosts     []*unitHost
}

func (f *systemdFleet) host(name string) *unitHost {
	for _, h := range f.hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

// ctl runs the shim as if on h's host.
func (f *systemdFleet) ctl(h *unitHost, args ...string) (string, error) {
	cmd := exec.Command(f.systemctl, args...)
	cmd.Env = append(os.Environ(), "STANDIN_HOST="+h.ip)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mainPID is the unit's main process on h (0: none).
func (f *systemdFleet) mainPID(t *testing.T, h *unitHost) int {
	t.Helper()
	out, err := f.ctl(h, "show", "-p", "MainPID", "consul.service")
	if err != nil {
		t.Fatalf("show %s: %v: %s", h.name, err, out)
	}
	v, _ := strings.CutPrefix(strings.TrimSpace(out), "MainPID=")
	pid, _ := strconv.Atoi(v)
	return pid
}

func newSystemdFleet(t *testing.T, replacement string, block int, pidFile string) *systemdFleet {
	t.Helper()
	dir := t.TempDir()
	f := &systemdFleet{dir: dir, systemctl: filepath.Join(dir, "bin", "systemctl"), journal: filepath.Join(dir, "bin", "journalctl"), refuse: filepath.Join(dir, "refuse-"+toVersion)}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	hostOf := `host=${STANDIN_HOST:-$(echo "$SSH_CONNECTION" | cut -d' ' -f3)}
root="` + dir + `/hosts/$host"
[ -n "$host" ] && [ -d "$root" ] || { echo "systemd stand-in: no host ${host:-(no SSH_CONNECTION)}" >&2; exit 1; }
`
	shim := "#!/bin/sh\n# systemctl on a test host: Debian's systemctl package with this host's unit root,\n# plus kill --signal, which it ignores.\n" + hostOf + `if [ "$1" = kill ]; then
  shift; sig=SIGTERM; unit=
  for a in "$@"; do case "$a" in --signal=*) sig=${a#--signal=} ;; -*) ;; *) unit=$a ;; esac; done
  pid=$(/usr/bin/python3 ` + replacement + ` --root="$root" show -p MainPID "$unit" | sed -n 's/^MainPID=//p')
  if [ -z "$pid" ] || [ "$pid" -le 0 ]; then echo "Failed to kill unit $unit: No main process to kill" >&2; exit 1; fi
  exec kill -s "${sig#SIG}" "$pid"
fi
exec /usr/bin/python3 ` + replacement + ` --root="$root" "$@"
`
	journal := "#!/bin/sh\n# journalctl -u UNIT -n N on a test host: the tail of the unit's journal file.\n" + hostOf + `unit=; n=10
while [ $# -gt 0 ]; do case "$1" in -u) unit=$2; shift 2 ;; -n) n=$2; shift 2 ;; *) shift ;; esac; done
exec tail -n "$n" "$root/var/log/journal/$unit.log"
`
	for p, body := range map[string]string{f.systemctl: shim, f.journal: journal} {
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	bin12 := consulrig.Binary(t, fromVersion)
	var serverIPs []string
	for i := 1; i <= 3; i++ {
		serverIPs = append(serverIPs, fmt.Sprintf("127.0.%d.%d", block, 10+i))
	}
	add := func(name, ip string, server bool, rack string) {
		h := &unitHost{name: name, ip: ip, server: server, rack: rack}
		nd := filepath.Join(dir, "nodes", name)
		h.bin, h.cfg = filepath.Join(nd, "bin", "consul"), filepath.Join(nd, "agent.hcl")
		for _, d := range []string{filepath.Dir(h.bin), filepath.Join(nd, "data"), filepath.Join(dir, "hosts", ip, "etc", "systemd", "system")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		copyFile(t, bin12, h.bin)
		join := `"` + strings.Join(serverIPs, `", "`) + `"`
		hcl := fmt.Sprintf("node_name = %q\ndatacenter = \"dc1\"\ndata_dir = %q\nlog_level = \"debug\"\nretry_join = [%s]\nretry_interval = \"1s\"\nnode_meta {\n  rack = %q\n}\nports {\n  dns = -1\n  grpc = -1\n}\n",
			name, filepath.Join(nd, "data"), join, rack)
		if server {
			hcl += "server = true\nbootstrap_expect = 3\n"
		}
		if err := os.WriteFile(h.cfg, []byte(hcl), 0o644); err != nil {
			t.Fatal(err)
		}
		// The unit's ExecStart: record the pid for the rig, refuse the
		// target version while the refuse file exists (a stand-in for a
		// config the new version rejects), then become the agent.
		run := filepath.Join(nd, "run.sh")
		script := fmt.Sprintf(`#!/bin/sh
echo "$$ %s" >> %q
if [ -e %q ] && %q version | grep -q '^Consul v%s$'; then
  echo "==> Error parsing %s: stand-in refusal: this host refuses consul %s while %s exists" >&2
  exit 1
fi
exec %q agent -config-file=%q -bind=%s -client=%s
`, name, pidFile, f.refuse, h.bin, strings.ReplaceAll(toVersion, ".", `\.`), h.cfg, toVersion, f.refuse, h.bin, h.cfg, ip, ip)
		if err := os.WriteFile(run, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		unit := fmt.Sprintf("[Unit]\nDescription=Consul agent %s\n\n[Service]\nType=simple\nExecStart=/bin/sh %s\nKillSignal=SIGINT\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n", name, run)
		if err := os.WriteFile(filepath.Join(dir, "hosts", ip, "etc", "systemd", "system", "consul.service"), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		f.hosts = append(f.hosts, h)
	}
	for i, ip := range serverIPs {
		add("s"+strconv.Itoa(i+1), ip, true, "r1")
	}
	add("c1", fmt.Sprintf("127.0.%d.21", block), false, "r2")

	t.Cleanup(func() {
		for _, h := range f.hosts {
			if pid := f.mainPID(t, h); pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if t.Failed() {
				b, _ := os.ReadFile(filepath.Join(dir, "hosts", h.ip, "var", "log", "journal", "consul.service.log"))
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				t.Logf("journal of %s:\n%s", h.name, b)
			}
		}
	})
	for _, h := range f.hosts {
		if out, err := f.ctl(h, "start", "consul.service"); err != nil {
			t.Fatalf("start %s: %v: %s", h.name, err, out)
		}
	}
	return f
}

// catalogNodes lists the cluster's nodes as the CLI's fleet does: serf
// members (role, datacenter) with the catalog's address and node meta.
func catalogNodes(t *testing.T, ctx context.Context, c *api.Client) []ssh.Node {
	t.Helper()
	members, err := c.Agent().Members(false)
	if err != nil {
		t.Fatal(err)
	}
	nodes, _, err := c.Catalog().Nodes((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	var out []ssh.Node
	for _, m := range members {
		role := transport.RoleClient
		if m.Tags["role"] == "consul" {
			role = transport.RoleServer
		}
		n := ssh.Node{Name: m.Name, Address: m.Addr, Role: role, Datacenter: m.Tags["dc"]}
		for _, cn := range nodes {
			if cn.Node == m.Name {
				n.Address, n.Meta = cn.Address, cn.Meta
			}
		}
		out = append(out, n)
	}
	return out
}

func TestAFleetFromTheCatalogIsSwappedThroughSystemdUnitsOverRealSSH(t *testing.T) {
	replacement := standIn(t)
	consulrig.Binary(t, toVersion)
	block, pidFile := claimBlock(t, func(n int) []string {
		return []string{fmt.Sprintf("127.0.%d.11", n), fmt.Sprintf("127.0.%d.12", n), fmt.Sprintf("127.0.%d.13", n), fmt.Sprintf("127.0.%d.21", n)}
	})
	f := newSystemdFleet(t, replacement, block, pidFile)
	ports := freePorts(t, 2)
	serverPort, rackPort := ports[0], ports[1]
	var listen []string
	for _, h := range f.hosts {
		p := serverPort
		if h.rack == "r2" {
			p = rackPort
		}
		listen = append(listen, net.JoinHostPort(h.ip, strconv.Itoa(p)))
	}
	s := sshrig.StartOn(t, listen...)

	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
	defer cancel()
	var eps []upgrade.Endpoint
	for _, h := range f.hosts {
		c, err := upgrade.ConnectAddr(h.ip + ":8500")
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, upgrade.Endpoint{Addr: h.ip + ":8500", Consul: c})
	}
	consul, err := upgrade.Failover(eps, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := upgrade.Config{Consul: consul, Target: toVersion, Snapshot: upgrade.SnapshotDir(t.TempDir())}
	scenario.WaitReady(t, ctx, base, 3)
	client, err := api.NewClient(&api.Config{Address: f.host("s1").ip + ":8500"})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []ssh.Node
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		nodes = catalogNodes(t, ctx, client)
		if len(nodes) == 4 && !slices.ContainsFunc(nodes, func(n ssh.Node) bool { return n.Meta["rack"] == "" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the catalog lists %+v, want 4 nodes with their node meta", nodes)
		}
	}

	// The fleet: one set of defaults for every host, the client's port from
	// its rack, and each node's binary path (all hosts share this
	// machine's file system).
	fleet := ssh.Fleet{
		Defaults: ssh.Settings{
			User: s.User, Port: serverPort, KeyFile: s.KeyFile,
			Service: ssh.ServiceSystemd, Systemctl: []string{f.systemctl}, Journalctl: []string{f.journal},
			StartTimeout: 90 * time.Second, CommandTimeout: 2 * time.Minute,
		},
		Groups: []ssh.Group{{Name: "rack r2", Match: ssh.Match{Meta: map[string]string{"rack": "r2"}}, Set: ssh.Settings{Port: rackPort}}},
		Nodes:  map[string]ssh.Settings{},
	}
	for _, h := range f.hosts {
		fleet.Nodes[h.name] = ssh.Settings{BinaryPath: h.bin}
	}
	newTransport := func(fl ssh.Fleet) *ssh.Transport {
		t.Helper()
		hosts, err := fl.Resolve(nodes)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := ssh.New(hosts, ssh.WithKnownHosts(s.KnownHosts), ssh.WithResolver(ssh.Files(map[string]ssh.File{toVersion: {Path: consulrig.Binary(t, toVersion)}})))
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	pids := map[string]int{}
	for _, h := range f.hosts {
		pids[h.name] = f.mainPID(t, h)
	}
	untouched := func(when string) {
		t.Helper()
		for _, h := range f.hosts {
			if pid := f.mainPID(t, h); pid != pids[h.name] {
				t.Errorf("%s: %s's agent changed from pid %d to %d, want it untouched", when, h.name, pids[h.name], pid)
			}
		}
	}

	// 1. Without the rack group, c1 resolves to the servers' port, where
	// nothing listens on its address: the pre-flight names it and its
	// address, and the run is refused before anything is stopped.
	noRack := fleet
	noRack.Groups = nil
	cfg := base
	cfg.Transport = newTransport(noRack)
	_, err = upgrade.Run(ctx, cfg)
	var pe *upgrade.PreflightError
	c1Addr := net.JoinHostPort(f.host("c1").ip, strconv.Itoa(serverPort))
	var ue *ssh.UnreachableError
	if !errors.As(err, &pe) || !errors.As(err, &ue) || ue.Node != "c1" || ue.Addr != c1Addr || ue.Stage != "connect" {
		t.Fatalf("Run with c1 unreachable = %v, want a *upgrade.PreflightError naming c1 at %s (connect)", err, c1Addr)
	}
	if !strings.Contains(err.Error(), "1 node(s) cannot be reached") {
		t.Errorf("error %q does not count the unreachable host", err)
	}
	untouched("after the refused run")

	// 2. The first unit swapped refuses the new version: ActiveState
	// failed, the journal's refusal in the error, and a rollback to the
	// old binary, which its unit runs again.
	if err := os.WriteFile(f.refuse, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg = base
	cfg.Transport = newTransport(fleet)
	cfg.Rollback = true
	began := time.Now()
	_, err = upgrade.Run(ctx, cfg)
	var he *upgrade.HaltError
	var unitErr *ssh.UnitError
	if !errors.As(err, &he) || !errors.As(err, &unitErr) {
		t.Fatalf("Run with a unit that refuses %s = %v, want a *upgrade.HaltError wrapping a *ssh.UnitError", toVersion, err)
	}
	t.Logf("refused swap and rollback took %v: %v", time.Since(began).Round(time.Millisecond), err)
	failed := f.host(unitErr.Node)
	if failed == nil || unitErr.ActiveState != "failed" || unitErr.Step != "start" || !errors.Is(err, transport.ErrNotRunning) {
		t.Errorf("UnitError = %+v, want a node's unit failed at its start (ErrNotRunning)", *unitErr)
	}
	if !strings.Contains(unitErr.Journal, "stand-in refusal: this host refuses consul "+toVersion) || !strings.Contains(err.Error(), "journalctl -u consul.service") {
		t.Errorf("the error does not carry the journal's refusal:\n%v", err)
	}
	if !he.RolledBack || !slices.Equal(he.RolledBackNodes, []string{unitErr.Node}) {
		t.Errorf("HaltError: rolled back %v (%v), want %s rolled back", he.RolledBack, he.RolledBackNodes, unitErr.Node)
	}
	if failed != nil {
		waitAgentVersion(t, failed.ip+":8500", fromVersion, time.Minute)
		if out, err := f.ctl(failed, "show", "-p", "ActiveState", "consul.service"); err != nil || strings.TrimSpace(out) != "ActiveState=active" {
			t.Errorf("%s's unit after the rollback: %q (%v), want active", failed.name, out, err)
		}
	}
	for _, h := range f.hosts {
		if h != failed && f.mainPID(t, h) != pids[h.name] {
			t.Errorf("%s was restarted by the halted run; only %s was touched", h.name, unitErr.Node)
		}
	}

	// 3. The refusal lifted, the run swaps every node through its unit:
	// the servers one at a time behind the gate, then the client.
	if err := os.Remove(f.refuse); err != nil {
		t.Fatal(err)
	}
	cfg = base
	cfg.Transport = newTransport(fleet)
	var swapped []string
	cfg.OnEvent = func(e upgrade.Event) {
		if e.Kind == upgrade.EventStepDone && e.Step.Node != "" {
			swapped = append(swapped, e.Step.Node)
		}
	}
	began = time.Now()
	res, err := upgrade.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("run through systemd units took %v, %d steps, nodes swapped one by one, in order, %v", time.Since(began).Round(time.Millisecond), len(res.Steps), swapped)
	for _, h := range f.hosts {
		waitAgentVersion(t, h.ip+":8500", toVersion, time.Minute)
		if pid := f.mainPID(t, h); pid == pids[h.name] || pid == 0 {
			t.Errorf("%s: main pid %d, want a new agent process (was %d)", h.name, pid, pids[h.name])
		}
		if out, err := exec.Command(h.bin+".prev", "version").Output(); err != nil || !strings.HasPrefix(string(out), "Consul v"+fromVersion) {
			t.Errorf("%s.prev version = %q, %v; want the old %s kept for a rollback", h.bin, out, err, fromVersion)
		}
	}
}
