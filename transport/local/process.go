package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// agent is the transport's state for one node.
type agent struct {
	spec Agent
	sem  chan struct{} // one operation on the node at a time

	mu          sync.Mutex // guards the fields below
	version     string     // version of the running process, or of the next start
	binary      string     // binary of the running (or last) process
	prevVersion string     // version before the last swap ("" when none)
	prevBinary  string     // binary before the last swap
	proc        *proc      // nil when never started
	incarnation string
}

// proc is one started agent process.
type proc struct {
	cmd     *exec.Cmd
	pid     int
	version string
	binary  string
	logFrom int64         // log offset when the process started
	done    chan struct{} // closed once the process has exited and been reaped
	exitErr error         // set before done is closed
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// lock takes the node's operation slot, or gives up when ctx ends.
func (a *agent) lock(ctx context.Context) error {
	select {
	case a.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node %s: waiting for another operation on it: %w", a.spec.Name, ctx.Err())
	}
}

func (a *agent) unlock() { <-a.sem }

// running returns the live process, or nil.
func (a *agent) running() *proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc != nil && a.proc.alive() {
		return a.proc
	}
	return nil
}

// StartError is the cause of a start that failed: the process exited, or did
// not answer on its HTTP API with the expected version in time. It unwraps
// to transport.ErrNotRunning and, when a context or timeout ended the wait,
// to that cause as well.
type StartError struct {
	// Node, Version and Binary say what was started.
	Node    string
	Version string
	Binary  string
	// Exited is true when the process ended by itself; ExitErr is then its
	// exit status (nil for a clean exit).
	Exited  bool
	ExitErr error
	// Cause is why the wait ended without exit: context.DeadlineExceeded
	// for the start timeout, or ctx.Err(); nil when the process exited or
	// could not be executed.
	Cause error
	// LastAnswer is the last thing the HTTP API said ("" when it never
	// answered).
	LastAnswer string
	// LogPath and LogTail are the agent's log file and its last lines from
	// this start.
	LogPath string
	LogTail []string
}

// Error says what was started, how it failed, and quotes the log tail.
func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: node %s on consul %s (%s) ", transport.ErrNotRunning, e.Node, e.Version, e.Binary)
	switch {
	case e.Exited && e.ExitErr != nil:
		fmt.Fprintf(&b, "exited during start (%v)", e.ExitErr)
	case e.Exited:
		b.WriteString("exited during start (status 0)")
	case e.Cause != nil:
		fmt.Fprintf(&b, "did not answer with its version in time (%v)", e.Cause)
	default:
		fmt.Fprintf(&b, "could not be executed (%v)", e.ExitErr)
	}
	if e.LastAnswer != "" {
		fmt.Fprintf(&b, "; last answer: %s", e.LastAnswer)
	}
	if len(e.LogTail) > 0 {
		fmt.Fprintf(&b, "; last lines of %s:\n  %s", e.LogPath, strings.Join(e.LogTail, "\n  "))
	} else {
		fmt.Fprintf(&b, "; %s has no output from this start; check the binary and arguments", e.LogPath)
	}
	return b.String()
}

