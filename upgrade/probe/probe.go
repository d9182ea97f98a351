// Package probe reads a Consul cluster the way its users do, to see what
// breaks in the window where old and new agents run side by side: a
// blocking query that must advance, a health query with ?passing for a
// named service (hashicorp/consul#23254 broke it during 1.18 → 1.22),
// catalog reads, and ACL token and policy reads where ACLs are on.
//
// A Probe has a stable name and a Run that returns nil when Consul
// answered as a user expects, or an error naming what it asked, what came
// back and what was expected. RunAll runs a set of probes once, in one
// phase of an upgrade (before it, in the mixed window after a step, after
// it), and returns a Result per probe.
//
// Every probe of ReadOnly only reads: it is safe to run against a live
// cluster during a real upgrade. BlockingKV needs its key to be written
// while it waits; it takes the write as a function from its caller (the
// rehearsal writes a key under its own prefix on the replica), so the
// package itself never writes.
//
// A blocking health query (health-blocking/<service>) through a client
// agent of 1.10 or later is served by the streaming backend, the path that
// answered 500 "Key is required" during 1.12 → 1.13 (hashicorp/consul#16850);
// through a server, or before 1.10, it is a plain blocking query. In a
// secondary datacenter with ACLs on, Live adds acl-replication: the
// replication must be running and its last success newer than its last
// error (hashicorp/consul#22116, #16273: policy replication broke when the
// primary moved ahead).
package probe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	version "github.com/hashicorp/go-version"
)

// Stable probe names (HealthPassing's name adds "/" and the service).
const (
	NameBlockingKV      = "blocking-kv"
	NameBlockingCatalog = "blocking-catalog"
	NameHealthPassing   = "health-passing"
	NameCatalogNodes    = "catalog-nodes"
	NameCatalogServices = "catalog-services"
	NameACLTokens       = "acl-tokens"
	NameACLPolicies     = "acl-policies"
	NameHealthBlocking  = "health-blocking"
	NameACLReplication  = "acl-replication"
)

// Phases of an upgrade in which probes run. The mixed window is named by
// the step just done (AfterStep).
const (
	PhaseBefore = "before"
	PhaseAfter  = "after"
)

// AfterStep names the phase after step i (0-based) of a run: "step 3".
func AfterStep(i int) string { return fmt.Sprintf("step %d", i+1) }

// DefaultWait is a blocking probe's wait, and DefaultTimeout the bound of
// one probe's Run in RunAll.
const (
	DefaultWait    = 2 * time.Second
	DefaultTimeout = 15 * time.Second
)

// Probe is one check of how Consul answers its users.
type Probe struct {
	// Name is stable across runs and versions (NameCatalogNodes, ...).
	Name string
	// Run asks Consul once; nil means it answered as expected.
	Run func(ctx context.Context) error
}

// Result is one probe run in one phase.
type Result struct {
	Probe string `json:"probe"`
	Phase string `json:"phase"`
	// Versions are the distinct versions of the servers in that phase,
	// sorted (two of them: the mixed window).
	Versions []string      `json:"versions"`
	OK       bool          `json:"ok"`
	Err      string        `json:"err,omitempty"`
	Latency  time.Duration `json:"latency"`
}

func (r Result) String() string {
	s := fmt.Sprintf("probe %s %s (%s): ", r.Probe, r.Phase, strings.Join(r.Versions, ", "))
	if r.OK {
		return s + "ok in " + r.Latency.Round(time.Millisecond).String()
	}
	return s + "FAILED in " + r.Latency.Round(time.Millisecond).String() + ": " + r.Err
}

// RunAll runs each probe in turn, each bounded by DefaultTimeout (and
// ctx), and returns its result in the phase given. versions are the
// servers' versions in that phase (copied, sorted, without repeats).
func RunAll(ctx context.Context, probes []Probe, phase string, versions []string) []Result {
	vs := sortVersions(slices.Clone(versions))
	var out []Result
	for _, p := range probes {
		pctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
		start := time.Now()
		err := p.Run(pctx)
		lat := time.Since(start)
		cancel()
		r := Result{Probe: p.Name, Phase: phase, Versions: vs, OK: err == nil, Latency: lat}
		if err != nil {
			r.Err = err.Error()
		}
		out = append(out, r)
	}
	return out
}

