package rehearsal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// Defaults and limits of Options.
const (
	// DefaultClients is the number of client agents of a replica when
	// Options.Clients is 0 (fewer when the cluster has fewer).
	DefaultClients = 2
	// MaxServers is the largest server count a replica can have: the
	// loopback address plan has room for 9 servers (127.0.N.11-19).
	MaxServers = 9
	// MaxClients bounds Options.Clients: a rehearsal is a scaled-down
	// replica on one machine.
	MaxClients = 20
	// DefaultRate is the recorded traffic in operations per second.
	DefaultRate = 50
	// DefaultTimeout bounds a whole rehearsal.
	DefaultTimeout = 30 * time.Minute
	// BuildScript builds a missing binary, run from the repository root.
	BuildScript = "scripts/build-consul.sh"
)

// Options describe a rehearsal. Give either Plan (the plan a human
// reviewed; its target and policy are used, and its steps give the
// cluster's shape unless Cluster is set too) or Cluster with Target and
// Policy. OutDir is required.
type Options struct {
	// Plan is a plan made by planner.Plan. Its Target and Policy are the
	// rehearsal's.
	Plan *planner.UpgradePlan
	// Cluster is the shape to replicate: the servers of one datacenter
	// with their versions, and its clients (scaled down to Clients).
	Cluster *planner.Cluster
	// Target and Policy are used when Plan is nil.
	Target string
	Policy planner.Policy
	// Clients is the number of client agents of the replica (0:
	// DefaultClients; never more than the cluster has, at most
	// MaxClients). Negative: none.
	Clients int
	// BinDir holds the consul-<version> binaries ("": DefaultBinDir()).
	BinDir string
	// OutDir receives report.md and timeline.svg (created when missing).
	OutDir string
	// Rate is the recorded traffic in operations per second (0:
	// DefaultRate).
	Rate float64
	// Timeout bounds the whole rehearsal (0: DefaultTimeout).
	Timeout time.Duration
	// OnEvent receives every event of the upgrade run, in order.
	OnEvent func(upgrade.Event)
	// Logf, when set, receives progress lines (starting the replica,
	// tearing it down).
	Logf func(format string, args ...any)

	// ProbeServices are the services whose `?passing` health query is
	// probed in each phase (see package upgrade/probe; empty: "consul").
	// Name the services the cluster's users query; with WithData those
	// registered on non-agent nodes are restored into the replica.
	ProbeServices []string
	// NoProbes leaves the probes out.
	NoProbes bool

	// WithData rehearses on the cluster's own data: before the replica
	// starts, a backup of the live cluster is taken through Source (a
	// Consul snapshot from 0.7.1, the logical backup below; the cluster is
	// only read), into a folder of mode 0700 (the file 0600) removed when
	// Run returns. It is restored into the replica on the cluster's
	// versions before the upgrade, and after the upgrade the replica's
	// state is read back and compared with what was restored
	// (Report.Data).
	WithData bool
	// Source is the live cluster's Consul, read for the backup of
	// WithData (upgrade.ConnectAddr's, say). Unused with Snapshot.
	Source upgrade.Consul
	// Snapshot is a backup file to restore instead of taking one (it
	// implies WithData): a Consul snapshot (`consul snapshot save`) or a
	// logical backup a run took. It is verified before anything starts
	// (*SnapshotFileError) and never modified or removed.
	Snapshot string
	// Token is a management token of the live cluster, for a cluster with
	// ACLs on (1.4 and later): with it the replica's agents run with ACLs
	// enabled (default policy allow; Token their initial management token
	// and their default token, in a 0600 configuration file, so it is
	// valid before the restore as after it and the run's requests carry
	// it), and the restored ACL tokens and policies are
	// read back with it and compared. Leave it empty for a cluster with
	// ACLs off (a restored state without the token would lock the
	// rehearsal out).
	Token string
}

// DefaultBinDir is where scripts/build-consul.sh caches its binaries:
// $CONSUL_UPGRADE_BIN_DIR, else <user cache dir>/consul-upgrade/bin.
func DefaultBinDir() string {
	if d := os.Getenv("CONSUL_UPGRADE_BIN_DIR"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "consul-upgrade", "bin")
	}
	return filepath.Join(cache, "consul-upgrade", "bin")
}

// OptionsError is a problem with Options, naming the field, the value and
// the fix.
type OptionsError struct {
	Field, Value, Problem string
}

