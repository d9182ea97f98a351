package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// checkStale observes the cluster and checks the saved plan's basis against
// it (planner.UpgradePlan.CheckBasis), with the swap record a dead run
// left (nil: none). It returns the cluster observed and the plan's
// *planner.StalePlanError (nil when the basis holds).
func checkStale(ctx context.Context, cluster live, plan *planner.UpgradePlan, swap *upgrade.SwapRecord) (planner.Cluster, *planner.StalePlanError, error) {
	c, err := cluster.discover(ctx)
	if err != nil {
		return c, nil, fmt.Errorf("discover the cluster: %w", err)
	}
	c.UnfinishedSwap = swap.Unfinished()
	var se *planner.StalePlanError
	if err := plan.CheckBasis(c); errors.As(err, &se) {
		return c, se, nil
	} else if err != nil {
		return c, nil, err
	}
	return c, nil, nil
}

// printStale prints a stale plan's differences, one a line.
func printStale(w io.Writer, se *planner.StalePlanError) {
	if se.NoBasis {
		fmt.Fprintf(w, "Stale: %v\n", se)
		return
	}
	fmt.Fprintf(w, "Stale: the cluster is not the one the plan was reviewed on, %s; plan again and review:\n", se.Beyond())
	for _, d := range se.Diffs {
		fmt.Fprintf(w, "  - %s\n", d)
	}
}

// noteUnfinishedSwap prints, first, the swap a dead run left unfinished:
// apply finishes it before anything else. A record that cannot be read is
// said too; apply refuses it, touching nothing.
func noteUnfinishedSwap(w io.Writer, rec *upgrade.SwapRecord, err error) {
	switch {
	case err != nil:
		fmt.Fprintf(w, "Unfinished swap: %v\n\n", err)
	case rec != nil:
		fmt.Fprintf(w, "Unfinished swap: %s %s -> %s, started %s ago", rec.Node, orUnknownVersion(rec.From), rec.To, durationText(time.Since(rec.Started)))
		if rec.Holder != "" {
			fmt.Fprintf(w, " by %q", rec.Holder)
		}
		fmt.Fprintf(w, "; the next apply finishes it before anything else (%s). The plan below assumes the cluster as observed now.\n\n", rec.Key)
	}
}

func orUnknownVersion(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
