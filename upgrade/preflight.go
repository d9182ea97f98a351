package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-version"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// EventPreflight reports the pre-flight check of the binaries, made after
// the lock is taken and before the first action: one event per node that
// cannot get a binary (Node and Err set), one when the transport cannot
// check (Detail says why, Err wraps transport.ErrNotChecked), and one with
// the outcome (Detail).
const EventPreflight EventKind = "preflight"

// preflightParallel bounds the artifact checks in flight at once.
const preflightParallel = 8

// PreflightProblem is one binary a node cannot get.
type PreflightProblem struct {
	Node    string
	Role    transport.Role
	Version string
	// Rollback is true when Version is the one the node runs now, which a
	// rollback (Config.Rollback) would return it to.
	Rollback bool
	// Err is why: a *transport.ArtifactError (what was checked, what was
	// found, the fix), or why the check itself failed (the host could not
	// be reached).
	Err error
}

// PreflightError refuses a run before anything was touched: the transport's
// pre-flight check (transport.ArtifactChecker) found nodes that cannot get
// the binary of a version the run would swap them to, or roll them back
// to. Run returns it after taking the lock and before the first action,
// having stopped nothing. errors.As reaches each problem's
// *transport.ArtifactError through it.
type PreflightError struct {
	Problems []PreflightProblem
}

// Error names every node, the version, what was checked and the fix.
// Nodes that failed the same check the same way (a binary directory or a
// mirror they share) are named together, in one clause.
func (e *PreflightError) Error() string {
	type group struct {
		nodes []string
		p     PreflightProblem
		ae    *transport.ArtifactError
	}
	var groups []*group
	byKey := map[string]*group{}
	nodes := map[string]bool{}
	unreachable := map[string]bool{} // hosts the transport could not reach (transport.ErrUnreachable)
	for _, p := range e.Problems {
		nodes[p.Node] = true
		var ae *transport.ArtifactError
		key := ""
		switch {
		case errors.Is(p.Err, transport.ErrUnreachable):
			// One clause per host, whatever the versions checked on it.
			if unreachable[p.Node] {
				continue
			}
			unreachable[p.Node] = true
		case errors.As(p.Err, &ae):
			key = fmt.Sprintf("%s\x00%v\x00%s\x00%s\x00%s", p.Version, p.Rollback, ae.Checked, ae.Problem, ae.Fix)
		}
		if g := byKey[key]; key != "" && g != nil {
			g.nodes = append(g.nodes, fmt.Sprintf("%s %s", p.Role, p.Node))
			continue
		}
		g := &group{nodes: []string{fmt.Sprintf("%s %s", p.Role, p.Node)}, p: p, ae: ae}
		groups = append(groups, g)
		if key != "" {
			byKey[key] = g
		}
	}
	var b strings.Builder
	switch missing := len(nodes) - len(unreachable); {
	case len(unreachable) == 0:
		fmt.Fprintf(&b, "pre-flight: %d node(s) cannot get a binary the run needs", missing)
	case missing == 0:
		fmt.Fprintf(&b, "pre-flight: %d node(s) cannot be reached", len(unreachable))
	default:
		fmt.Fprintf(&b, "pre-flight: %d node(s) cannot be reached and %d cannot get a binary the run needs", len(unreachable), missing)
	}
	b.WriteString("; the run was refused before anything was touched")
	for i, g := range groups {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(groups)-i)
			break
		}
		if unreachable[g.p.Node] && errors.Is(g.p.Err, transport.ErrUnreachable) {
			fmt.Fprintf(&b, "; %s: %v", g.nodes[0], g.p.Err)
			continue
		}
		what := "the swap to"
		if g.p.Rollback {
			what = "a rollback to"
		}
		fmt.Fprintf(&b, "; %s, for %s %s: ", strings.Join(g.nodes, ", "), what, g.p.Version)
		if g.ae == nil || len(g.nodes) == 1 {
			fmt.Fprintf(&b, "%v", g.p.Err)
			continue
		}
		fmt.Fprintf(&b, "cannot get consul %s: checked %s: %s", g.ae.Version, g.ae.Checked, g.ae.Problem)
		if g.ae.Fix != "" {
			b.WriteString("; " + g.ae.Fix)
		}
	}
	return b.String()
}

// Unwrap returns every problem's error.
func (e *PreflightError) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.Err
	}
	return out
}

// preflightCheck is one binary to check on one node.
type preflightCheck struct {
	node     string
	role     transport.Role
	version  string
	rollback bool
}