func (e *OptionsError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("rehearsal: Options.%s %s", e.Field, e.Problem)
	}
	return fmt.Sprintf("rehearsal: Options.%s %s %s", e.Field, e.Value, e.Problem)
}

// MissingBinaryError says that the binary of a version the rehearsal needs
// is not in the binaries directory, and how to build it.
type MissingBinaryError struct {
	Version string
	Path    string // the file looked for
	// Command builds it, run from the repository root.
	Command string
	Err     error
}

func (e *MissingBinaryError) Error() string {
	return fmt.Sprintf("rehearsal: no Consul %s binary at %s (%v); build it with: %s", e.Version, e.Path, e.Err, e.Command)
}

func (e *MissingBinaryError) Unwrap() error { return e.Err }

// shape is the replica to start: one datacenter.
type shape struct {
	datacenter string
	servers    []agentSpec
	clients    []agentSpec
	// skipped names the datacenters of the cluster not rehearsed.
	skipped []string
	// total clients of the datacenter in the real cluster.
	realClients int
}

type agentSpec struct{ name, version string }

// resolved are the options with defaults applied.
type resolved struct {
	Options
	target string
	policy planner.Policy
	shape  shape
	bins   map[string]string // version -> binary
	path   []planner.Hop
	// snapshotInfo is Options.Snapshot verified.
	snapshotInfo upgrade.SnapshotInfo
}

// withData reports whether the rehearsal restores the cluster's data.
func (r *resolved) withData() bool { return r.WithData || r.Snapshot != "" }