// Options choose the probes of ReadOnly.
type Options struct {
	// Services are the services whose ?passing health query is probed
	// (one probe each). Empty: "consul" (the servers' own service, on
	// every version).
	Services []string
	// ACL adds the ACL token and policy reads (1.4 and later); set it when
	// ACLs are on and the client carries a token allowed to read them.
	ACL bool
	// Wait is the blocking probes' wait (0: DefaultWait).
	Wait time.Duration
}

// ReadOnly is the set of probes that only read, safe against a live
// cluster during a real upgrade: blocking-catalog, health-passing/<each
// service> and health-blocking/<each service>, catalog-nodes,
// catalog-services and, with ACL, acl-tokens and acl-policies.
func ReadOnly(c *api.Client, o Options) []Probe {
	services := o.Services
	if len(services) == 0 {
		services = []string{"consul"}
	}
	ps := []Probe{BlockingCatalog(c, o.Wait)}
	for _, s := range services {
		ps = append(ps, HealthPassing(c, s), HealthBlocking(c, s, o.Wait))
	}
	ps = append(ps, CatalogNodes(c), CatalogServices(c))
	if o.ACL {
		ps = append(ps, ACLTokens(c), ACLPolicies(c))
	}
	return ps
}

// Connect is a client for address (host:port, or an http(s):// URL),
// with the token and TLS settings of the CONSUL_HTTP_* variables and
// token when it is not empty.
func Connect(address, token string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if address != "" {
		cfg.Address = address
	}
	if token != "" {
		cfg.Token = token
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("probe: consul client for %q: %w", address, err)
	}
	return c, nil
}

func q(ctx context.Context) *api.QueryOptions { return (&api.QueryOptions{}).WithContext(ctx) }

func waitOr(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultWait
	}
	return d
}

// blockingSlack is how much longer than its wait a blocking query may take
// to come back: Consul adds up to wait/16 of jitter, and the answer has to
// travel.
func blockingSlack(wait time.Duration) time.Duration { return wait + wait/16 + 3*time.Second }

// BlockingKV is a blocking query on key that must advance: it reads key's
// index, starts a blocking read at that index, calls write (which must
// change key, through any agent) and expects the blocking read to come
// back with a higher index within wait. The probe reads; the write is its
// caller's.
func BlockingKV(c *api.Client, key string, wait time.Duration, write func(ctx context.Context) error) Probe {
	wait = waitOr(wait)
	return Probe{Name: NameBlockingKV, Run: func(ctx context.Context) error {
		_, meta, err := c.KV().Get(key, q(ctx))
		if err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		from := meta.LastIndex
		type answer struct {
			index uint64
			err   error
		}
		ch := make(chan answer, 1)
		bctx, cancel := context.WithCancel(ctx)
		defer cancel()
		start := time.Now()
		go func() {
			o := q(bctx)
			o.WaitIndex, o.WaitTime = from, wait
			_, m, err := c.KV().Get(key, o)
			if err != nil {
				ch <- answer{err: err}
				return
			}
			ch <- answer{index: m.LastIndex}
		}()
		if err := write(ctx); err != nil {
			return fmt.Errorf("write %s for the blocking query: %w", key, err)
		}
		select {
		case a := <-ch:
			took := time.Since(start)
			switch {
			case a.err != nil:
				return fmt.Errorf("blocking read of %s at index %d: %w", key, from, a.err)
			case a.index <= from:
				return fmt.Errorf("blocking read of %s at index %d came back after %s at index %d although the key was written; want an index above %d", key, from, took.Round(time.Millisecond), a.index, from)
			}
			return nil
		case <-time.After(blockingSlack(wait)):
			return fmt.Errorf("blocking read of %s at index %d did not come back within %s of the key's write (wait %s); want it back at once with a higher index", key, from, blockingSlack(wait), wait)
		case <-ctx.Done():
			return fmt.Errorf("blocking read of %s at index %d: %w", key, from, ctx.Err())
		}
	}}
}