// preflightChecks lists, for cluster c, every node the run will swap with
// every version it will swap the node to (each hop of the path whose
// version is above the node's), and with Config.Rollback the version the
// node runs now. Servers are left out under the replace strategy (new
// servers are provisioned, not swapped) and clients when they are left
// behind. hops is the path (the approved plan's, or computed from c).
func (r *runner) preflightChecks(c planner.Cluster, hops []planner.Hop) []preflightCheck {
	var tos []*version.Version
	var toStr []string
	for _, h := range hops {
		if v, err := planner.ParseVersion(h.To); err == nil {
			tos, toStr = append(tos, v), append(toStr, h.To)
		}
	}
	var out []preflightCheck
	add := func(name, ver string, role transport.Role) {
		cur, err := planner.ParseVersion(ver)
		if err != nil {
			return // the planner refuses what does not parse
		}
		swapped := false
		for i, to := range tos {
			if cur.LessThan(to) {
				out = append(out, preflightCheck{node: name, role: role, version: toStr[i]})
				swapped = true
			}
		}
		if swapped && r.cfg.Rollback {
			out = append(out, preflightCheck{node: name, role: role, version: ver, rollback: true})
		}
	}
	if r.cfg.Policy.Strategy != planner.Replace {
		for _, s := range c.Servers {
			add(s.Name, s.Version, transport.RoleServer)
		}
	}
	if r.cfg.Policy.Clients.Mode != planner.ClientLeaveBehind {
		for _, cl := range c.Clients {
			add(cl.Name, cl.Version, transport.RoleClient)
		}
	}
	return out
}

// preflightPath is the path the run takes from c: the approved plan's, or
// the planner's from the lowest server version (Enterprise when an agent
// or the target is, with the stones c's features call for: PathFor).
func (r *runner) preflightPath(c planner.Cluster) ([]planner.Hop, error) {
	if r.cfg.Plan != nil {
		return r.cfg.Plan.Path, nil
	}
	low, err := planner.MinServerVersion(&c)
	if err != nil {
		return nil, err
	}
	pol := r.cfg.Policy
	for _, s := range c.Servers {
		pol.Enterprise = pol.Enterprise || planner.IsEnterprise(s.Version)
	}
	for _, cl := range c.Clients {
		pol.Enterprise = pol.Enterprise || planner.IsEnterprise(cl.Version)
	}
	return planner.PathFor(low.Original(), r.cfg.Target, pol, c.Features)
}

// preflight checks, before anything is touched, that every node the run
// will swap can get the binary of every version it will be swapped to (and,
// with Config.Rollback, of the version it runs now), when the transport is
// a transport.ArtifactChecker. A transport that is not, or that cannot
// check (transport.ErrNotChecked), is reported in an EventPreflight as not
// verified and the run goes on. Problems are returned as a
// *PreflightError; with report set (a dry run) they are only reported as
// events, and nil is returned.
func (r *runner) preflight(ctx context.Context, c planner.Cluster, report bool) error {
	if r.cfg.Transport == nil {
		return nil
	}
	ac, ok := r.cfg.Transport.(transport.ArtifactChecker)
	if !ok {
		r.emit(ctx, Event{Kind: EventPreflight, Detail: fmt.Sprintf("binaries not verified: %T cannot check them (it is not a transport.ArtifactChecker); a node without its binary fails at its swap", r.cfg.Transport)})
		return nil
	}
	hops, err := r.preflightPath(c)
	if err != nil {
		return fmt.Errorf("pre-flight: the path to %s: %w", r.cfg.Target, err)
	}
	checks := r.preflightChecks(c, hops)
	if len(checks) == 0 {
		return nil
	}
	errs := make([]error, len(checks))
	sem := make(chan struct{}, preflightParallel)
	var wg sync.WaitGroup
	for i, ck := range checks {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = ac.CheckArtifact(ctx, ck.node, ck.role, ck.version)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pre-flight: %w", err)
	}
	var problems []PreflightProblem
	var notChecked []error
	nodes := map[string]bool{}
	for i, ck := range checks {
		nodes[ck.node] = true
		switch err := errs[i]; {
		case err == nil:
		case errors.Is(err, transport.ErrNotChecked):
			notChecked = append(notChecked, err)
		default:
			problems = append(problems, PreflightProblem{Node: ck.node, Role: ck.role, Version: ck.version, Rollback: ck.rollback, Err: err})
		}
	}
	if len(notChecked) > 0 {
		r.emit(ctx, Event{Kind: EventPreflight, Err: notChecked[0],
			Detail: fmt.Sprintf("%d of %d binaries not verified: the transport cannot check them (%v); a node without its binary fails at its swap", len(notChecked), len(checks), notChecked[0])})
	}
	for _, p := range problems {
		r.emit(ctx, Event{Kind: EventPreflight, Node: p.Node, Err: p.Err, Detail: fmt.Sprintf("%s %s cannot get consul %s", p.Role, p.Node, p.Version)})
	}
	versions := map[string]bool{}
	for _, ck := range checks {
		versions[ck.version] = true
	}
	vs := make([]string, 0, len(versions))
	for v := range versions {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	detail := fmt.Sprintf("%d binary check(s) on %d node(s) (versions %s): %d verified, %d not verified, %d missing",
		len(checks), len(nodes), strings.Join(vs, ", "), len(checks)-len(notChecked)-len(problems), len(notChecked), len(problems))
	if len(problems) > 0 && report {
		detail += "; a run would be refused"
	}
	r.emit(ctx, Event{Kind: EventPreflight, Detail: detail})
	if len(problems) == 0 || report {
		return nil
	}
	return &PreflightError{Problems: problems}
}
