package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
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
	NextStep *planner.Step         `json:"next,omitempty"`
	Diverged string                `json:"diverged,omitempty"`
	Backup   *upgrade.BackupRecord `json:"backup,omitempty"`
	// Swap is the swap record of a run that died or halted while it
	// swapped a server; the next run finishes that swap first.
	Swap *upgrade.SwapRecord `json:"swap,omitempty"`
	// Stale is set when the cluster is no longer the one the plan was
	// reviewed on (planner.StalePlanError); StaleDiffs lists how. A stale
	// plan is not placed: Done is 0.
	Stale      string              `json:"stale,omitempty"`
	StaleDiffs []planner.BasisDiff `json:"stale_diffs,omitempty"`
	// DoneNote says why a step counts as done that no apply of this plan
	// carried out (a backup recorded by an earlier run covers the
	// snapshot).
	DoneNote string `json:"done_note,omitempty"`
	// Unplaced: where the cluster stands on the plan cannot be told (the
	// live cluster is refused, or could not be read); Done is then 0, as
	// it is when the cluster Diverged.
	Unplaced bool `json:"unplaced,omitempty"`
	// Gone are the (1-based) steps counted in Done that were never carried
	// out: their servers are not in the cluster any more.
	Gone []int `json:"gone,omitempty"`
	// SerfOnly: the cluster could not be observed whole (no leader, say),
	// so Servers come from serf alone: their Leader, Voter and Healthy are
	// not known (false).
	SerfOnly bool `json:"serf_only,omitempty"`
	// Members are the agents as serf sees them.
	Members []memberStatus `json:"members,omitempty"`
	// Warnings are what status could not read, or found wrong.
	Warnings []string `json:"warnings,omitempty"`
	// Next are the commands to run next (plan again, for a diverged plan).
	Next []string `json:"next_commands,omitempty"`
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
	features := addFeatureFlag(fs)
	output := addOutputFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: consul-upgrade status [-http-addr ADDRESS[,ADDRESS...]] [-dc NAME=ADDRESS[,ADDRESS...]]... [-plan FILE] [-feature NAME=VALUE]... [-output text|json]\n\nShows who holds the upgrade lock, the versions the agents run, and with -plan\nhow many of the plan's steps are done and which comes next. Touches nothing.\nWhat it cannot read, or finds wrong (a server down or missing, a non-voter, a\nclient down, a plan the cluster is refused under), is a warning after the table.\nIt exits 0 once it printed the report, 3 when the cluster diverged from -plan, and\n1 when it could not read the cluster at all.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n%s", exitCodesHelp)
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if err := checkOutput(*output); err != nil {
		return fail(stderr, "status", err)
	}
	o := cmdOutput{name: "status", stdout: stdout, stderr: stderr, json: *output == "json"}
	fc, err := features.config()
	if err != nil {
		return o.fail(err)
	}
	var plan *planner.UpgradePlan
	if *planFile != "" {
		if plan, err = readPlan(*planFile); err != nil {
			return o.fail(err)
		}
	}
	cluster, err := conn.connect(ctx, noteSwitch(stderr, "status"))
	if err != nil {
		return o.fail(err)
	}
	cluster.features = fc
	consul := cluster.consul
	if plan != nil {
		if err := cluster.checkPlan(ctx, plan, *planFile); err != nil {
			return o.fail(err)
		}
	}
	rep := statusReport{LockKey: *lockKey}
	warn := func(format string, a ...any) { rep.Warnings = append(rep.Warnings, fmt.Sprintf(format, a...)) }
	if rep.Lock, err = readLock(ctx, consul, *lockKey); err != nil {
		warn("the upgrade lock %s could not be read through %s: %v", *lockKey, conn.address(), err)
	}
	if rep.Backup, err = upgrade.ReadBackupRecord(ctx, consul, *lockKey); err != nil {
		warn("the backup record next to the lock %s could not be read: %v", *lockKey, err)
	}
	if rep.Swap, err = upgrade.ReadSwapRecord(ctx, consul, *lockKey); err != nil {
		warn("the swap record next to the lock %s could not be read: %v", *lockKey, err)
	}
	code := exitOK
	var c planner.Cluster
	var gone []string // servers of steps counted done that are not in the cluster
	observed := false
	var stale *planner.StalePlanError
	if plan != nil { // stale.go: the basis first; a stale plan is not placed
		rep.Target, rep.Steps = plan.Target, len(plan.Steps)
		var sc planner.Cluster
		switch sc, stale, err = checkStale(ctx, cluster, plan, rep.Swap); {
		case err != nil && judgeCode(err) == exitUsage:
			return o.fail(err)
		case err != nil:
			warn("the plan's basis could not be checked: %v", err)
		case stale != nil:
			rep.Stale, rep.StaleDiffs, code = stale.Error(), stale.Diffs, exitDiverged
			c, observed = sc, true
			line, whole := replanLine(plan, *planFile, flagsNamed(fs, connectionFlags...))
			rep.Next = append(rep.Next, "plan again: "+line)
			if !whole {
				rep.Next = append(rep.Next, "(the plan's policy has settings no flag carries: add -policy FILE with it)")
			}
		}
	}
	if plan != nil && stale == nil {
		pr, err := locate(ctx, cluster, plan, *planFile, *lockKey)
		var de *divergedError
		var refused *planner.RefusedError
		switch {
		case errors.As(err, &de):
			rep.Diverged = err.Error()
			pr.Done = 0 // the live plan is not the saved one's tail: nothing can be counted
			code = exitDiverged
			line, whole := replanLine(plan, *planFile, flagsNamed(fs, connectionFlags...))
			rep.Next = append(rep.Next, "plan again: "+line)
			if !whole {
				rep.Next = append(rep.Next, "(the plan's policy has settings no flag carries: add -policy FILE with it)")
			}
		case errors.As(err, &refused):
			rep.Unplaced = true
			warn("the plan's policy refuses the cluster as it is now, so apply would refuse it too and where the cluster stands on the plan cannot be told: %v", err)
		case err != nil && judgeCode(err) == exitUsage: // bad input (a -dc agent of another datacenter, ...)
			return o.fail(err)
		case err != nil:
			rep.Unplaced = true
			warn("%v", err)
		}
		observed = err == nil || de != nil || refused != nil
		c = pr.Cluster
		rep.Done = pr.Done
		if observed && !rep.Unplaced && pr.Next.Kind != planner.StepDone && rep.Diverged == "" {
			s := plan.Steps[pr.Done]
			rep.NextStep = &s
		}
		if !rep.Unplaced && rep.Diverged == "" {
			// A step counted done whose server is not in the cluster any
			// more was never carried out: the server left (or was
			// removed) and the count passes over it.
			for i, s := range plan.Steps[:min(pr.Done, len(plan.Steps))] {
				if s.Kind == planner.StepSwapServer && !slices.ContainsFunc(pr.Cluster.Servers, func(sv planner.Server) bool { return sv.Name == s.Node }) {
					rep.Gone = append(rep.Gone, i+1)
					gone = append(gone, s.Node)
					warn("step %d of the plan (%s) was never carried out: %s is not a server of the cluster any more, so the plan no longer describes it; plan again", i+1, stepText(s), s.Node)
				}
			}
		}
		// A backup recorded before the plan was saved (an earlier run's)
		// counts for the plan's snapshot step, which no apply of this plan
		// carried out: say so.
		if fi, err := os.Stat(*planFile); err == nil && !rep.Unplaced && pr.SnapshotVersion != "" && rep.Backup != nil && rep.Backup.Taken.Before(fi.ModTime()) {
			for i, s := range plan.Steps[:min(pr.Done, len(plan.Steps))] {
				if s.Kind == planner.StepSnapshot && planner.SameVersion(s.From, pr.SnapshotVersion) {
					rep.DoneNote = fmt.Sprintf("step %d, the snapshot before leaving %s, counts as done: the backup %q recorded %s ago, before this plan was saved, covers it (%s), and apply does not take it again", i+1, s.From, rep.Backup.Holder, durationText(time.Since(rep.Backup.Taken)), rep.Backup.Key)
				}
			}
		}
	} else if plan == nil {
		if c, err = cluster.discover(ctx); err != nil && judgeCode(err) == exitUsage {
			return o.fail(err)
		} else if err != nil {
			warn("the cluster could not be observed through %s: %v", conn.address(), err)
		} else {
			observed = true
		}
	}
	if observed {
		rep.Servers, rep.Clients = c.Servers, clientVersions(c)
	}
	// The agents as serf sees them: who is down, and who is missing.
	members, merr := cluster.members(ctx)
	if merr != nil {
		warn("the serf members could not be listed: %v", merr)
	}
	if !observed {
		if merr != nil {
			return o.fail(fmt.Errorf("status: the cluster could not be read through %s: %w", conn.address(), merr))
		}
		rep.Servers = serversOfMembers(members) // the table, from serf alone
		rep.SerfOnly = true
	}
	statusWarnings(&rep, members, plan, observed, gone, warn)
	if len(rep.Gone) > 0 {
		line, whole := replanLine(plan, *planFile, flagsNamed(fs, connectionFlags...))
		rep.Next = append(rep.Next, "plan again: "+line)
		if !whole {
			rep.Next = append(rep.Next, "(the plan's policy has settings no flag carries: add -policy FILE with it)")
		}
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
		fmt.Fprintf(stdout, "; the next apply finishes it first (%s)\n", w.Key)
	}
	if rep.SerfOnly {
		fmt.Fprintf(stdout, "Servers (as serf lists them; the cluster could not be observed whole, see the warnings):\n")
	} else {
		fmt.Fprintf(stdout, "Servers:\n")
	}
	for _, s := range rep.Servers {
		role := "follower"
		if s.Leader {
			role = "leader"
		}
		health := "healthy"
		if !s.Healthy {
			health = "unhealthy"
		}
		voter := "voter"
		if !s.Voter {
			voter = "non-voter"
		}
		if rep.SerfOnly {
			role, health, voter = "?", "?", "?" // serf cannot tell
		}
		fmt.Fprintf(stdout, "  %-12s %-10s %-8s %-9s %s", s.Name, s.Version, role, health, voter)
		if st := rep.serfStatus(s.Name); st != "" && st != "alive" {
			fmt.Fprintf(stdout, "  serf: %s", st)
		}
		fmt.Fprintln(stdout)
	}
	if len(rep.Clients) > 0 {
		fmt.Fprintf(stdout, "Clients:")
		for _, v := range sortedKeys(rep.Clients) {
			fmt.Fprintf(stdout, " %d on %s;", rep.Clients[v], v)
		}
		fmt.Fprintln(stdout)
	}
	if len(rep.Warnings) > 0 {
		fmt.Fprintf(stdout, "Warnings:\n")
		for _, w := range rep.Warnings {
			fmt.Fprintf(stdout, "  ! %s\n", w)
		}
	}
	if plan != nil {
		switch {
		case stale != nil:
			fmt.Fprintf(stdout, "Plan %s: to %s, %d step(s); the cluster is not the one it was reviewed on, so how many are done cannot be told\n", *planFile, plan.Target, rep.Steps)
			printStale(stdout, stale)
		case rep.Unplaced:
			fmt.Fprintf(stdout, "Plan %s: to %s, %d step(s); where the cluster stands on it cannot be told (see the warnings)\n", *planFile, plan.Target, rep.Steps)
		case rep.Diverged != "":
			fmt.Fprintf(stdout, "Plan %s: to %s, %d step(s); the cluster no longer matches it, so how many are done cannot be told\n", *planFile, plan.Target, rep.Steps)
		case len(rep.Gone) > 0:
			fmt.Fprintf(stdout, "Plan %s: to %s, %d of %d step(s) done, and %d passed over (%s): their servers are gone (see the warnings)\n", *planFile, plan.Target, rep.Done-len(rep.Gone), rep.Steps, len(rep.Gone), joinInts(rep.Gone))
		default:
			fmt.Fprintf(stdout, "Plan %s: to %s, %d of %d step(s) done\n", *planFile, plan.Target, rep.Done, rep.Steps)
			if rep.DoneNote != "" {
				fmt.Fprintf(stdout, "  (%s)\n", rep.DoneNote)
			}
		}
		switch {
		case rep.Unplaced, stale != nil:
		case rep.Diverged != "":
			fmt.Fprintf(stdout, "Diverged: %s\n", rep.Diverged)
		case rep.NextStep != nil:
			fmt.Fprintf(stdout, "Next: step %d of %d: %s\n  why: %s\n", rep.Done+1, rep.Steps, stepText(*rep.NextStep), rep.NextStep.Reason)
		default:
			fmt.Fprintf(stdout, "Next: nothing; every agent runs %s\n", plan.Target)
		}
		for _, n := range rep.Next {
			fmt.Fprintf(stdout, "  %s\n", n)
		}
	}
	return code
}

