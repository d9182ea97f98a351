package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/rehearsal"
)

func init() {
	commands["rehearse"] = command{
		summary: "run the upgrade on a loopback replica of the cluster under recorded traffic, and write a report",
		run:     runRehearse,
	}
}

func runRehearse(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rehearse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	planFile := fs.String("plan", "", "`FILE` with a plan saved by consul-upgrade plan -out: its target and policy are rehearsed, on the shape its steps show (or -cluster's, which also holds the clients a plan leaves behind)")
	clusterFile := fs.String("cluster", "", "`FILE` with a planner.Cluster as JSON (with -to); without -plan or -cluster the cluster is discovered live through -http-addr")
	conn := addConnectFlags(fs, false)
	to := fs.String("to", "", "target `VERSION` (with -cluster or -http-addr)")
	policyFile := fs.String("policy", "", "`FILE` with a planner.Policy as JSON (with -cluster or -http-addr; a plan carries its own)")
	clients := fs.Int("clients", rehearsal.DefaultClients, fmt.Sprintf("number of client agents in the replica, at most %d and never more than the cluster has (0: none)", rehearsal.MaxClients))
	out := fs.String("out", "", "`DIR` that receives report.md and timeline.svg (required)")
	binDir := fs.String("bin-dir", rehearsal.DefaultBinDir(), "`DIR` with consul-<version> binaries, as scripts/build-consul.sh writes them")
	rate := fs.Float64("rate", rehearsal.DefaultRate, "recorded KV traffic, operations per second")
	timeout := fs.Duration("timeout", rehearsal.DefaultTimeout, "bound on the whole rehearsal")
	withData := fs.Bool("with-data", false, "rehearse on the cluster's own data: take a backup of the live cluster (-http-addr; a snapshot from 0.7.1, a logical backup below; only read), restore it into the replica before the upgrade, and read every KV entry and service back after it (the report's data row)")
	probeServices := fs.String("probe-services", "consul", "comma-separated `SERVICES` whose ?passing health query is probed before, after each step and after (the report's probe table)")
	snapshotFile := fs.String("snapshot", "", "`FILE` with a backup to restore instead of taking one (implies -with-data): a `consul snapshot save` file or a logical backup; verified before anything starts")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: consul-upgrade rehearse (-plan FILE [-cluster FILE] | -cluster FILE -to VERSION | -http-addr ADDRESS[,ADDRESS...] -to VERSION) -out DIR [-clients N] [-policy FILE] [-bin-dir DIR] [-with-data | -snapshot FILE]\n\n")
		fmt.Fprintf(stderr, "Starts a replica of one datacenter on loopback addresses (the same servers on the same\nversions, a few clients), runs the upgrade with the same target and policy under recorded\nKV traffic, checks the history for linearizability and writes report.md and timeline.svg\ninto DIR. Every agent it starts is stopped when it ends, Ctrl-C included. Touches nothing\nin the real cluster (with -http-addr it only reads the cluster's shape, and with -with-data\nits backup, kept in a folder only you can read and removed at the end).\n\nExit codes: 0 the upgrade completed with a linearizable history and no lost write (and,\nwith data, every entry read back equal); 1 it halted, or the report shows lost writes, a\nhistory that is not linearizable or data not read back equal; 2 bad flags, a refused plan,\na missing binary (the message names the build command) or a -snapshot file that does not\nverify.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *out == "" {
		return fail(stderr, "rehearse", usagef("-out is required: the folder that receives report.md and timeline.svg"))
	}
	if *clients < 0 {
		return fail(stderr, "rehearse", usagef("-clients %d is negative; give 0 for none or a small number", *clients))
	}
	if *withData && *snapshotFile == "" && (*planFile != "" || *clusterFile != "") {
		return fail(stderr, "rehearse", usagef("-with-data takes its backup from the live cluster: give -http-addr with -to instead of -plan or -cluster, or a backup file with -snapshot"))
	}
	opt := rehearsal.Options{OutDir: *out, BinDir: *binDir, Rate: *rate, Timeout: *timeout, Clients: *clients, WithData: *withData, Snapshot: *snapshotFile, ProbeServices: splitList(*probeServices)}
	if *clients == 0 {
		opt.Clients = -1 // the option's 0 means the default
	}
	switch {
	case *planFile != "":
		if *to != "" || *policyFile != "" || *conn.addr != "" {
			return fail(stderr, "rehearse", usagef("-plan carries its target and policy; leave out -to, -policy and -http-addr"))
		}
		p, err := readPlan(*planFile)
		if err != nil {
			return fail(stderr, "rehearse", err)
		}
		opt.Plan = p
		if *clusterFile != "" {
			// The plan's steps name only the clients it upgrades; the
			// cluster file gives the whole shape (clients left behind
			// included).
			var c planner.Cluster
			if err := readJSON(*clusterFile, &c); err != nil {
				return fail(stderr, "rehearse", usagef("-cluster %s: %v", *clusterFile, err))
			}
			opt.Cluster = &c
		}
	default:
		if *to == "" {
			return fail(stderr, "rehearse", usagef("-to is required with -cluster or -http-addr (or give -plan FILE)"))
		}
		if _, err := planner.ParseVersion(*to); err != nil {
			return fail(stderr, "rehearse", usagef("-to: %v", err))
		}
		var c planner.Cluster
		if *clusterFile != "" {
			if *conn.addr != "" {
				return fail(stderr, "rehearse", usagef("-cluster and -http-addr both given; read the shape from a file or from a live cluster, not both"))
			}
			if err := readJSON(*clusterFile, &c); err != nil {
				return fail(stderr, "rehearse", usagef("-cluster %s: %v", *clusterFile, err))
			}
		} else {
			cluster, err := conn.connect(ctx, func(s agentSwitch) { fmt.Fprintln(stdout, s.text()) })
			if err != nil {
				return fail(stderr, "rehearse", err)
			}
			if c, err = cluster.discover(ctx); err != nil {
				return fail(stderr, "rehearse", fmt.Errorf("discover the cluster through %s: %w", conn.address(), err))
			}
			opt.Source = cluster.consul
		}
		if *policyFile != "" {
			if err := readJSON(*policyFile, &opt.Policy); err != nil {
				return fail(stderr, "rehearse", usagef("-policy %s: %v", *policyFile, err))
			}
		}
		opt.Cluster, opt.Target = &c, *to
	}
	if opt.WithData || opt.Snapshot != "" {
		token, err := aclToken(opt)
		if err != nil {
			return fail(stderr, "rehearse", err)
		}
		opt.Token = token
	}
	opt.Logf = func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	opt.OnEvent = func(e upgrade.Event) { printRehearsalEvent(stdout, e) }

	rep, err := rehearsal.Run(ctx, opt)
	var oe *rehearsal.OptionsError
	var me *rehearsal.MissingBinaryError
	var se *rehearsal.SnapshotFileError
	if errors.As(err, &oe) || errors.As(err, &me) || errors.As(err, &se) {
		return fail(stderr, "rehearse", usagef("%v", err))
	}
	if rep == nil {
		return fail(stderr, "rehearse", err)
	}
	fmt.Fprintf(stdout, "\n%s\n", rehearsalSummary(rep))
	for _, f := range rep.Files {
		fmt.Fprintf(stdout, "wrote %s\n", f)
	}
	if err != nil {
		return fail(stderr, "rehearse", err)
	}
	if rep.Data != nil && !rep.Data.Equal() {
		fmt.Fprintf(stderr, "consul-upgrade rehearse: the upgrade completed, but the data was not read back equal (%d difference(s)); see the data row in %s\n", len(rep.Data.Differences), *out)
		return exitHalted
	}
	if !rep.Linearizable() || len(rep.Traffic.Lost) > 0 {
		fmt.Fprintf(stderr, "consul-upgrade rehearse: the upgrade completed, but the recorded history is %s with %d lost write(s); see %s\n",
			rep.Verdict(), len(rep.Traffic.Lost), *out)
		return exitHalted
	}
	return exitOK
}