// BlockingCatalog is a blocking query on the catalog's services, read
// only: it reads their index and blocks on it for wait; Consul must answer
// within wait plus its jitter, with an index not below the one read.
func BlockingCatalog(c *api.Client, wait time.Duration) Probe {
	wait = waitOr(wait)
	return Probe{Name: NameBlockingCatalog, Run: func(ctx context.Context) error {
		_, meta, err := c.Catalog().Services(q(ctx))
		if err != nil {
			return fmt.Errorf("read /v1/catalog/services: %w", err)
		}
		from := meta.LastIndex
		bctx, cancel := context.WithTimeout(ctx, blockingSlack(wait))
		defer cancel()
		o := q(bctx)
		o.WaitIndex, o.WaitTime = from, wait
		start := time.Now()
		_, m, err := c.Catalog().Services(o)
		took := time.Since(start)
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return fmt.Errorf("blocking read of /v1/catalog/services at index %d did not come back within %s (wait %s); want an answer by the end of its wait", from, blockingSlack(wait), wait)
		case err != nil:
			return fmt.Errorf("blocking read of /v1/catalog/services at index %d: %w", from, err)
		case m.LastIndex < from:
			return fmt.Errorf("blocking read of /v1/catalog/services at index %d came back after %s at index %d; want an index of at least %d (the index went backwards)", from, took.Round(time.Millisecond), m.LastIndex, from)
		}
		return nil
	}}
}

// HealthPassing is /v1/health/service/<service>?passing: at least one
// instance must be returned. When none is, the error says how many
// instances the query without ?passing returns and their checks' states,
// so a critical check (an instance rightly left out) reads apart from a
// filter that drops healthy instances (hashicorp/consul#23254).
func HealthPassing(c *api.Client, service string) Probe {
	return Probe{Name: NameHealthPassing + "/" + service, Run: func(ctx context.Context) error {
		passing, _, err := c.Health().Service(service, "", true, q(ctx))
		if err != nil {
			return fmt.Errorf("/v1/health/service/%s?passing: %w", service, err)
		}
		if len(passing) > 0 {
			return nil
		}
		all, _, err := c.Health().Service(service, "", false, q(ctx))
		if err != nil {
			return fmt.Errorf("/v1/health/service/%s?passing returned no instance; without ?passing: %w", service, err)
		}
		var states []string
		for _, e := range all {
			states = append(states, fmt.Sprintf("%s on %s: %s", e.Service.ID, e.Node.Node, e.Checks.AggregatedStatus()))
		}
		if len(all) == 0 {
			return fmt.Errorf("/v1/health/service/%s?passing returned no instance, and without ?passing none is registered; want at least one passing instance", service)
		}
		return fmt.Errorf("/v1/health/service/%s?passing returned no instance of the %d registered (%s); want at least one passing instance", service, len(all), strings.Join(states, "; "))
	}}
}

