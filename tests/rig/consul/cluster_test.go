package consulrig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/proc"
)

func TestStartElectsLeaderAndEveryMemberIsAlive(t *testing.T) {
	c := Start(t, Options{})
	if got, want := c.Servers(), []string{"s1", "s2", "s3"}; !slices.Equal(got, want) {
		t.Fatalf("servers = %v, want %v", got, want)
	}
	if got, want := c.Clients(), []string{"c1"}; !slices.Equal(got, want) {
		t.Fatalf("clients = %v, want %v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatalf("leader: %v", err)
	}
	if !slices.Contains(c.Servers(), leader) {
		t.Fatalf("leader %q is not one of the servers %v", leader, c.Servers())
	}
	for _, observer := range []string{"s1", "c1"} {
		ms, err := c.Members(ctx, observer)
		if err != nil {
			t.Fatalf("members from %s: %v", observer, err)
		}
		alive := map[string]string{}
		for _, m := range ms {
			if m.Status == 1 {
				alive[m.Name] = m.Build()
			}
		}
		for _, node := range c.Nodes() {
			if alive[node] != DefaultVersion {
				t.Errorf("%s sees %s alive on %q, want alive on %s (members: %+v)", observer, node, alive[node], DefaultVersion, ms)
			}
		}
		if len(ms) != 4 {
			t.Errorf("%s sees %d members, want 4", observer, len(ms))
		}
	}
	wantAddr := "127.0." + itoa(c.Block()) + ".11:8500"
	if got := c.HTTPAddr("s1"); got != wantAddr {
		t.Errorf("HTTPAddr(s1) = %q, want %q", got, wantAddr)
	}
	// A write through the client reaches the servers.
	if err := c.KVPut(ctx, "c1", "rig/hello", "world"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.KVGet(ctx, "s2", "rig/hello"); err != nil || !ok || v != "world" {
		t.Fatalf("KVGet from s2 = %q, %v, %v; want \"world\", true, nil", v, ok, err)
	}
	// Debug logging is on: elections can be counted later.
	if log := readFile(t, c.LogPath(leader)); !strings.Contains(log, "[DEBUG]") {
		t.Errorf("log of %s has no [DEBUG] lines; want -log-level=debug", leader)
	}
}

func TestStopLeavesNoProcess(t *testing.T) {
	c := Start(t, Options{Servers: 1, Clients: -1, RaftMultiplier: 1})
	pids := c.PIDs()
	if len(pids) != 1 {
		t.Fatalf("recorded pids = %v, want one", pids)
	}
	for _, pid := range pids {
		if !ProcessAlive(pid) {
			t.Fatalf("pid %d is not alive before Stop", pid)
		}
	}
	c.Stop()
	for _, pid := range pids {
		if ProcessAlive(pid) {
			t.Errorf("pid %d still runs after Stop", pid)
		}
	}
	if pid := c.Transport().PID("s1"); pid != 0 {
		t.Errorf("transport still reports pid %d for s1 after Stop", pid)
	}
}

func TestTwoClustersRunAtOnceInDifferentBlocks(t *testing.T) {
	a := Start(t, Options{Servers: 1, Clients: -1, RaftMultiplier: 1})
	b := Start(t, Options{Servers: 1, Clients: -1, RaftMultiplier: 1})
	if a.Block() == b.Block() {
		t.Fatalf("both clusters got block %d", a.Block())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []*Cluster{a, b} {
		ms, err := c.Members(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].Addr != c.Address("s1") {
			t.Errorf("block %d: members = %+v, want only its own s1 at %s", c.Block(), ms, c.Address("s1"))
		}
	}
}

func TestStaleAgentsOfACrashedRunAreKilledButOtherProcessesAreNot(t *testing.T) {
	// Hold block 199's lock as Start would, so no other test process uses it.
	const block = 199
	if err := os.MkdirAll(LockDir, 0o777); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(LockDir, "block-199.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("block %d is in use by another test process: %v", block, err)
	}
	// A "stale agent": its command line names consul and the block's address.
	dir := filepath.Join(t.TempDir(), "127.0.199.11")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(dir, "consul-stale")
	if err := os.Symlink("/bin/sleep", fake); err != nil {
		t.Fatal(err)
	}
	stale := exec.Command(fake, "300")
	// A bystander whose pid is recorded too (a reused pid): not consul.
	bystander := exec.Command("sleep", "300")
	for _, cmd := range []*exec.Cmd{stale, bystander} {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
	}
	record := fmt.Sprintf("%d s1\n%d s2\n", stale.Process.Pid, bystander.Process.Pid)
	if err := os.WriteFile(pidFile(block), []byte(record), 0o666); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(pidFile(block), nil, 0o666)

	killStale(t, block)

	if ProcessAlive(stale.Process.Pid) {
		t.Errorf("stale agent pid %d still runs", stale.Process.Pid)
	}
	if !ProcessAlive(bystander.Process.Pid) {
		t.Errorf("bystander pid %d (not consul) was killed", bystander.Process.Pid)
	}
}

// TestAgentsDieWithAKilledTestBinary runs a cluster in a child copy of this
// test binary, kills that child with SIGKILL (no cleanup runs), and checks
// that its agents went with it (parent-death signal).
func TestAgentsDieWithAKilledTestBinary(t *testing.T) {
	if os.Getenv("CONSULRIG_CHILD") == "1" {
		c := Start(t, Options{Servers: 1, Clients: -1, RaftMultiplier: 1})
		fmt.Printf("PIDS %v\n", c.PIDs())
		os.Stdout.Sync()
		time.Sleep(time.Minute) // the parent kills us
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAgentsDieWithAKilledTestBinary$", "-test.v")
	cmd.Env = append(os.Environ(), "CONSULRIG_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var pids []int
	buf := make([]byte, 64<<10)
	var seen strings.Builder
	deadline := time.Now().Add(ReadyTimeout)
	for pids == nil && time.Now().Before(deadline) {
		n, err := out.Read(buf)
		seen.Write(buf[:n])
		if i := strings.Index(seen.String(), "PIDS ["); i >= 0 {
			rest := seen.String()[i+len("PIDS ["):]
			if j := strings.IndexByte(rest, ']'); j >= 0 {
				for _, f := range strings.Fields(rest[:j]) {
					var pid int
					fmt.Sscan(f, &pid)
					pids = append(pids, pid)
				}
			}
		}
		if err != nil {
			break
		}
	}
	if len(pids) == 0 {
		t.Fatalf("the child did not report its agents' pids; its output:\n%s", seen.String())
	}
	for _, pid := range pids {
		if !ProcessAlive(pid) {
			t.Fatalf("agent pid %d is not alive before the child is killed", pid)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	for _, pid := range pids {
		if !proc.WaitGone(pid, 5*time.Second) {
			t.Errorf("agent pid %d outlived its killed parent", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