// resolve validates o, applies the defaults, derives the replica's shape
// and finds every binary. Errors are *OptionsError, *MissingBinaryError
// (joined) or the planner's refusal.
func resolve(o Options) (*resolved, error) {
	r := &resolved{Options: o}
	var errs []error
	add := func(field, value, problem string) {
		errs = append(errs, &OptionsError{Field: field, Value: value, Problem: problem})
	}
	switch {
	case o.Plan != nil:
		r.target, r.policy = o.Plan.Target, o.Plan.Policy
		if o.Target != "" && o.Target != o.Plan.Target {
			add("Target", fmt.Sprintf("%q", o.Target), fmt.Sprintf("differs from the plan's target %s; leave Target empty with a plan", o.Plan.Target))
		}
	case o.Cluster != nil:
		r.target, r.policy = o.Target, o.Policy
		if _, err := planner.ParseVersion(o.Target); err != nil {
			add("Target", fmt.Sprintf("%q", o.Target), "is not a Consul version; give the version to upgrade to, e.g. 1.16.1")
		}
	default:
		add("Plan", "", "and Options.Cluster are both nil; give the plan to rehearse, or the cluster with a target and policy")
	}
	if o.OutDir == "" {
		add("OutDir", "", "is empty; name the folder that receives report.md and timeline.svg")
	}
	if o.Clients > MaxClients {
		add("Clients", fmt.Sprint(o.Clients), fmt.Sprintf("is more than %d; a rehearsal is a scaled-down replica on this machine", MaxClients))
	}
	if o.Rate < 0 || o.Rate > 2000 {
		add("Rate", fmt.Sprint(o.Rate), "is outside (0, 2000] operations per second (0: the default)")
	}
	if o.Timeout < 0 {
		add("Timeout", o.Timeout.String(), "is negative; use 0 for the default or a positive duration")
	}
	if o.WithData && o.Snapshot == "" && o.Source == nil {
		add("Source", "", "is nil with WithData; give the live cluster's Consul (it is only read) or a backup file in Options.Snapshot")
	}
	if o.Token != "" && !o.WithData && o.Snapshot == "" {
		add("Token", "", "is set without WithData or Snapshot; it is for reading a restored cluster's ACLs")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if o.Snapshot != "" {
		info, err := verifyFile(o.Snapshot)
		if err != nil {
			return nil, err
		}
		r.snapshotInfo = info
	}
	if r.BinDir == "" {
		r.BinDir = DefaultBinDir()
	}
	if r.Rate == 0 {
		r.Rate = DefaultRate
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultTimeout
	}
	var err error
	if o.Cluster != nil {
		r.shape, err = shapeOfCluster(*o.Cluster, o.Clients)
	} else {
		r.shape, err = shapeOfPlan(o.Plan, o.Clients)
	}
	if err != nil {
		return nil, err
	}
	if o.Token != "" {
		for _, v := range r.shape.versions(nil) {
			if before(v, firstNewACLs) {
				return nil, &OptionsError{Field: "Token", Problem: fmt.Sprintf("is set for a replica on %s; ACL tokens and policies are compared from 1.4.0 (the new ACL system); leave it empty", v)}
			}
		}
	}
	if o.Snapshot != "" && r.snapshotInfo.Kind != planner.BackupLogical {
		if low := r.shape.lowestServer(); before(low, firstSnapshotAPI) {
			return nil, &OptionsError{Field: "Snapshot", Value: o.Snapshot, Problem: fmt.Sprintf("is a Consul snapshot, which the replica's servers on %s cannot restore (the snapshot API came in 0.7.1); give a logical backup of the cluster", low)}
		}
	}
	// The path of the replica: the planner's own, from the replica's
	// shape (the same versions as the cluster's datacenter).
	plan, err := planner.Plan(r.shape.cluster(), r.target, r.policy)
	if err != nil {
		return nil, fmt.Errorf("rehearsal: the replica's plan is refused: %w", err)
	}
	r.path = plan.Path
	r.bins, err = findBinaries(r.BinDir, r.shape.versions(plan.Path))
	if err != nil {
		return nil, err
	}
	return r, nil
}

// versions are every version the replica runs: the agents' starting
// versions and every hop's target.
func (s shape) versions(path []planner.Hop) []string {
	var out []string
	for _, a := range append(slices.Clone(s.servers), s.clients...) {
		if !slices.Contains(out, a.version) {
			out = append(out, a.version)
		}
	}
	for _, h := range path {
		if !slices.Contains(out, h.To) {
			out = append(out, h.To)
		}
	}
	return out
}

// cluster is the shape as the planner sees it before the replica starts:
// healthy voters, the first server leading (the real leader is whoever
// the replica elects; Run observes it).
func (s shape) cluster() planner.Cluster {
	var c planner.Cluster
	for i, a := range s.servers {
		c.Servers = append(c.Servers, planner.Server{Name: a.name, Datacenter: s.datacenter, Version: a.version, Voter: true, Healthy: true, Leader: i == 0})
	}
	for _, a := range s.clients {
		c.Clients = append(c.Clients, planner.Client{Name: a.name, Datacenter: s.datacenter, Version: a.version})
	}
	return c
}

// findBinaries returns the binary of each version; every missing one is a
// *MissingBinaryError (joined).
func findBinaries(dir string, versions []string) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for _, v := range versions {
		if err := transport.ValidateVersion(v); err != nil {
			errs = append(errs, fmt.Errorf("rehearsal: version %q: %w", v, err))
			continue
		}
		p := filepath.Join(dir, "consul-"+v)
		fi, err := os.Stat(p)
		if err == nil && (fi.IsDir() || fi.Mode().Perm()&0o111 == 0) {
			err = fmt.Errorf("not an executable file (mode %s)", fi.Mode())
		}
		if err != nil {
			cmd := BuildScript + " " + v
			if dir != DefaultBinDir() {
				cmd = "CONSUL_UPGRADE_BIN_DIR=" + dir + " " + cmd
			}
			errs = append(errs, &MissingBinaryError{Version: v, Path: p, Command: cmd, Err: err})
			continue
		}
		out[v] = p
	}
	return out, errors.Join(errs...)
}

// rehearsedDC picks the datacenter to replicate: the primary, else the
// first named by a server.
func rehearsedDC(c planner.Cluster) (string, []string) {
	var names []string
	seen := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	primary := ""
	for _, d := range c.Datacenters {
		seen(d.Name)
		if d.Primary && primary == "" {
			primary = d.Name
		}
	}
	for _, s := range c.Servers {
		seen(s.Datacenter)
	}
	if primary == "" && len(c.Servers) > 0 {
		primary = c.Servers[0].Datacenter
	}
	var skipped []string
	for _, n := range names {
		if n != primary {
			skipped = append(skipped, dcName(n))
		}
	}
	return primary, skipped
}

func dcName(n string) string {
	if n == "" {
		return "dc1"
	}
	return n
}

func clientCount(asked, real int) int {
	switch {
	case asked < 0:
		return 0
	case asked == 0:
		return min(DefaultClients, real)
	default:
		return min(asked, real)
	}
}

