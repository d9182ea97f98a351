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
	features := addFeatureFlag(fs)
	invFile := fs.String("inventory", "", "the inventory `FILE` apply will use: it is loaded now (a bad one is caught before the review) and the apply command printed after -out carries it")
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
	o := cmdOutput{name: "plan", stdout: stdout, stderr: stderr, json: *output == "json"}
	if *to == "" {
		return o.fail(usagef("-to is required: the Consul version to upgrade to, e.g. -to 1.13.9"))
	}
	if _, err := planner.ParseVersion(*to); err != nil {
		return o.fail(usagef("-to: %v", err))
	}
	pol, err := pf.policy()
	if err != nil {
		return o.fail(err)
	}
	fc, err := features.config()
	if err != nil {
		return o.fail(err)
	}
	var inv *loadedInventory
	if *invFile != "" && testTransport == nil {
		if inv, err = loadTransport(*invFile, "", nil, "", false); err != nil {
			return o.fail(err)
		}
	}

	var c planner.Cluster
	if *clusterFile != "" {
		if *conn.addr != "" || conn.given() {
			return o.fail(usagef("-cluster and -http-addr or -dc both given; plan from a file (which holds every datacenter it lists) or from a live cluster, not both"))
		}
		if err := readJSON(*clusterFile, &c); err != nil {
			return o.fail(usagef("-cluster %s: %v", *clusterFile, err))
		}
		if err := fc.Declare(&c.Features); err != nil {
			return o.fail(usagef("-feature: %v", err))
		}
	} else {
		cluster, err := conn.connect(ctx, noteSwitch(stderr, "plan"))
		if err != nil {
			return o.fail(err)
		}
		cluster.features = fc
		if inv != nil && inv.needsCluster() { // the fleet's hosts, from this catalog, now
			if _, err := inv.transport(ctx, cluster); err != nil {
				return o.fail(err)
			}
		}
		if c, err = cluster.discover(ctx); err != nil {
			return o.fail(fmt.Errorf("discover the cluster through %s: %w", conn.address(), err))
		}
		rec, rerr := upgrade.ReadSwapRecord(ctx, cluster.consul, *lockKey)
		c.UnfinishedSwap = rec.Unfinished() // the plan's basis records it
		if *output != "json" {
			noteUnfinishedSwap(stdout, rec, rerr) // first, before the plan
		} else if rerr != nil {
			fmt.Fprintf(stderr, "consul-upgrade plan: %v\n", rerr)
		}
	}

	p, err := planner.Plan(c, *to, pol)
	var refused *planner.RefusedError
	if err != nil && !errors.As(err, &refused) {
		return o.fail(err)
	}
	if *output == "json" {
		data, jerr := p.JSON()
		if jerr != nil {
			return o.fail(fmt.Errorf("encode the plan as JSON: %w", jerr))
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
			return o.fail(fmt.Errorf("encode the plan as JSON: %w", err))
		}
		if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
			return o.fail(fmt.Errorf("-out: %w", err))
		}
		// The apply command, as it can be pasted: the plan, the same
		// agents and declared features, the inventory.
		args := append([]string{"apply", "-plan", *out}, flagsNamed(fs, connectionFlags...)...)
		inv := *invFile
		if inv == "" {
			inv = "INVENTORY.json"
		}
		args = append(args, "-inventory", inv, "-step")
		fmt.Fprintf(stderr, "Saved the plan (%d step(s)) to %s. Review it, then apply it one step at a time:\n  %s\n", len(p.Steps), *out, commandLine(args...))
		if *invFile == "" {
			fmt.Fprintf(stderr, "  (INVENTORY.json: the file naming the transport and the hosts, see consul-upgrade apply -h; give plan -inventory FILE and this line names it)\n")
		}
	}
	return exitOK
}
