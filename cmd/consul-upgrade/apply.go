package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	readprobe "github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
)

// Test hooks: the transport to use instead of the inventory's, and the
// operator's terminal.
var (
	testTransport   transport.Transport
	stdin           io.Reader = os.Stdin
	stdinIsTerminal           = func() bool { return isTerminal(os.Stdin) }
)

const applyHelp = `Carries out a saved plan (consul-upgrade plan -out FILE), one step at a time.

Before each step the live cluster is observed again: it must still be the
cluster the plan was reviewed on, changed only by the plan's own done steps
(no server missing or new, no version moved by hand, no leader change the
plan did not make, no lower failure tolerance), and the step it needs must be
the plan's next step not yet done; otherwise apply stops with exit code 3
before touching that step, naming each difference. On a terminal, apply asks before each step
(y: carry it out, n: stop here) unless -yes. Without a terminal, pass -yes
(every step) or -step (one step: running the command is the approval).
-step carries out exactly one step and exits 0; run it again for the next.

Snapshots are saved in -snapshot-dir; the run records each verified backup in
the KV store next to the upgrade lock, so a stepped or restarted apply does not
take the hop's backup again. The lock is held from before the first step to the end
of the command.

To watch a run from elsewhere, -metrics-addr serves its Prometheus metrics
(consul_upgrade_*: the run's state, steps done and planned, the step under way
and the gate condition it waits on, how long its gate has waited, nodes touched,
halts by type) at /metrics while it lasts, and -metrics-linger after it.
-probe-writes KEY writes KEY every -probe-interval through the agent apply talks
to and counts the writes the cluster did not take.
-probes runs read-only probes (a blocking catalog query, ?passing and a
blocking health query of -probe-services, catalog reads, ACL reads with a
token, ACL replication in a -dc secondary) through -http-addr and each -dc
before the run, after each step and after, and prints each result on stderr;
a probe that fails does not stop the run (it only reads; the gates judge each
step).
`