// HealthBlocking is a blocking query on /v1/health/service/<service>: it
// reads the service's index and blocks on it for wait; Consul must answer
// without an error within wait plus its jitter, with an index not below
// the one read, or, when the index went backwards, answer the read a
// watcher then makes with its index reset. Through a client agent of 1.10
// or later it exercises the streaming backend (hashicorp/consul#16850).
func HealthBlocking(c *api.Client, service string, wait time.Duration) Probe {
	wait = waitOr(wait)
	path := "/v1/health/service/" + service
	return Probe{Name: NameHealthBlocking + "/" + service, Run: func(ctx context.Context) error {
		_, meta, err := c.Health().Service(service, "", false, q(ctx))
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		from := meta.LastIndex
		bctx, cancel := context.WithTimeout(ctx, blockingSlack(wait))
		defer cancel()
		o := q(bctx)
		o.WaitIndex, o.WaitTime = from, wait
		_, m, err := c.Health().Service(service, "", false, o)
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return fmt.Errorf("blocking read of %s at index %d did not come back within %s (wait %s); want an answer by the end of its wait", path, from, blockingSlack(wait), wait)
		case err != nil:
			return fmt.Errorf("blocking read of %s at index %d: %w", path, from, err)
		case m.LastIndex < from:
			// Consul documents that an index may go backwards and that a
			// watcher then resets to 0 ("Reset the index if it goes
			// backwards", developer.hashicorp.com/consul/api-docs/features/blocking).
			// Through a client of 1.10 or later the blocking read is the
			// streaming backend's view, whose index need not be the raft
			// index the first read gave: on a 1.13.9 client just restarted
			// in a restored replica, 121 came back as 10. The watcher's
			// reset read must answer.
			if _, _, err := c.Health().Service(service, "", false, q(ctx)); err != nil {
				return fmt.Errorf("blocking read of %s at index %d came back at index %d, and the read a watcher then makes (index reset to 0, as Consul documents) failed: %w", path, from, m.LastIndex, err)
			}
		}
		return nil
	}}
}