func shapeOfCluster(c planner.Cluster, clients int) (shape, error) {
	dc, skipped := rehearsedDC(c)
	s := shape{datacenter: dcName(dc), skipped: skipped}
	for _, sv := range c.Servers {
		if sv.Datacenter == dc || (dc == "dc1" && sv.Datacenter == "") {
			s.servers = append(s.servers, agentSpec{sv.Name, sv.Version})
		}
	}
	var real []agentSpec
	for _, cl := range c.Clients {
		if cl.Datacenter == dc || cl.Datacenter == "" && dcName(dc) == "dc1" {
			real = append(real, agentSpec{cl.Name, cl.Version})
		}
	}
	s.realClients = len(real)
	s.clients = sample(real, clientCount(clients, len(real)))
	return s, s.check()
}

// sample takes n of the clients, spread over the list (so a cluster with
// clients on several versions keeps several), renamed c1..cn.
func sample(real []agentSpec, n int) []agentSpec {
	var out []agentSpec
	for i := range n {
		a := real[i*len(real)/n]
		out = append(out, agentSpec{fmt.Sprintf("client%d", i+1), a.version})
	}
	return out
}

// shapeOfPlan reads the shape from a plan's steps: every server a swap,
// transfer or retirement names, on the version it had at its first step;
// every client of a wave.
func shapeOfPlan(p *planner.UpgradePlan, clients int) (shape, error) {
	var dcs []string
	var servers, real []agentSpec
	has := func(list []agentSpec, n string) bool {
		return slices.ContainsFunc(list, func(a agentSpec) bool { return a.name == n })
	}
	first := ""
	if len(p.Path) > 0 {
		first = p.Path[0].From
	}
	for _, st := range p.Steps {
		if st.Datacenter != "" && !slices.Contains(dcs, st.Datacenter) {
			dcs = append(dcs, st.Datacenter)
		}
		if len(dcs) > 0 && st.Datacenter != "" && st.Datacenter != dcs[0] {
			continue
		}
		switch st.Kind {
		case planner.StepSwapServer, planner.StepRetireServer:
			if !has(servers, st.Node) {
				servers = append(servers, agentSpec{st.Node, st.From})
			}
		case planner.StepSwapClients:
			v := st.From
			if v == "" {
				v = first
			}
			for _, n := range st.Nodes {
				if !has(real, n) {
					real = append(real, agentSpec{n, v})
				}
			}
		}
	}
	s := shape{datacenter: "dc1", servers: servers, realClients: len(real)}
	if len(dcs) > 0 {
		s.datacenter = dcs[0]
		s.skipped = append(s.skipped, dcs[1:]...)
	}
	s.clients = sample(real, clientCount(clients, len(real)))
	if len(servers) == 0 {
		return s, &OptionsError{Field: "Plan", Value: fmt.Sprintf("(%d steps to %s)", len(p.Steps), p.Target),
			Problem: "swaps no server, so its steps do not show the cluster's shape; pass Options.Cluster too (the cluster file the plan was made from)"}
	}
	return s, s.check()
}

func (s shape) check() error {
	var errs []string
	if len(s.servers) == 0 {
		errs = append(errs, fmt.Sprintf("datacenter %s has no servers", s.datacenter))
	}
	if len(s.servers) > MaxServers {
		errs = append(errs, fmt.Sprintf("datacenter %s has %d servers; a loopback replica holds at most %d", s.datacenter, len(s.servers), MaxServers))
	}
	seen := map[string]bool{}
	for _, a := range append(slices.Clone(s.servers), s.clients...) {
		if seen[a.name] {
			errs = append(errs, fmt.Sprintf("node name %s is used twice (clients are named client1..clientN in the replica)", a.name))
		}
		seen[a.name] = true
		if err := transport.ValidateNode(a.name); err != nil {
			errs = append(errs, err.Error())
		}
		if err := transport.ValidateVersion(a.version); err != nil {
			errs = append(errs, fmt.Sprintf("agent %s: %v", a.name, err))
		}
	}
	if len(errs) > 0 {
		return &OptionsError{Field: "Cluster", Problem: "cannot be replicated: " + strings.Join(errs, "; ")}
	}
	return nil
}

// logf is Options.Logf, or nothing.
func (r *resolved) logf(format string, args ...any) {
	if r.Logf != nil {
		r.Logf(format, args...)
	}
}