// Unwrap returns transport.ErrNotRunning and the cause, if any.
func (e *StartError) Unwrap() []error {
	errs := []error{transport.ErrNotRunning}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// logTailLines is how many log lines a StartError quotes.
const logTailLines = 20

// start launches the node's agent on version/binary and waits until it
// answers with that version. The caller holds the node's slot and has
// checked that no process of the node runs.
func (t *Transport) start(ctx context.Context, a *agent, version, binary string) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("node %s: transport is closed; create a new one with local.New", a.spec.Name)
	}
	t.starts++
	n := t.starts
	onStart := t.onStart
	t.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return fmt.Errorf("node %s: start: %w", a.spec.Name, err)
	}
	spec := a.spec
	if err := os.MkdirAll(spec.DataDir, 0o755); err != nil {
		return fmt.Errorf("node %s: data dir: %w", spec.Name, err)
	}
	logPath := spec.logPath()
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return fmt.Errorf("node %s: log dir: %w", spec.Name, err)
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("node %s: log file: %w", spec.Name, err)
	}
	defer logFile.Close()
	var logFrom int64
	if fi, err := logFile.Stat(); err == nil {
		logFrom = fi.Size()
	}
	args := agentArgs(spec)
	if spec.ArgsFor != nil {
		more, err := spec.ArgsFor(version)
		if err != nil {
			return fmt.Errorf("node %s: arguments for consul %s: %w", spec.Name, version, err)
		}
		args = append(args, more...)
	}
	fmt.Fprintf(logFile, "==> transport/local: %s starting %s on consul %s: %s %s\n",
		time.Now().UTC().Format(time.RFC3339), spec.Name, version, binary, strings.Join(args, " "))
	if fi, err := logFile.Stat(); err == nil {
		logFrom = fi.Size() // quote only what the agent writes
	}

	// Not CommandContext: the agent must outlive the ctx of this call.
	cmd := exec.Command(binary, args...)
	cmd.Dir = spec.DataDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return &StartError{Node: spec.Name, Version: version, Binary: binary, ExitErr: err, LogPath: logPath}
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, version: version, binary: binary, logFrom: logFrom, done: make(chan struct{})}
	go func() {
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	a.mu.Lock()
	a.proc = p
	a.version = version
	a.binary = binary
	a.incarnation = strconv.FormatUint(n, 10) + "-" + strconv.Itoa(p.pid)
	a.mu.Unlock()
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed { // Close ran while we started; it may not have seen p
		killAndWait(context.Background(), spec.Name, p)
		return fmt.Errorf("node %s: transport closed during start", spec.Name)
	}
	if onStart != nil {
		onStart(spec.Name, p.pid)
	}
	return t.waitReady(ctx, a, p)
}