func rehearsalSummary(rep *rehearsal.Report) string {
	status := "done"
	if !rep.Done {
		status = "not done"
	}
	data := ""
	if rep.Data != nil {
		data = "\ndata: " + rep.Data.Row()
	}
	return fmt.Sprintf("rehearsal %s in %s: %d step(s); %d operations, %d indeterminate, %d not sent; %d of %d acknowledged writes lost; %d election(s); %s",
		status, rep.Wall.Round(100*time.Millisecond), len(rep.Steps), rep.Traffic.Ops, rep.Traffic.Indeterminate, rep.Traffic.NotSent,
		len(rep.Traffic.Lost), rep.Traffic.Acked, rep.Elections(), rep.Verdict()) + data
}

func printRehearsalEvent(w io.Writer, e upgrade.Event) {
	switch e.Kind {
	case upgrade.EventStepStarted, upgrade.EventStepDone, upgrade.EventHalted, upgrade.EventDone:
	default:
		return
	}
	node := e.Step.Node
	if len(e.Step.Nodes) > 0 {
		node = strings.Join(e.Step.Nodes, ",")
	}
	msg := e.Detail
	if e.Err != nil {
		msg = e.Err.Error()
	}
	fmt.Fprintf(w, "%s  %-12s %-15s %-10s %s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Step.Kind, node, msg)
}

// aclToken is the token a rehearsal with data reads the restored ACLs
// with: on a cluster with ACLs on whose servers all run 1.4 or later,
// the operator's CONSUL_HTTP_TOKEN (or CONSUL_HTTP_TOKEN_FILE's), which
// must be a management token (the snapshot needs one too); "" otherwise.
func aclToken(opt rehearsal.Options) (string, error) {
	c := opt.Cluster
	if c == nil || !c.Features.ACLs {
		return "", nil
	}
	for _, s := range c.Servers {
		v, err := planner.ParseVersion(s.Version)
		if err != nil || v.Segments()[0] < 1 || v.Segments()[0] == 1 && v.Segments()[1] < 4 {
			return "", nil // legacy ACLs: not compared
		}
	}
	token := os.Getenv("CONSUL_HTTP_TOKEN")
	if f := os.Getenv("CONSUL_HTTP_TOKEN_FILE"); token == "" && f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", usagef("CONSUL_HTTP_TOKEN_FILE: %v", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return "", usagef("the cluster has ACLs on: set CONSUL_HTTP_TOKEN to a management token for -with-data (the snapshot needs one, and the replica reads the restored ACL tokens and policies with it)")
	}
	return token, nil
}
