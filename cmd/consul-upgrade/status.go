package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// statusReport is what status prints (-output json marshals it).
type statusReport struct {
	Lock     *upgrade.LockHolder   `json:"lock"` // nil: free
	LockKey  string                `json:"lock_key"`
	Servers  []planner.Server      `json:"servers"`
	Clients  map[string]int        `json:"clients_by_version,omitempty"`
	Target   string                `json:"target,omitempty"`
	Steps    int                   `json:"steps,omitempty"`
	Done     int                   `json:"done"`
	Next     *planner.Step         `json:"next,omitempty"`
	Diverged string                `json:"diverged,omitempty"`
	Backup   *upgrade.BackupRecord `json:"backup,omitempty"`
	// Swap is the swap record of a run that died or halted while it
	// swapped a server; the next run finishes that swap first.
	Swap *upgrade.SwapRecord `json:"swap,omitempty"`
	// Stale is set when the cluster is no longer the one the plan was
	// reviewed on (planner.StalePlanError); StaleDiffs lists how.
	Stale      string              `json:"stale,omitempty"`
	StaleDiffs []planner.BasisDiff `json:"stale_diffs,omitempty"`
}

// readLock reads the holder of the upgrade lock (nil: free).
func readLock(ctx context.Context, c upgrade.Consul, key string) (*upgrade.LockHolder, error) {
	kv, ok := c.(upgrade.KVStore)
	if !ok {
		return nil, errors.New("this Consul cannot read the KV store (upgrade.KVStore)")
	}
	value, found, err := kv.KVGet(ctx, key)
	if err != nil || !found {
		return nil, err
	}
	var h upgrade.LockHolder
	if err := json.Unmarshal(value, &h); err != nil {
		return nil, fmt.Errorf("the lock %s holds %q, which is not a lock holder: %w", key, value, err)
	}
	return &h, nil
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := addConnectFlags(fs, true)
	planFile := fs.String("plan", "", "`FILE` saved by consul-upgrade plan -out: show how far the cluster is along it")
	lockKey := fs.String("lock-key", upgrade.DefaultLockKey, "KV `KEY` of the upgrade lock")
	output := addOutputFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: consul-upgrade status [-http-addr ADDRESS[,ADDRESS...]] [-dc NAME=ADDRESS[,ADDRESS...]]... [-plan FILE] [-output text|json]\n\nShows who holds the upgrade lock, the versions the agents run, and with -plan\nhow many of the plan's steps are done and which comes next. Touches nothing.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n%s", exitCodesHelp)
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if err := checkOutput(*output); err != nil {
		return fail(stderr, "status", err)
	}
	var plan *planner.UpgradePlan
	if *planFile != "" {
		var err error
		if plan, err = readPlan(*planFile); err != nil {
			return fail(stderr, "status", err)
		}
	}
	cluster, err := conn.connect(ctx, noteSwitch(stderr, "status"))
	if err != nil {
		return fail(stderr, "status", err)
	}
	consul := cluster.consul
	if plan != nil {
		if err := cluster.checkPlan(ctx, plan, *planFile); err != nil {
			return fail(stderr, "status", err)
		}
	}
	rep := statusReport{LockKey: *lockKey}
	if rep.Lock, err = readLock(ctx, consul, *lockKey); err != nil {
		return fail(stderr, "status", fmt.Errorf("read the upgrade lock %s through %s: %w", *lockKey, conn.address(), err))
	}
	if rep.Backup, err = upgrade.ReadBackupRecord(ctx, consul, *lockKey); err != nil {
		return fail(stderr, "status", fmt.Errorf("read the backup record next to the lock %s: %w", *lockKey, err))
	}
	if rep.Swap, err = upgrade.ReadSwapRecord(ctx, consul, *lockKey); err != nil {
		return fail(stderr, "status", fmt.Errorf("read the swap record next to the lock %s: %w", *lockKey, err))
	}
	code := exitOK
	var stale *planner.StalePlanError
	if plan != nil { // stale.go: the basis first; a stale plan is not placed
		var c planner.Cluster
		if c, stale, err = checkStale(ctx, cluster, plan, rep.Swap); err != nil {
			return fail(stderr, "status", err)
		}
		if stale != nil {
			rep.Target, rep.Steps, rep.Stale, rep.StaleDiffs, code = plan.Target, len(plan.Steps), stale.Error(), stale.Diffs, exitDiverged
			rep.Servers, rep.Clients = c.Servers, clientVersions(c)
		}
	}
	if plan != nil && rep.Stale == "" {
		rep.Target, rep.Steps = plan.Target, len(plan.Steps)
		pr, err := locate(ctx, cluster, plan, *planFile, *lockKey)
		var de *divergedError
		switch {
		case errors.As(err, &de):
			rep.Diverged = err.Error()
			code = exitDiverged
		case err != nil:
			return fail(stderr, "status", err)
		}
		rep.Done = pr.Done
		if pr.Next.Kind != planner.StepDone && rep.Diverged == "" {
			s := plan.Steps[pr.Done]
			rep.Next = &s
		}
		rep.Servers, rep.Clients = pr.Cluster.Servers, clientVersions(pr.Cluster)
	} else if plan == nil {
		c, err := cluster.discover(ctx)
		if err != nil {
			return fail(stderr, "status", fmt.Errorf("discover the cluster through %s: %w", conn.address(), err))
		}
		rep.Servers, rep.Clients = c.Servers, clientVersions(c)
	}
	if *output == "json" {
		data, _ := json.MarshalIndent(rep, "", "  ")
		stdout.Write(append(data, '\n'))
		return code
	}
	if rep.Lock == nil {
		fmt.Fprintf(stdout, "Lock: free (%s)\n", rep.LockKey)
	} else {
		fmt.Fprintf(stdout, "Lock: held by %q, target %s, for %s (%s)\n", rep.Lock.Holder, rep.Lock.Target, durationText(time.Since(rep.Lock.Since)), rep.LockKey)
	}
	if b := rep.Backup; b != nil {
		fmt.Fprintf(stdout, "Backup: taken on %s (target %s) %s ago", b.Version, b.Target, durationText(time.Since(b.Taken)))
		if b.Holder != "" {
			fmt.Fprintf(stdout, " by %q", b.Holder)
		}
		fmt.Fprintln(stdout)
	}
	if w := rep.Swap; w != nil {
		fmt.Fprintf(stdout, "Unfinished swap: %s %s -> %s, started %s ago", w.Node, w.From, w.To, durationText(time.Since(w.Started)))
		if w.Holder != "" {
			fmt.Fprintf(stdout, " by %q", w.Holder)
		}
		fmt.Fprintf(stdout, "; the next apply finishes it first (%s)\n", upgrade.SwapKey(rep.LockKey))
	}
	fmt.Fprintf(stdout, "Servers:\n")
	for _, s := range rep.Servers {
		role := "follower"
		if s.Leader {
			role = "leader"
		}
		health := "healthy"
		if !s.Healthy {
			health = "unhealthy"
		}
		fmt.Fprintf(stdout, "  %-12s %-10s %-8s %s\n", s.Name, s.Version, role, health)
	}
	if len(rep.Clients) > 0 {
		fmt.Fprintf(stdout, "Clients:")
		for _, v := range sortedKeys(rep.Clients) {
			fmt.Fprintf(stdout, " %d on %s;", rep.Clients[v], v)
		}
		fmt.Fprintln(stdout)
	}
	if stale != nil {
		fmt.Fprintf(stdout, "Plan %s: to %s, %d step(s)\n", *planFile, plan.Target, rep.Steps)
		printStale(stdout, stale)
	} else if plan != nil {
		fmt.Fprintf(stdout, "Plan %s: to %s, %d of %d step(s) done\n", *planFile, plan.Target, rep.Done, rep.Steps)
		switch {
		case rep.Diverged != "":
			fmt.Fprintf(stdout, "Diverged: %s\n", rep.Diverged)
		case rep.Next != nil:
			fmt.Fprintf(stdout, "Next: step %d of %d: %s\n  why: %s\n", rep.Done+1, rep.Steps, stepText(*rep.Next), rep.Next.Reason)
		default:
			fmt.Fprintf(stdout, "Next: nothing; every agent runs %s\n", plan.Target)
		}
	}
	return code
}

func clientVersions(c planner.Cluster) map[string]int {
	if len(c.Clients) == 0 {
		return nil
	}
	m := map[string]int{}
	for _, cl := range c.Clients {
		m[cl.Version]++
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	return slices.Sorted(maps.Keys(m))
}