func runApply(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(stderr)
	planFile := fs.String("plan", "", "`FILE` saved by consul-upgrade plan -out (required)")
	conn := addConnectFlags(fs, true)
	invFile := fs.String("inventory", "", "`FILE` (JSON) naming the transport (ssh or exec) and its hosts or commands")
	kind := fs.String("transport", "", "override the inventory's transport: `ssh` or exec")
	knownHosts := fs.String("known-hosts", "", "comma-separated known_hosts `FILES` for ssh (added to the inventory's)")
	sshKey := fs.String("ssh-key", "", "private key `FILE` for ssh (instead of the inventory's)")
	sshAgent := fs.Bool("ssh-agent", false, "authenticate ssh through $SSH_AUTH_SOCK")
	yes := fs.Bool("yes", false, "do not ask before each step")
	step := fs.Bool("step", false, "carry out exactly one step, then exit 0")
	output := addOutputFlag(fs)
	snapDir := fs.String("snapshot-dir", "snapshots", "`DIR` for the verified snapshot before each hop (created if missing)")
	rollback := fs.Bool("rollback", false, "put a node whose swap or gate failed back on its old binary (the transport must support it)")
	gateTimeout := fs.Duration("gate-timeout", 0, "bound on each gate (default 5m)")
	stab := fs.Duration("stabilization", 0, "how long a swapped server must be seen healthy (default: autopilot's ServerStabilizationTime)")
	conc := fs.Int("client-concurrency", 0, "swaps in flight within a client wave (default: 10% of the wave, at least 1)")
	serverPort := fs.Int("server-http-port", 8500, "HTTP `PORT` of every server, for the gates of eras without autopilot health (0: none)")
	lockKey := fs.String("lock-key", "", "KV `KEY` of the upgrade lock (default "+upgrade.DefaultLockKey+")")
	features := addFeatureFlag(fs)
	watchF := addWatchFlags(fs) // metrics.go
	probeF := addProbeFlags(fs) // probes.go
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: consul-upgrade apply -plan FILE -inventory FILE [-http-addr ADDRESS[,ADDRESS...]] [-dc NAME=ADDRESS[,ADDRESS...]]... [-yes | -step] [-output text|json] [flags]\n\n%s\nFlags:\n", applyHelp)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n%s", exitCodesHelp)
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if err := checkOutput(*output); err != nil {
		return fail(stderr, "apply", err)
	}
	o := cmdOutput{name: "apply", stdout: stdout, stderr: stderr, json: *output == "json"}
	if *planFile == "" {
		return o.fail(usagef("-plan is required: the file saved by consul-upgrade plan -out FILE"))
	}
	if *conc < 0 || *serverPort < 0 || *serverPort > 65535 {
		return o.fail(usagef("-client-concurrency and -server-http-port must not be negative (-server-http-port at most 65535)"))
	}
	if err := watchF.check(); err != nil {
		return o.fail(err)
	}
	interactive := !*yes && stdinIsTerminal()
	if !*yes && !*step && !interactive {
		return o.fail(usagef("stdin is not a terminal, so apply cannot ask before each step; pass -yes to apply every step, or -step to apply one"))
	}
	fc, err := features.config()
	if err != nil {
		return o.fail(err)
	}
	plan, err := readPlan(*planFile)
	if err != nil {
		return o.fail(err)
	}
	tr := testTransport
	var inv *loadedInventory
	if tr == nil {
		if inv, err = loadTransport(*invFile, *kind, splitList(*knownHosts), *sshKey, *sshAgent); err != nil {
			return o.fail(err)
		}
	}
	watch, err := startWatch(watchF, stderr)
	if err != nil {
		return o.fail(err)
	}
	defer watch.end(ctx) // after the outcome is printed: the probe's figures, then -metrics-linger
	rep := newReporter(stdout, o.json, plan.Steps, *stab)
	cluster, err := conn.connect(ctx, rep.switched)
	if err != nil {
		return o.fail(err)
	}
	if err := cluster.checkPlan(ctx, plan, *planFile); err != nil {
		return o.fail(err)
	}
	if inv != nil { // an ssh fleet's hosts come from the catalog
		if tr, err = inv.transport(ctx, cluster); err != nil {
			return o.fail(err)
		}
	}
	if err := os.MkdirAll(*snapDir, 0o755); err != nil {
		return o.fail(usagef("-snapshot-dir: %v", err))
	}
	if *stab == 0 { // for the estimate: what each server swap's gate waits at least
		if b, err := upgrade.MeasureBaseline(ctx, cluster.consul); err == nil {
			rep.stab = b.ServerStabilizationTime
		}
	}

	probes, err := startProbes(ctx, probeF, conn.probeAddr(), conn.probeDCs(), cluster.consul, stderr)
	if err != nil {
		return o.fail(err)
	}

	var answers *bufio.Reader
	if interactive {
		answers = bufio.NewReader(stdin)
	}
	declined := false
	cfg := upgrade.Config{
		Consul:            cluster.consul,
		Datacenters:       cluster.others,
		Transport:         tr,
		Target:            plan.Target,
		Policy:            plan.Policy,
		Plan:              plan,
		Snapshot:          upgrade.SnapshotDir(*snapDir),
		OnEvent:           probes.onEvent(ctx, watch.onEvent(rep.event)),
		Rollback:          *rollback,
		GateTimeout:       *gateTimeout,
		StabilizationTime: *stab,
		ClientConcurrency: *conc,
		LockKey:           *lockKey,
		LockHolder:        lockHolder(),
		Features:          fc,
		BeforeStep: func(ctx context.Context, s upgrade.StepInfo) (upgrade.StepDecision, error) {
			rep.setIndex(s.Index)
			if !interactive {
				return upgrade.Approve, nil
			}
			rep.prompting(true) // elapsed times leave the time at the prompt out
			defer rep.prompting(false)
			fmt.Fprintf(stderr, "Step %d of %d: %s\n  why: %s\nCarry it out? [y/N] ", s.Index+1, s.Total, stepText(s.Step), s.Step.Reason)
			line, err := readAnswer(ctx, answers)
			if ctx.Err() != nil {
				fmt.Fprintln(stderr)
				return upgrade.Abort, ctx.Err()
			}
			if a := strings.ToLower(strings.TrimSpace(line)); a == "y" || a == "yes" {
				return upgrade.Approve, nil
			}
			if err != nil && line == "" {
				fmt.Fprintln(stderr)
			}
			declined = true
			return upgrade.StopHere, nil
		},
	}
	if *step {
		cfg.MaxSteps = 1
	}
	if *serverPort > 0 {
		cfg.ServerAPI = upgrade.ServerHTTP(*serverPort)
	}
	if err := watch.startProbe(ctx, watchF, cluster.consul); err != nil {
		return o.fail(err)
	}
	watch.ran = true
	probes.run(ctx, readprobe.PhaseBefore)
	res, err := upgrade.Run(ctx, cfg)
	if ctx.Err() == nil {
		probes.run(ctx, readprobe.PhaseAfter)
	}
	probes.summary()
	// What to run next, as it can be pasted: this apply again, with the
	// flags given (less -yes and -step), or plan again for a diverged
	// cluster.
	again := func(extra ...string) string {
		return commandLine(append(append([]string{"apply"}, givenFlags(fs, "yes", "step")...), extra...)...)
	}
	var pd *upgrade.PlanDivergedError
	var se *planner.StalePlanError
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "consul-upgrade apply: %v\n", err)
		var next []string
		if errors.As(err, &pd) || errors.As(err, &se) {
			line, whole := replanLine(plan, *planFile, flagsNamed(fs, connectionFlags...))
			next = append(next, "Plan again: "+line)
			if !whole {
				next = append(next, "(the plan's policy has settings no flag carries: add -policy FILE with it)")
			}
			next = append(next, "Review the new plan, then apply it: "+again("-step"))
		}
		return rep.ended(err, res, next)
	case declined:
		code := exitOK // the steps approved were carried out
		if len(res.Steps) == 0 {
			code = exitUsage // nothing was
		}
		at := len(plan.Steps) - len(res.Remaining) + 1
		why := fmt.Sprintf("Stopped before step %d of %d as you answered; nothing of it was touched. Run apply again to go on:", at, len(plan.Steps))
		fmt.Fprintf(stderr, "%s\n  %s\n", why, again())
		if o.json {
			rep.stopped(res, code, why, []string{again()})
		}
		return code
	case res.Stopped && len(res.Remaining) > 0:
		at := len(plan.Steps) - len(res.Remaining)
		rep.stopped(res, exitOK, fmt.Sprintf("Stepped: %d of %d step(s) done. Next: step %d of %d: %s. Run it with:", at, len(plan.Steps), at+1, len(plan.Steps), stepText(res.Remaining[0])),
			[]string{again("-step")})
		return exitOK
	}
	rep.finished(plan.Target, res)
	return exitOK
}

// readAnswer reads one line, or gives up when ctx ends (Ctrl-C at the
// prompt: signal.NotifyContext keeps the signal from killing the process).
func readAnswer(ctx context.Context, r *bufio.Reader) (string, error) {
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := r.ReadString('\n')
		ch <- answer{line, err}
	}()
	select {
	case a := <-ch:
		return a.line, a.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func lockHolder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("consul-upgrade apply on %s, pid %d", host, os.Getpid())
}

// durationText rounds for people.
func durationText(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