// ACLReplication is /v1/acl/replication of a secondary datacenter's agent:
// replication enabled and running, and its last success newer than its
// last error.
func ACLReplication(c *api.Client) Probe {
	return Probe{Name: NameACLReplication, Run: func(ctx context.Context) error {
		r, _, err := c.ACL().Replication(q(ctx))
		switch {
		case err != nil:
			return fmt.Errorf("/v1/acl/replication: %w", err)
		case !r.Enabled:
			return fmt.Errorf("/v1/acl/replication says replication is not enabled; want it enabled in a secondary datacenter with ACLs on")
		case !r.Running:
			return fmt.Errorf("/v1/acl/replication says replication is not running (source %s, last success %s, last error %s); want it running", r.SourceDatacenter, stamp(r.LastSuccess), stamp(r.LastError))
		case !r.LastError.IsZero() && !r.LastSuccess.After(r.LastError):
			return fmt.Errorf("/v1/acl/replication: the last error (%s) is newer than the last success (%s); want replication succeeding", stamp(r.LastError), stamp(r.LastSuccess))
		}
		return nil
	}}
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// CatalogNodes is /v1/catalog/nodes: at least one node.
func CatalogNodes(c *api.Client) Probe {
	return Probe{Name: NameCatalogNodes, Run: func(ctx context.Context) error {
		nodes, _, err := c.Catalog().Nodes(q(ctx))
		if err != nil {
			return fmt.Errorf("/v1/catalog/nodes: %w", err)
		}
		if len(nodes) == 0 {
			return errors.New("/v1/catalog/nodes returned no node; want at least the servers")
		}
		return nil
	}}
}

// CatalogServices is /v1/catalog/services: at least one service.
func CatalogServices(c *api.Client) Probe {
	return Probe{Name: NameCatalogServices, Run: func(ctx context.Context) error {
		s, _, err := c.Catalog().Services(q(ctx))
		if err != nil {
			return fmt.Errorf("/v1/catalog/services: %w", err)
		}
		if len(s) == 0 {
			return errors.New(`/v1/catalog/services returned no service; want at least "consul"`)
		}
		return nil
	}}
}

// ACLTokens is /v1/acl/tokens (1.4 and later): at least one token (the
// one the client reads with).
func ACLTokens(c *api.Client) Probe {
	return Probe{Name: NameACLTokens, Run: func(ctx context.Context) error {
		ts, _, err := c.ACL().TokenList(q(ctx))
		if err != nil {
			return fmt.Errorf("/v1/acl/tokens: %w", err)
		}
		if len(ts) == 0 {
			return errors.New("/v1/acl/tokens returned no token; want at least the one this probe reads with")
		}
		return nil
	}}
}

// ACLPolicies is /v1/acl/policies (1.4 and later): at least one policy
// (global-management is built in).
func ACLPolicies(c *api.Client) Probe {
	return Probe{Name: NameACLPolicies, Run: func(ctx context.Context) error {
		ps, _, err := c.ACL().PolicyList(q(ctx))
		if err != nil {
			return fmt.Errorf("/v1/acl/policies: %w", err)
		}
		if len(ps) == 0 {
			return errors.New("/v1/acl/policies returned no policy; want at least the built-in global-management")
		}
		return nil
	}}
}

// Finding is a probe that failed in at least one phase: the versions it
// failed on, and whether it had passed before (Broke: it passed in an
// earlier phase, so the upgrade broke it).
type Finding struct {
	Probe string `json:"probe"`
	// Phases are the phases it failed in, in order; Versions the union of
	// the servers' versions in them.
	Phases   []string `json:"phases"`
	Versions []string `json:"versions"`
	// Broke is true when it passed in an earlier phase.
	Broke bool `json:"broke"`
	// Err is its first failure.
	Err string `json:"err"`
}

func (f Finding) String() string {
	how := "failed"
	if f.Broke {
		how = "broke"
	}
	return fmt.Sprintf("probe %s %s on %s (%s): %s", f.Probe, how, strings.Join(f.Versions, " + "), strings.Join(f.Phases, ", "), f.Err)
}

// Findings are the probes of results (in the order of their first
// result) that failed in any phase.
func Findings(results []Result) []Finding {
	var order []string
	by := map[string][]Result{}
	for _, r := range results {
		if _, ok := by[r.Probe]; !ok {
			order = append(order, r.Probe)
		}
		by[r.Probe] = append(by[r.Probe], r)
	}
	var out []Finding
	for _, name := range order {
		var f *Finding
		passed := false
		for _, r := range by[name] {
			if r.OK {
				passed = true
				continue
			}
			if f == nil {
				f = &Finding{Probe: name, Err: r.Err, Broke: passed}
			}
			f.Phases = append(f.Phases, r.Phase)
			for _, v := range r.Versions {
				if !slices.Contains(f.Versions, v) {
					f.Versions = append(f.Versions, v)
				}
			}
		}
		if f != nil {
			f.Versions = sortVersions(f.Versions)
			out = append(out, *f)
		}
	}
	return out
}

// sortVersions sorts versions in version order (text order for one that
// does not parse) and drops repeats.
func sortVersions(vs []string) []string {
	slices.SortFunc(vs, func(a, b string) int {
		va, ea := version.NewVersion(a)
		vb, eb := version.NewVersion(b)
		if ea != nil || eb != nil {
			return strings.Compare(a, b)
		}
		return va.Compare(vb)
	})
	return slices.Compact(vs)
}

// Live is ReadOnly for a live cluster reached at address (as Connect
// reaches it, "" for $CONSUL_HTTP_ADDR) with the given services. The ACL
// reads are added when the client carries a token (CONSUL_HTTP_TOKEN or
// CONSUL_HTTP_TOKEN_FILE) and the cluster returns that token's own record
// (/v1/acl/token/self: ACLs on, 1.4 and later, the token valid); note says
// why they were left out otherwise ("" when they are in). With them, an
// agent of a secondary datacenter whose ACL replication is enabled adds
// acl-replication.
func Live(ctx context.Context, address string, services []string) (probes []Probe, note string, err error) {
	c, err := Connect(address, "")
	if err != nil {
		return nil, "", err
	}
	acl := false
	cfg := api.DefaultConfig()
	switch {
	case cfg.Token == "" && cfg.TokenFile == "":
		note = "no ACL token given (CONSUL_HTTP_TOKEN), so the ACL reads are left out"
	default:
		if _, _, terr := c.ACL().TokenReadSelf(q(ctx)); terr != nil {
			note = fmt.Sprintf("the ACL reads are left out: the token's own record could not be read (%v); ACLs are off, older than 1.4, or the token is not valid", terr)
		} else {
			acl = true
		}
	}
	probes = ReadOnly(c, Options{Services: services, ACL: acl})
	if acl {
		if r, _, rerr := c.ACL().Replication(q(ctx)); rerr == nil && r.Enabled {
			probes = append(probes, ACLReplication(c)) // a secondary datacenter
		}
	}
	return probes, note, nil
}