// agentArgs builds the agent's command line (after the binary).
func agentArgs(a Agent) []string {
	args := []string{"agent",
		"-node=" + a.Name,
		"-bind=" + a.Address,
		"-client=" + a.Address,
		"-data-dir=" + a.DataDir,
	}
	if a.Role == transport.RoleServer {
		args = append(args, "-server")
	}
	if a.ConfigDir != "" {
		args = append(args, "-config-dir="+a.ConfigDir)
	}
	if a.HTTPPort != 0 {
		args = append(args, "-http-port="+strconv.Itoa(a.HTTPPort))
	}
	return append(args, a.Args...)
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// agentSelf is the part of /v1/agent/self the transport reads.
type agentSelf struct {
	Config struct {
		Version           string
		VersionPrerelease string
		NodeName          string
	}
}

// askVersion asks the agent's HTTP API which version it runs.
func askVersion(ctx context.Context, httpAddr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/agent/self", nil)
	if err != nil {
		return "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /v1/agent/self: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var self agentSelf
	if err := json.Unmarshal(body, &self); err != nil {
		return "", fmt.Errorf("GET /v1/agent/self: decoding: %w", err)
	}
	return self.Config.Version, nil
}

// waitReady polls the agent until it reports p.version, the process exits,
// ctx ends or the start timeout passes.
func (t *Transport) waitReady(ctx context.Context, a *agent, p *proc) error {
	startTimeout, _ := t.timeouts()
	ctx, cancel := context.WithTimeoutCause(ctx, startTimeout,
		fmt.Errorf("start timeout %s passed (%w); raise it with SetStartTimeout", startTimeout, context.DeadlineExceeded))
	defer cancel()
	addr := a.spec.HTTPAddr()
	fail := func(exited bool, cause error, last string) error {
		e := &StartError{Node: a.spec.Name, Version: p.version, Binary: p.binary, Exited: exited, Cause: cause, LastAnswer: last, LogPath: a.spec.logPath()}
		if exited {
			e.ExitErr = p.exitErr
		}
		e.LogTail = tailFrom(e.LogPath, p.logFrom, logTailLines)
		return e
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		v, err := askVersion(ctx, addr)
		switch {
		case err == nil && v == p.version:
			return nil
		case err == nil:
			last = fmt.Sprintf("agent at %s reports version %q, want %q", addr, v, p.version)
		case ctx.Err() == nil || last == "":
			// A poll cut short by the start timeout is no answer: it
			// must not hide what the agent said before.
			last = err.Error()
		}
		select {
		case <-p.done:
			return fail(true, nil, last)
		case <-ctx.Done():
			// A process that died just now is reported as exited.
			select {
			case <-p.done:
				return fail(true, nil, last)
			default:
			}
			return fail(false, context.Cause(ctx), last)
		case <-tick.C:
		}
	}
}

// tailFrom returns the last n lines of the file written after offset from.
func tailFrom(path string, from int64, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const maxRead = 64 << 10
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	if size := fi.Size(); size-from > maxRead {
		from = size - maxRead
	}
	if from < 0 {
		from = 0
	}
	data, err := io.ReadAll(io.NewSectionReader(f, from, maxRead))
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// stop stops the node's process (if any) as mode says and waits for it to
// be gone. The caller holds the node's slot.
func (t *Transport) stop(ctx context.Context, a *agent, mode transport.StopMode) error {
	p := a.running()
	if p == nil {
		return nil
	}
	_, stopTimeout := t.timeouts()
	switch mode {
	case transport.StopKill:
		return killAndWait(ctx, a.spec.Name, p)
	case transport.StopTerminate:
		if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("node %s: SIGTERM to pid %d: %w", a.spec.Name, p.pid, err)
		}
		return waitOrKill(ctx, a.spec.Name, p, stopTimeout, "SIGTERM")
	case transport.StopLeave:
		leaveCtx, cancel := context.WithTimeout(ctx, stopTimeout)
		defer cancel()
		cmd := exec.CommandContext(leaveCtx, p.binary, "leave", "-http-addr="+a.spec.HTTPAddr())
		out, err := cmd.CombinedOutput()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("node %s: consul leave: %w", a.spec.Name, ctx.Err())
			}
			if !p.alive() {
				return nil // it left and exited while we asked
			}
			return fmt.Errorf("node %s: consul leave -http-addr=%s failed (%v): %s; the agent still runs; stop it with mode kill or terminate",
				a.spec.Name, a.spec.HTTPAddr(), err, bytes.TrimSpace(out))
		}
		return waitOrKill(ctx, a.spec.Name, p, stopTimeout, "consul leave")
	default:
		return fmt.Errorf("%w: node %s: stop mode %q is not %q, %q or %q", transport.ErrInvalidRequest, a.spec.Name, mode,
			transport.StopKill, transport.StopTerminate, transport.StopLeave)
	}
}

// waitOrKill waits for p to exit; after timeout it kills it. ctx ending
// returns an error and leaves the process as it is.
func waitOrKill(ctx context.Context, node string, p *proc, timeout time.Duration, after string) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node %s: waiting for pid %d to exit after %s: %w", node, p.pid, after, ctx.Err())
	case <-timer.C:
		return killAndWait(ctx, node, p)
	}
}

// killAndWait sends SIGKILL to the process group of p and waits until p has
// been reaped.
func killAndWait(ctx context.Context, node string, p *proc) error {
	// The agent leads its own process group (Setpgid), so -pid reaches
	// anything it started too.
	if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		if err2 := syscall.Kill(p.pid, syscall.SIGKILL); err2 != nil && !errors.Is(err2, syscall.ESRCH) {
			return fmt.Errorf("node %s: SIGKILL to pid %d: %w", node, p.pid, err2)
		}
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node %s: waiting for pid %d to exit after SIGKILL: %w", node, p.pid, ctx.Err())
	}
}
