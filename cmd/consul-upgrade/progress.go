package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// progress is where a live cluster stands against a saved plan.
type progress struct {
	// Done is how many of the plan's steps are behind the cluster; Next is
	// then plan.Steps[Done] (when Done < len(plan.Steps)).
	Done int
	// Next is the step the planner chooses now for the live cluster.
	Next planner.Step
	// SnapshotVersion is the servers' version that the backup recorded next
	// to the lock covers ("" when none does).
	SnapshotVersion string
	// Cluster is the live cluster, with SnapshotVersion filled in.
	Cluster planner.Cluster
}

// divergedError says the cluster no longer matches the saved plan.
type divergedError struct {
	planFile string
	want     string // what the plan expected ("" when the plan had no step left)
	got      string // what the live cluster needs next
}

func (e *divergedError) Error() string {
	want := e.want
	return fmt.Sprintf("the cluster has diverged from the plan %s: the planner now chooses %s, which is not the plan's next step (the plan expects %s); plan again, review, and apply the new plan",
		e.planFile, e.got, want)
}

// stepText names a step in a line: kind, node or wave, versions.
func stepText(s planner.Step) string {
	var b strings.Builder
	b.WriteString(string(s.Kind))
	switch s.Kind {
	case planner.StepSnapshot:
		if s.Backup != "" {
			fmt.Fprintf(&b, " (%s)", s.Backup)
		}
		if len(s.Nodes) > 0 {
			fmt.Fprintf(&b, " from %s", strings.Join(s.Nodes, ", "))
		}
		if s.From != "" {
			fmt.Fprintf(&b, " before leaving %s", s.From)
		}
		return b.String()
	case planner.StepTransferLeader:
		fmt.Fprintf(&b, " %s -> %s", s.Node, s.Target)
		return b.String()
	case planner.StepSwapClients:
		fmt.Fprintf(&b, " wave %d (%d client(s): %s)", s.Wave, len(s.Nodes), preview(s.Nodes, 3))
	case planner.StepDone:
		return b.String()
	default:
		if s.Node != "" {
			fmt.Fprintf(&b, " %s", s.Node)
		}
	}
	if s.Datacenter != "" {
		fmt.Fprintf(&b, " in %s", s.Datacenter)
	}
	if s.From != "" || s.To != "" {
		fmt.Fprintf(&b, " %s -> %s", orDash(s.From), s.To)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "(mixed)"
	}
	return s
}

func preview(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, +%d more", strings.Join(names[:n], ", "), len(names)-n)
}

// sameStep compares what a step does, not why or where it is numbered: the
// kind, the node(s), the leadership target, the datacenter and versions.
func sameStep(a, b planner.Step) bool {
	if a.Kind != b.Kind || a.Node != b.Node || a.Target != b.Target || a.Datacenter != b.Datacenter || a.To != b.To {
		return false
	}
	if a.Kind == planner.StepSwapServer && a.From != b.From {
		return false
	}
	an, bn := slices.Clone(a.Nodes), slices.Clone(b.Nodes)
	slices.Sort(an)
	slices.Sort(bn)
	return slices.Equal(an, bn)
}

// backupCovering returns the servers' version that the backup recorded next
// to the lock covers (upgrade.BackupRecord, as Run reads it), or "".
func backupCovering(ctx context.Context, consul upgrade.Consul, lockKey, version string) (string, error) {
	rec, err := upgrade.ReadBackupRecord(ctx, consul, lockKey)
	if err != nil || rec == nil {
		return "", err
	}
	if rec.Version != version || time.Since(rec.Taken) > upgrade.DefaultBackupMaxAge {
		return "", nil
	}
	return rec.Version, nil
}

// lowestServerVersion is the lowest version among the servers.
func lowestServerVersion(c planner.Cluster) string {
	low := ""
	for _, s := range c.Servers {
		v, err := planner.ParseVersion(s.Version)
		if err != nil {
			continue
		}
		if low == "" {
			low = s.Version
			continue
		}
		if l, err := planner.ParseVersion(low); err == nil && v.LessThan(l) {
			low = s.Version
		}
	}
	return low
}