// memberStatus is a serf member as status reports it.
type memberStatus struct {
	Name       string `json:"name"`
	Datacenter string `json:"datacenter,omitempty"`
	Role       string `json:"role"` // server or client
	Version    string `json:"version"`
	Serf       string `json:"serf"` // alive, leaving, left, failed
}

func (r statusReport) serfStatus(name string) string {
	for _, m := range r.Members {
		if m.Name == name {
			return m.Serf
		}
	}
	return ""
}

// serversOfMembers lists the servers serf knows, for a table when the
// cluster cannot be observed whole (no leader, say): voter and healthy
// cannot be told, so they read false.
func serversOfMembers(ms []memberStatus) []planner.Server {
	var out []planner.Server
	for _, m := range ms {
		if m.Role == "server" {
			out = append(out, planner.Server{Name: m.Name, Datacenter: m.Datacenter, Version: m.Version})
		}
	}
	return out
}

// statusWarnings adds the warnings about the agents: servers and clients
// down in serf, servers that are not voters, and servers the plan or the
// swap record names that the cluster does not have.
func statusWarnings(rep *statusReport, members []memberStatus, plan *planner.UpgradePlan, observed bool, warned []string, warn func(string, ...any)) {
	rep.Members = members
	have := map[string]bool{}
	for _, s := range rep.Servers {
		have[s.Name] = true
	}
	for _, m := range members {
		if m.Serf == "alive" {
			continue
		}
		switch {
		case m.Role == "server" && m.Serf == "left":
			if observed {
				warn("server %s has left the cluster (serf: left)", m.Name)
			}
		case m.Role == "server":
			warn("server %s is down: serf calls it %s", m.Name, m.Serf)
		default:
			warn("client %s is down: serf calls it %s", m.Name, m.Serf)
		}
	}
	if observed {
		for _, s := range rep.Servers {
			if !s.Voter {
				warn("server %s is not a voter in the Raft configuration (a server just added, a non-voter by design, or one autopilot removed)", s.Name)
			} else if !s.Healthy && rep.serfStatus(s.Name) == "alive" {
				warn("server %s is alive but not healthy (autopilot)", s.Name)
			}
		}
	}
	var named []string
	if plan != nil {
		for _, st := range plan.Steps {
			if (st.Kind == planner.StepSwapServer || st.Kind == planner.StepTransferLeader) && st.Node != "" && !slices.Contains(named, st.Node) {
				named = append(named, st.Node)
			}
		}
	}
	if rep.Swap != nil && !slices.Contains(named, rep.Swap.Node) {
		named = append(named, rep.Swap.Node)
	}
	for _, n := range named {
		if !have[n] && rep.serfStatus(n) == "" && !slices.Contains(warned, n) {
			warn("server %s, which the plan or the swap record names, is not in the cluster (not a serf member)", n)
		}
	}
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = "step " + strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
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
