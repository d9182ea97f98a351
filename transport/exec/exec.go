// Package exec is a transport.Transport that swaps nodes by running the
// user's own commands — an Ansible playbook, a Salt state, systemd over
// some in-house tool — given as argv templates.
//
// Each command is an argv (text/template per element, over Vars):
//
//	exec.Config{
//		Swap:    []string{"ansible-playbook", "-l", "{{.Node}}", "upgrade.yml", "-e", "consul_version={{.To}}"},
//		Version: []string{"ssh", "{{.Node}}", "consul", "version"},
//	}
//
// argv[0] is run directly (os/exec), never through a shell: a rendered
// value is one argument whatever it holds. Name a shell yourself
// ("sh", "-c", "...", "{{.Node}}") if you want one, and pass values as its
// positional parameters. The request is validated (transport.ValidateRequest)
// before anything runs, and the values also reach the command as
// environment variables CONSUL_UPGRADE_NODE, _ROLE, _FROM, _TO, _STOP_MODE
// and _ARTIFACT.
//
// Each command runs in its own process group under Config.Timeout; when the
// timeout passes or ctx ends the whole group is killed. Its combined output
// is kept (bounded) and carried by the *CommandError of a failed command.
package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"regexp"
	"strings"
	"sync"

	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/internal/argv"
)

// PhaseCommand is the phase of a *transport.SwapError raised by the user's
// swap command itself (which stops, installs and starts as it sees fit):
// the node may or may not have been stopped. A swap command that succeeds
// is reported to SwapRequest.Progress as PhaseStop then PhaseStart.
const PhaseCommand transport.Phase = "command"

// Defaults for a Config's zero fields.
const (
	DefaultTimeout     = 10 * time.Minute
	DefaultOutputLimit = 64 << 10
)

// Config is what a Transport runs.
type Config struct {
	// Swap moves one node to {{.To}}. Required. It should return once the
	// agent on the new version has been started.
	Swap []string
	// Rollback puts {{.Node}} back on its previous binary. Optional; without
	// it Rollback fails, and CanRollback says so, so that a run asking for
	// rollbacks is refused before it starts.
	Rollback []string
	// Version prints the version of {{.Node}}'s running agent, as
	// "Consul vX.Y.Z" or bare X.Y.Z, and exits non-zero when it cannot:
	// exit 3 (NotRunningExit, the LSB status code for "program is not
	// running", as `systemctl is-active` answers for a stopped unit) says
	// the host has no agent running; any other code says only that the
	// version could not be read. Optional; with it Swap skips a node that
	// already runs the target and checks the version after the swap, and
	// RunningVersion works. A run asks it before a server is stopped
	// whether the other voters still run: serf and autopilot see a killed
	// server alive for seconds, and exit 3 is what tells the run it is not
	// (upgrade.QuorumError.NotRunning).
	Version []string
	// Check, if set, tells whether {{.Node}} can get the binary of
	// {{.To}} (the pre-flight check a run makes before anything is
	// stopped, see transport.ArtifactChecker): exit 0 means it can; any
	// other exit means it cannot, and the command's output should say why.
	// It must touch nothing. {{.Role}}, and with Mirror {{.URL}} and
	// {{.SHA256}}, are set too. Optional; without it CheckArtifact reports
	// that it cannot check (transport.ErrNotChecked), and a run says the
	// binaries were not verified.
	Check []string
	// Mirror, if set, tells where each version's binary can be fetched
	// from: its URL and SHA-256 reach every template as {{.URL}} and
	// {{.SHA256}} and the commands' environment as CONSUL_UPGRADE_URL and
	// CONSUL_UPGRADE_SHA256, so a playbook can have each host download the
	// binary itself instead of copying it from here.
	Mirror transport.Mirror
	// Fetch, if set, runs before Swap and has the node's host fetch and
	// verify the binary: transport.FetchCommand("{{.URL}}", "{{.SHA256}}",
	// DEST) where the command runs on the host itself, or the same argv
	// behind the tool that reaches the host (quoted for the remote shell if
	// that tool joins its arguments into one command line, as ssh does).
	// The Swap command then installs DEST. When it exits
	// with one of FetchScript's statuses the swap fails with a
	// *transport.FetchError (no downloader, failed download, checksum
	// mismatch) and the Swap command is not run. Needs Mirror.
	Fetch []string
	// Nodes, if not nil, lists the nodes this transport may touch; any
	// other node is refused with transport.ErrUnknownNode.
	Nodes []string
	// Env is added to this process's environment ("KEY=value").
	Env []string
	// Dir is the working directory ("" is this process's).
	Dir string
	// Timeout bounds each command (default DefaultTimeout).
	Timeout time.Duration
	// OutputLimit bounds the output kept per command, in bytes (default
	// DefaultOutputLimit); the last bytes are kept.
	OutputLimit int
}