// locate discovers the live cluster and places it on plan. The planner's
// whole plan for the live cluster must be the saved plan's tail: the same
// server steps (kind, node, versions, leadership target) in the same order,
// and client waves covering the same clients (a wave that halted halfway
// may be regrouped). Anything else is a divergence. A cluster at the target
// is at the end.
func locate(ctx context.Context, cluster live, plan *planner.UpgradePlan, planFile, lockKey string) (progress, error) {
	consul := cluster.consul
	c, err := cluster.discover(ctx)
	if err != nil {
		return progress{}, fmt.Errorf("discover the cluster: %w", err)
	}
	pr := progress{Cluster: c}
	if pr.SnapshotVersion, err = backupCovering(ctx, consul, lockKey, lowestServerVersion(c)); err != nil {
		return pr, fmt.Errorf("read the backup record next to the lock %s: %w", lockKey, err)
	}
	pr.Cluster.SnapshotVersion = pr.SnapshotVersion
	live, err := planner.Plan(pr.Cluster, plan.Target, plan.Policy)
	if err != nil {
		var refused *planner.RefusedError
		if errors.As(err, &refused) {
			return pr, fmt.Errorf("the live cluster is refused under the plan's policy now: %w", err)
		}
		return pr, err
	}
	if len(live.Steps) == 0 {
		pr.Next = planner.Step{Kind: planner.StepDone}
		pr.Done = len(plan.Steps)
		return pr, nil
	}
	pr.Next = live.Steps[0]
	pr.Done = len(plan.Steps) - len(live.Steps)
	if pr.Done < 0 {
		return pr, &divergedError{planFile: planFile, want: fmt.Sprintf("at most %d step(s)", len(plan.Steps)),
			got: fmt.Sprintf("%d step(s), starting with %s", len(live.Steps), stepText(live.Steps[0]))}
	}
	// Find where the live plan's server steps and clients part from the tail.
	tail := plan.Steps[pr.Done:]
	if !sameStep(tail[0], live.Steps[0]) && !(tail[0].Kind == planner.StepSwapClients && live.Steps[0].Kind == planner.StepSwapClients) {
		return pr, &divergedError{planFile: planFile, want: stepText(tail[0]), got: stepText(live.Steps[0])}
	}
	ws, wc := serverSteps(tail), clientSet(tail)
	gs, gc := serverSteps(live.Steps), clientSet(live.Steps)
	for i := range max(len(ws), len(gs)) {
		switch {
		case i >= len(ws):
			return pr, &divergedError{planFile: planFile, want: "no more server steps", got: "later " + stepText(gs[i])}
		case i >= len(gs):
			return pr, &divergedError{planFile: planFile, want: "later " + stepText(ws[i]), got: "no more server steps"}
		case !sameStep(ws[i], gs[i]):
			return pr, &divergedError{planFile: planFile, want: "later " + stepText(ws[i]), got: "later " + stepText(gs[i])}
		}
	}
	if !slices.Equal(wc, gc) {
		return pr, &divergedError{planFile: planFile, want: fmt.Sprintf("client waves over %d client(s)", len(wc)), got: fmt.Sprintf("client waves over %d client(s) (%s)", len(gc), preview(gc, 3))}
	}
	return pr, nil
}

func serverSteps(steps []planner.Step) []planner.Step {
	var out []planner.Step
	for _, s := range steps {
		if s.Kind != planner.StepSwapClients {
			out = append(out, s)
		}
	}
	return out
}

// clientSet lists, sorted, the hop and name of every client in the waves.
func clientSet(steps []planner.Step) []string {
	var out []string
	for _, s := range steps {
		if s.Kind == planner.StepSwapClients {
			for _, n := range s.Nodes {
				out = append(out, s.To+" "+n)
			}
		}
	}
	slices.Sort(out)
	return out
}
