package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
)

// writeScript writes an executable shell script and returns its path.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func agentAt(dir, name, ip string) local.Agent {
	return local.Agent{
		Name:    name,
		Role:    transport.RoleServer,
		Version: "1.12.9",
		Address: ip,
		DataDir: filepath.Join(dir, name, "data"),
	}
}

func noBinary(version string) (string, error) {
	return "", errors.New("no binaries in this test")
}

func TestNewRefusesAgentsThatWouldCollide(t *testing.T) {
	dir := t.TempDir()
	ok := agentAt(dir, "s1", "127.0.250.11")
	cases := []struct {
		name   string
		agents []local.Agent
		want   []string // every fragment must appear in the error
	}{
		{"two agents may not share a node name", []local.Agent{ok, agentAt(dir, "s1", "127.0.250.12")}, []string{`node name "s1" is also used by agent #1`}},
		{"two agents may not share an address", []local.Agent{ok, agentAt(dir, "s2", "127.0.250.11")}, []string{"address 127.0.250.11 is also used by"}},
		{"two agents may not share a data dir", []local.Agent{ok, func() local.Agent { a := agentAt(dir, "s2", "127.0.250.12"); a.DataDir = ok.DataDir; return a }()}, []string{"data dir " + ok.DataDir + " is also the data dir of"}},
		{"a log file may not be another agent's", []local.Agent{ok, func() local.Agent {
			a := agentAt(dir, "s2", "127.0.250.12")
			a.LogPath = filepath.Join(dir, "s1", "s1.log")
			return a
		}()}, []string{"log file", "is also the log file of"}},
		{"a role must be server or client", []local.Agent{func() local.Agent { a := ok; a.Role = "leader"; return a }()}, []string{`role "leader" is not "server" or "client"`}},
		{"a version must be a release", []local.Agent{func() local.Agent { a := ok; a.Version = "latest"; return a }()}, []string{`"latest"`}},
		{"an address must be an IP", []local.Agent{func() local.Agent { a := ok; a.Address = "localhost"; return a }()}, []string{`address "localhost" is not an IP address`}},
		{"a node name must be safe", []local.Agent{func() local.Agent { a := ok; a.Name = "s1; reboot"; return a }()}, []string{"agent #1", "node name"}},
		{"a data dir is required", []local.Agent{func() local.Agent { a := ok; a.DataDir = ""; return a }()}, []string{"data dir is empty"}},
		{"every problem is reported, not only the first", []local.Agent{
			func() local.Agent { a := ok; a.Role = "x"; a.Version = "1"; return a }(),
		}, []string{`role "x"`, `version "1"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, err := local.New(noBinary, c.agents...)
			if err == nil {
				t.Fatalf("New accepted %+v", c.agents)
			}
			if tr != nil {
				t.Errorf("New returned a transport with an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	t.Run("a nil resolver and no agents are refused", func(t *testing.T) {
		_, err := local.New(nil)
		if err == nil || !strings.Contains(err.Error(), "resolver is nil") || !strings.Contains(err.Error(), "no agents") {
			t.Fatalf("New(nil) = %v, want both problems", err)
		}
	})
	t.Run("distinct agents are accepted", func(t *testing.T) {
		tr, err := local.New(noBinary, ok, agentAt(dir, "s2", "127.0.250.12"))
		if err != nil {
			t.Fatal(err)
		}
		if got := tr.Nodes(); len(got) != 2 || got[0] != "s1" || got[1] != "s2" {
			t.Errorf("Nodes() = %v, want [s1 s2]", got)
		}
		if got, want := tr.LogPath("s1"), filepath.Join(dir, "s1", "s1.log"); got != want {
			t.Errorf("default LogPath = %q, want %q (<DataDir>/../<name>.log)", got, want)
		}
	})
}

func TestDirResolvesVersionsToBuiltBinaries(t *testing.T) {
	dir := t.TempDir()
	exe := writeScript(t, dir, "consul-1.12.9", "exit 0")
	if err := os.WriteFile(filepath.Join(dir, "consul-1.13.9"), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	resolve := local.Dir(dir)

	if got, err := resolve("1.12.9"); err != nil || got != exe {
		t.Errorf("a built version resolves to its file: got %q, %v; want %q", got, err, exe)
	}
	_, err := resolve("1.14.8")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "consul-1.14.8")) || !strings.Contains(err.Error(), "scripts/build-consul.sh 1.14.8") {
		t.Errorf("a missing version names the file and how to build it: got %v", err)
	}
	if _, err := resolve("1.13.9"); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Errorf("a non-executable file is refused: got %v", err)
	}
	if _, err := resolve("../1.12.9"); err == nil {
		t.Errorf("a version that is a path is refused")
	}
}

// newScripted returns a transport whose one agent s1 runs scripts: the
// resolver maps each version to the script body given.
func newScripted(t *testing.T, bodies map[string]string) (*local.Transport, local.Agent) {
	t.Helper()
	dir := t.TempDir()
	bins := map[string]string{}
	for v, body := range bodies {
		bins[v] = writeScript(t, dir, "fake-consul-"+v, body)
	}
	a := agentAt(dir, "s1", "127.0.250.11")
	a.HTTPPort = 1 // nothing answers there
	tr, err := local.New(func(v string) (string, error) {
		if p, ok := bins[v]; ok {
			return p, nil
		}
		return "", errors.New("no fake binary for " + v)
	}, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr, a
}

func TestABinaryThatExitsAtOnceIsNotRunningAndTheLogTailSaysWhy(t *testing.T) {
	tr, _ := newScripted(t, map[string]string{"1.12.9": `echo "==> boom: bad flag $1" >&2; exit 1`})
	err := tr.Start(context.Background(), "s1")
	if !errors.Is(err, transport.ErrNotRunning) {
		t.Fatalf("Start = %v, want ErrNotRunning", err)
	}
	var se *local.StartError
	if !errors.As(err, &se) {
		t.Fatalf("Start = %T, want *local.StartError", err)
	}
	if !se.Exited || se.ExitErr == nil {
		t.Errorf("StartError = %+v, want Exited with an exit status", se)
	}
	if len(se.LogTail) != 1 || se.LogTail[0] != "==> boom: bad flag agent" {
		t.Errorf("LogTail = %q, want only the agent's own line", se.LogTail)
	}
	if !strings.Contains(err.Error(), "boom") {
		t.Errorf("error text %q does not quote the log", err)
	}
	if pid := tr.PID("s1"); pid != 0 {
		t.Errorf("PID = %d after the process exited, want 0", pid)
	}
}

func TestAnAgentThatNeverAnswersTimesOut(t *testing.T) {
	tr, _ := newScripted(t, map[string]string{"1.12.9": `exec sleep 300`})
	tr.SetStartTimeout(300 * time.Millisecond)
	began := time.Now()
	err := tr.Start(context.Background(), "s1")
	if !errors.Is(err, transport.ErrNotRunning) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want ErrNotRunning and DeadlineExceeded", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Start took %s with a 300ms start timeout", d)
	}
	if !strings.Contains(err.Error(), "SetStartTimeout") {
		t.Errorf("error %q does not say how to raise the timeout", err)
	}
	// The process still runs; Stop kill removes it.
	pid := tr.PID("s1")
	if pid == 0 {
		t.Fatal("PID = 0, want the sleeping process")
	}
	if err := tr.Stop(context.Background(), "s1", transport.StopKill); err != nil {
		t.Fatal(err)
	}
	if tr.PID("s1") != 0 || alive(pid) {
		t.Errorf("pid %d still runs after Stop kill", pid)
	}
}

func TestTerminateFallsBackToKillWhenSIGTERMIsIgnored(t *testing.T) {
	tr, _ := newScripted(t, map[string]string{"1.12.9": `trap '' TERM; while :; do sleep 1; done`})
	tr.SetStartTimeout(200 * time.Millisecond)
	tr.SetStopTimeout(300 * time.Millisecond)
	_ = tr.Start(context.Background(), "s1") // never answers; stays running
	pid := tr.PID("s1")
	if pid == 0 {
		t.Fatal("the script did not stay up")
	}
	time.Sleep(100 * time.Millisecond) // let the trap be installed
	began := time.Now()
	if err := tr.Stop(context.Background(), "s1", transport.StopTerminate); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Errorf("Stop terminate returned after %s, before the stop timeout; SIGTERM should have been ignored", d)
	}
	if alive(pid) {
		t.Errorf("pid %d still runs", pid)
	}
}

func TestSwapRefusesBeforeTouchingAnything(t *testing.T) {
	tr, _ := newScripted(t, map[string]string{"1.12.9": `exec sleep 300`, "1.13.9": `exec sleep 300`})
	tr.SetStartTimeout(200 * time.Millisecond)
	_ = tr.Start(context.Background(), "s1")
	pid, inc := tr.PID("s1"), tr.Incarnation("s1")
	if pid == 0 {
		t.Fatal("not started")
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ok := transport.SwapRequest{Node: "s1", Role: transport.RoleServer, From: "1.12.9", To: "1.13.9", StopMode: transport.StopKill}
	cases := []struct {
		name  string
		ctx   context.Context
		req   transport.SwapRequest
		phase transport.Phase
		want  error
	}{
		{"an unknown node is refused", context.Background(), func() transport.SwapRequest { r := ok; r.Node = "s9"; return r }(), transport.PhaseValidate, transport.ErrUnknownNode},
		{"a role other than the agent's is refused", context.Background(), func() transport.SwapRequest { r := ok; r.Role = transport.RoleClient; return r }(), transport.PhaseValidate, transport.ErrInvalidRequest},
		{"a from version other than the running one is refused", context.Background(), func() transport.SwapRequest { r := ok; r.From = "1.11.0"; return r }(), transport.PhaseValidate, transport.ErrInvalidRequest},
		{"a malformed version is refused", context.Background(), func() transport.SwapRequest { r := ok; r.To = "latest"; return r }(), transport.PhaseValidate, transport.ErrInvalidRequest},
		{"a version without a binary is an artifact error", context.Background(), func() transport.SwapRequest { r := ok; r.To = "1.14.0"; return r }(), transport.PhaseStage, transport.ErrArtifact},
		{"an artifact that is not a file is an artifact error", context.Background(), func() transport.SwapRequest { r := ok; r.Artifact = "/nonexistent/consul"; return r }(), transport.PhaseStage, transport.ErrArtifact},
		{"a context that has ended is returned", cancelled, func() transport.SwapRequest { r := ok; r.To = "1.12.9"; r.From = ""; return r }(), "", context.Canceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := tr.Swap(c.ctx, c.req)
			if !errors.Is(err, c.want) {
				t.Fatalf("Swap = %v, want %v", err, c.want)
			}
			var se *transport.SwapError
			if !errors.As(err, &se) {
				t.Fatalf("Swap = %T, want *transport.SwapError", err)
			}
			if c.phase != "" && se.Phase != c.phase {
				t.Errorf("phase = %q, want %q", se.Phase, c.phase)
			}
			if tr.PID("s1") != pid || tr.Incarnation("s1") != inc {
				t.Errorf("the agent was touched: pid %d -> %d, incarnation %q -> %q", pid, tr.PID("s1"), inc, tr.Incarnation("s1"))
			}
		})
	}
}

func TestRollbackWithoutASwapIsRefused(t *testing.T) {
	tr, _ := newScripted(t, map[string]string{"1.12.9": `exec sleep 300`})
	err := tr.Rollback(context.Background(), "s1")
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Phase != transport.PhaseRollback || !errors.Is(err, transport.ErrInvalidRequest) {
		t.Fatalf("Rollback = %v, want a rollback-phase SwapError wrapping ErrInvalidRequest", err)
	}
	if !strings.Contains(err.Error(), "no earlier swap") {
		t.Errorf("error %q does not say why", err)
	}
}

func TestCloseStopsEverythingAndRefusesLaterStarts(t *testing.T) {
	tr, _ := newScripted(t, map[string]string{"1.12.9": `exec sleep 300`})
	tr.SetStartTimeout(200 * time.Millisecond)
	_ = tr.Start(context.Background(), "s1")
	pid := tr.PID("s1")
	if pid == 0 {
		t.Fatal("not started")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("pid %d runs after Close", pid)
	}
	if err := tr.Start(context.Background(), "s1"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Start after Close = %v, want a closed-transport error", err)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestAContextThatEndsWhileTheNewAgentStartsIsReturnedWithErrNotRunning(t *testing.T) {
	tr, _ := newScripted(t, map[string]string{"1.12.9": `exec sleep 300`, "1.13.9": `exec sleep 300`})
	tr.SetStartTimeout(200 * time.Millisecond)
	_ = tr.Start(context.Background(), "s1") // never answers; stays up
	tr.SetStartTimeout(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := tr.Swap(ctx, transport.SwapRequest{Node: "s1", Role: transport.RoleServer, From: "1.12.9", To: "1.13.9", StopMode: transport.StopKill})
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Phase != transport.PhaseStart {
		t.Fatalf("Swap = %v, want a start-phase SwapError", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, transport.ErrNotRunning) {
		t.Errorf("Swap = %v, want it to wrap both ctx.Err() and ErrNotRunning", err)
	}
	if v, err := tr.RunningVersion(context.Background(), "s1"); err != nil || v != "1.13.9" {
		t.Errorf("RunningVersion = %q, %v; want the new process (1.13.9) left running for a retry or Rollback", v, err)
	}
}