// Vars are the values a command template can use. Rollback and Version
// templates only get Node.
type Vars struct {
	Node     string
	Role     transport.Role
	From     string
	To       string
	StopMode transport.StopMode
	Artifact string
	URL      string // from Config.Mirror ("" without one)
	SHA256   string // from Config.Mirror ("" without one)
}

// CommandError reports a command that failed, timed out or was cut by the
// end of ctx. Err is an exit status, or wraps context.DeadlineExceeded or
// context.Canceled.
type CommandError struct {
	Node   string
	Step   string   // swap, rollback, version
	Argv   []string // as run
	Exit   int      // -1 when the command did not exit by itself
	Output string   // the last OutputLimit bytes of stdout and stderr
	Err    error

	stdout string // stdout alone, for the fetch step
}

func (e *CommandError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: %s command %q", e.Node, e.Step, e.Argv)
	if e.Exit >= 0 {
		fmt.Fprintf(&b, " exited %d", e.Exit)
	} else {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if out := strings.TrimSpace(e.Output); out != "" {
		fmt.Fprintf(&b, "; output: %s", out)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *CommandError) Unwrap() error { return e.Err }

// Transport runs the configured commands. It implements
// transport.Transport, transport.Rollbacker (with transport.RollbackChecker:
// only with a Rollback command), transport.VersionReporter and
// transport.ArtifactChecker (only with a Check command), and is safe for
// concurrent use.
type Transport struct {
	cfg                                     Config
	swap, rollback, versionTp, fetch, check argv.Command
	nodes                                   map[string]bool
}

var (
	_ transport.Transport       = (*Transport)(nil)
	_ transport.Rollbacker      = (*Transport)(nil)
	_ transport.VersionReporter = (*Transport)(nil)
	_ transport.ArtifactChecker = (*Transport)(nil)
	_ transport.RollbackChecker = (*Transport)(nil)
)

// New checks cfg (templates parse and render, node names are valid) and
// returns a Transport.
func New(cfg Config) (*Transport, error) {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	t := &Transport{cfg: cfg}
	parse := func(field string, args []string, required bool) argv.Command {
		if len(args) == 0 {
			if required {
				add("%s is empty; give the command as argv, e.g. [\"ansible-playbook\", \"-l\", \"{{.Node}}\", \"upgrade.yml\"]", field)
			}
			return nil
		}
		cmd, bad := argv.Parse(field, args)
		problems = append(problems, bad...)
		return cmd
	}
	t.swap = parse("Swap", cfg.Swap, true)
	t.rollback = parse("Rollback", cfg.Rollback, false)
	t.versionTp = parse("Version", cfg.Version, false)
	t.fetch = parse("Fetch", cfg.Fetch, false)
	t.check = parse("Check", cfg.Check, false)
	if t.fetch != nil && cfg.Mirror == nil {
		add("Fetch is set but Mirror is nil; give Mirror (e.g. transport.Mirrors(table)) so the command knows {{.URL}} and {{.SHA256}}")
	}
	if cfg.Timeout < 0 {
		add("Timeout is %v; give a positive duration or 0 for %v", cfg.Timeout, DefaultTimeout)
	}
	if cfg.OutputLimit < 0 {
		add("OutputLimit is %d; give a positive size or 0 for %d", cfg.OutputLimit, DefaultOutputLimit)
	}
	for _, kv := range cfg.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			add("Env entry %q is not KEY=value", kv)
		}
	}
	if cfg.Nodes != nil {
		t.nodes = map[string]bool{}
		for _, n := range cfg.Nodes {
			if err := transport.ValidateNode(n); err != nil {
				add("Nodes: %v", err)
			}
			t.nodes[n] = true
		}
	}
	if len(problems) == 0 {
		sample := Vars{Node: "node-1", Role: transport.RoleServer, From: "1.0.0", To: "1.0.1", StopMode: transport.StopKill, URL: "https://mirror.example/consul", SHA256: strings.Repeat("0", 64)}
		for _, cmd := range []argv.Command{t.swap, t.rollback, t.versionTp, t.fetch, t.check} {
			if _, err := cmd.Render(sample); err != nil {
				add("%v", err)
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("exec transport: %s", strings.Join(problems, "; "))
	}
	if t.cfg.Timeout == 0 {
		t.cfg.Timeout = DefaultTimeout
	}
	if t.cfg.OutputLimit == 0 {
		t.cfg.OutputLimit = DefaultOutputLimit
	}
	return t, nil
}

func (t *Transport) known(node string) bool { return t.nodes == nil || t.nodes[node] }

// Swap validates req, and runs the Swap command (skipping it when the
// Version command reports that the node already runs req.To), then checks
// the version if a Version command is configured.
func (t *Transport) Swap(ctx context.Context, req transport.SwapRequest) error {
	if err := transport.ValidateRequest(req); err != nil {
		return err
	}
	fail := func(phase transport.Phase, err error) error {
		return &transport.SwapError{Node: req.Node, Phase: phase, To: req.To, Err: err}
	}
	if !t.known(req.Node) {
		return fail(transport.PhaseValidate, fmt.Errorf("%w: node %s is not in the transport's Nodes; add it", transport.ErrUnknownNode, req.Node))
	}
	if err := ctx.Err(); err != nil {
		return fail(transport.PhaseValidate, err)
	}
	v := Vars{Node: req.Node, Role: req.Role, From: req.From, To: req.To, StopMode: req.StopMode, Artifact: req.Artifact}
	if t.versionTp != nil {
		if cur, err := t.runningVersion(ctx, v); err == nil && planner.SameVersion(cur, req.To) {
			return nil
		} else if ctx.Err() != nil {
			return fail(transport.PhaseVerify, ctx.Err())
		}
	}
	var fetch transport.Fetch
	if t.cfg.Mirror != nil {
		f, err := t.cfg.Mirror(ctx, req.To)
		if err != nil {
			return fail(transport.PhaseStage, fmt.Errorf("%w: mirror for consul %s: %w", transport.ErrArtifact, req.To, err))
		}
		if err := f.Validate(); err != nil {
			return fail(transport.PhaseStage, fmt.Errorf("the mirror's entry for consul %s: %w", req.To, err))
		}
		fetch, v.URL, v.SHA256 = f, f.URL, f.SHA256
	}
	if t.fetch != nil {
		argv, err := t.fetch.Render(v)
		if err != nil {
			return fail(transport.PhaseStage, err)
		}
		if _, err := t.run(ctx, "fetch", v, argv); err != nil {
			var ce *CommandError
			if errors.As(err, &ce) && ce.Exit > 0 {
				if known, ferr := transport.FetchResult(req.Node, req.To, fetch, ce.Exit, ce.stdout, ce.Output); known {
					return fail(transport.PhaseStage, ferr)
				}
			}
			return fail(transport.PhaseStage, err)
		}
	}
	argv, err := t.swap.Render(v)
	if err != nil {
		return fail(PhaseCommand, err)
	}
	if _, err := t.run(ctx, "swap", v, argv); err != nil {
		return fail(PhaseCommand, err)
	}
	// One command stopped and started the node: both are reported once it
	// succeeded (a failed command may have stopped it; see PhaseCommand).
	req.Report(transport.PhaseStop)
	req.Report(transport.PhaseStart)
	if t.versionTp != nil {
		cur, err := t.runningVersion(ctx, v)
		if err != nil {
			return fail(transport.PhaseVerify, fmt.Errorf("%w: after the swap: %w", transport.ErrNotRunning, err))
		}
		if !planner.SameVersion(cur, req.To) {
			return fail(transport.PhaseVerify, fmt.Errorf("%w: node %s reports %s after the swap command succeeded, want %s; check the Swap command", transport.ErrNotRunning, req.Node, cur, req.To))
		}
	}
	return nil
}

// Rollback runs the Rollback command for node.
func (t *Transport) Rollback(ctx context.Context, node string) error {
	fail := func(phase transport.Phase, err error) error {
		return &transport.SwapError{Node: node, Phase: phase, Err: err}
	}
	if err := transport.ValidateNode(node); err != nil {
		return fail(transport.PhaseValidate, err)
	}
	if !t.known(node) {
		return fail(transport.PhaseValidate, fmt.Errorf("%w: node %s is not in the transport's Nodes; add it", transport.ErrUnknownNode, node))
	}
	if t.rollback == nil {
		return fail(transport.PhaseRollback, errors.New("no Rollback command configured; set Config.Rollback"))
	}
	v := Vars{Node: node}
	argv, err := t.rollback.Render(v)
	if err != nil {
		return fail(transport.PhaseRollback, err)
	}
	if _, err := t.run(ctx, "rollback", v, argv); err != nil {
		return fail(transport.PhaseRollback, err)
	}
	return nil
}

// RunningVersion runs the Version command for node.
func (t *Transport) RunningVersion(ctx context.Context, node string) (string, error) {
	if err := transport.ValidateNode(node); err != nil {
		return "", &transport.SwapError{Node: node, Phase: transport.PhaseValidate, Err: err}
	}
	if !t.known(node) {
		return "", &transport.SwapError{Node: node, Phase: transport.PhaseValidate, Err: fmt.Errorf("%w: node %s is not in the transport's Nodes; add it", transport.ErrUnknownNode, node)}
	}
	if t.versionTp == nil {
		return "", &transport.SwapError{Node: node, Phase: transport.PhaseVerify, Err: errors.New("no Version command configured; set Config.Version")}
	}
	ver, err := t.runningVersion(ctx, Vars{Node: node})
	if err != nil {
		return "", &transport.SwapError{Node: node, Phase: transport.PhaseVerify, Err: err}
	}
	return ver, nil
}

// NotRunningExit is the exit code by which the Version command says that
// the node has no agent running (the LSB status code for "program is not
// running"): RunningVersion's error then wraps transport.ErrNotRunning.
const NotRunningExit = 3

func (t *Transport) runningVersion(ctx context.Context, v Vars) (string, error) {
	argv, err := t.versionTp.Render(Vars{Node: v.Node})
	if err != nil {
		return "", err
	}
	out, err := t.run(ctx, "version", v, argv)
	if ce := (*CommandError)(nil); errors.As(err, &ce) && ce.Exit == NotRunningExit {
		return "", fmt.Errorf("%w: node %s: the version command exited %d (no agent running): %w", transport.ErrNotRunning, v.Node, NotRunningExit, err)
	}
	if err != nil {
		return "", err
	}
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("node %s: version command %q printed %q, which holds no \"Consul vX.Y.Z\" line; fix the Version command", v.Node, argv, firstLine(out))
	}
	return m[1], nil
}

var versionRE = regexp.MustCompile(`(?m)^\s*(?:Consul v)?([0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.+-]+)?)\s*$`)

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// run runs argv in its own process group, bounded by the timeout and ctx,
// and returns its stdout. A failure is a *CommandError carrying the tail of
// its combined output.
func (t *Transport) run(ctx context.Context, step string, v Vars, argv []string) (string, error) {
	cerr := func(exit int, out string, err error) error {
		return &CommandError{Node: v.Node, Step: step, Argv: argv, Exit: exit, Output: out, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return "", cerr(-1, "", err)
	}
	cctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	cmd := osexec.CommandContext(cctx, argv[0], argv[1:]...)
	inGroup(cmd)
	cmd.WaitDelay = 2 * time.Second
	cmd.Dir = t.cfg.Dir
	cmd.Env = append(os.Environ(), t.cfg.Env...)
	cmd.Env = append(cmd.Env,
		"CONSUL_UPGRADE_NODE="+v.Node, "CONSUL_UPGRADE_ROLE="+string(v.Role),
		"CONSUL_UPGRADE_FROM="+v.From, "CONSUL_UPGRADE_TO="+v.To,
		"CONSUL_UPGRADE_STOP_MODE="+string(v.StopMode), "CONSUL_UPGRADE_ARTIFACT="+v.Artifact,
		"CONSUL_UPGRADE_URL="+v.URL, "CONSUL_UPGRADE_SHA256="+v.SHA256)
	stdout := &tail{limit: t.cfg.OutputLimit}
	combined := &tail{limit: t.cfg.OutputLimit}
	if step == "version" || step == "fetch" {
		// Parsed: stdout alone (two pipes, so the interleaving in
		// combined is approximate; it only serves the error text).
		cmd.Stdout = multi{stdout, combined}
	} else {
		// One writer for both: os/exec then uses one pipe, so combined
		// keeps the order the command wrote in and its tail ends with
		// the last thing it said.
		cmd.Stdout = combined
	}
	cmd.Stderr = combined
	err := cmd.Run()
	if cctx.Err() != nil {
		cause := cctx.Err()
		if ctx.Err() == nil && errors.Is(cause, context.DeadlineExceeded) {
			cause = fmt.Errorf("killed after %v (the command timeout) with its process group: %w", t.cfg.Timeout, cause)
		}
		return "", cerr(-1, combined.String(), cause)
	}
	if err != nil {
		var ee *osexec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			return "", &CommandError{Node: v.Node, Step: step, Argv: argv, Exit: ee.ExitCode(), Output: combined.String(), Err: err, stdout: stdout.String()}
		}
		return "", cerr(-1, combined.String(), err)
	}
	return stdout.String(), nil
}

// tail keeps the last limit bytes written to it.
type tail struct {
	mu    sync.Mutex
	limit int
	b     []byte
	cut   bool
}

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if over := len(w.b) - w.limit; over > 0 {
		w.b = append(w.b[:0], w.b[over:]...)
		w.cut = true
	}
	return len(p), nil
}

func (w *tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cut {
		return "..." + string(w.b)
	}
	return string(w.b)
}

type multi []*tail

func (m multi) Write(p []byte) (int, error) {
	for _, w := range m {
		_, _ = w.Write(p)
	}
	return len(p), nil
}
