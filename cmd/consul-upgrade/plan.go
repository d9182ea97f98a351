package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clusterFile := fs.String("cluster", "", "`FILE` with a planner.Cluster as JSON (as examples/plan reads); without it the cluster is discovered live through -http-addr")
	conn := addConnectFlags(fs, true)
	to := fs.String("to", "", "target `VERSION`, e.g. 1.13.9 (required)")
	pf := addPolicyFlags(fs)
	output := addOutputFlag(fs)
	out := fs.String("out", "", "save the plan to `FILE` (JSON), for consul-upgrade apply -plan FILE")
	lockKey := fs.String("lock-key", upgrade.DefaultLockKey, "KV `KEY` of the upgrade lock, next to which a dead run's unfinished swap is recorded")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: consul-upgrade plan -to VERSION [-cluster FILE | -http-addr ADDRESS[,ADDRESS...] [-dc NAME=ADDRESS[,ADDRESS...]]...] [policy flags] [-output text|json] [-out FILE]\n\n")
		fmt.Fprintf(stderr, "Prints the findings and the upgrade plan; touches nothing. With -out, saves the plan\nfor review and for consul-upgrade apply.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n%s", exitCodesHelp)
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if err := checkOutput(*output); err != nil {
		return fail(stderr, "plan", err)
	}
	if *to == "" {
		return fail(stderr, "plan", usagef("-to is required: the Consul version to upgrade to, e.g. -to 1.13.9"))
	}
	if _, err := planner.ParseVersion(*to); err != nil {
		return fail(stderr, "plan", usagef("-to: %v", err))
	}
	pol, err := pf.policy()
	if err != nil {
		return fail(stderr, "plan", err)
	}

	var c planner.Cluster
	if *clusterFile != "" {
		if *conn.addr != "" || conn.given() {
			return fail(stderr, "plan", usagef("-cluster and -http-addr or -dc both given; plan from a file (which holds every datacenter it lists) or from a live cluster, not both"))
		}
		if err := readJSON(*clusterFile, &c); err != nil {
			return fail(stderr, "plan", usagef("-cluster %s: %v", *clusterFile, err))
		}
	} else {
		cluster, err := conn.connect(ctx, noteSwitch(stderr, "plan"))
		if err != nil {
			return fail(stderr, "plan", err)
		}
		if c, err = cluster.discover(ctx); err != nil {
			return fail(stderr, "plan", fmt.Errorf("discover the cluster through %s: %w", conn.address(), err))
		}
		rec, rerr := upgrade.ReadSwapRecord(ctx, cluster.consul, *lockKey)
		c.UnfinishedSwap = rec.Unfinished() // the plan's basis records it
		if *output != "json" {
			noteUnfinishedSwap(stdout, rec, rerr, *lockKey) // first, before the plan
		} else if rerr != nil {
			fmt.Fprintf(stderr, "consul-upgrade plan: %v\n", rerr)
		}
	}

	p, err := planner.Plan(c, *to, pol)
	var refused *planner.RefusedError
	if err != nil && !errors.As(err, &refused) {
		return fail(stderr, "plan", err)
	}
	if *output == "json" {
		data, jerr := p.JSON()
		if jerr != nil {
			return fail(stderr, "plan", fmt.Errorf("encode the plan as JSON: %w", jerr))
		}
		stdout.Write(append(data, '\n'))
	} else {
		fmt.Fprint(stdout, p)
	}
	if refused != nil {
		fmt.Fprintf(stderr, "consul-upgrade plan: refused: %v\n", refused)
		if *out != "" {
			fmt.Fprintf(stderr, "consul-upgrade plan: %s not written: a refused plan cannot be applied\n", *out)
		}
		return exitUsage
	}
	if *out != "" {
		data, err := p.JSON()
		if err != nil {
			return fail(stderr, "plan", fmt.Errorf("encode the plan as JSON: %w", err))
		}
		if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
			return fail(stderr, "plan", fmt.Errorf("-out: %w", err))
		}
		fmt.Fprintf(stderr, "Saved the plan (%d step(s)) to %s. Review it, then: consul-upgrade apply -plan %s\n", len(p.Steps), *out, *out)
	}
	return exitOK
}
