package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	readprobe "github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
)

// liveProbes builds apply -probes' probes; tests replace it.
var liveProbes = readprobe.Live

// probeFlags are apply's -probes and -probe-services.
type probeFlags struct {
	on       *bool
	services *string
}

func addProbeFlags(fs *flag.FlagSet) probeFlags {
	return probeFlags{
		on:       fs.Bool("probes", false, "run read-only probes (a blocking catalog query, ?passing and a blocking health query of -probe-services, catalog nodes and services, ACL token and policy lists with a token, ACL replication in a -dc secondary) through -http-addr and each -dc before the run, after each step and after, and print each result on stderr; a failing probe does not stop the run"),
		services: fs.String("probe-services", "consul", "comma-separated `SERVICES` whose ?passing health query -probes reads"),
	}
}

// applyProbes runs the probes of apply -probes. They only read: a probe
// that fails in the mixed window is information for the operator, not a
// reason to stop, because the step's gate has already judged the cluster
// healthy by its own conditions, and stopping between steps would leave
// the cluster in the mixed window longer. So each result is printed and
// the run goes on.
type applyProbes struct {
	probes   []readprobe.Probe
	consul   upgrade.Consul
	out      io.Writer
	failures int
}

// startProbes builds the probes (nil without -probes) through addr and,
// named "DC: probe", through the first agent of each other datacenter of
// dcs (-dc; a secondary with ACL replication adds acl-replication), and
// prints why ACL reads are left out.
func startProbes(ctx context.Context, f probeFlags, addr string, dcs map[string][]string, consul upgrade.Consul, out io.Writer) (*applyProbes, error) {
	if !*f.on {
		return nil, nil
	}
	ps, note, err := liveProbes(ctx, addr, splitList(*f.services))
	if err != nil {
		return nil, fmt.Errorf("-probes: %w", err)
	}
	if note != "" {
		fmt.Fprintf(out, "probes: %s\n", note)
	}
	for _, dc := range slices.Sorted(maps.Keys(dcs)) {
		if len(dcs[dc]) == 0 {
			continue
		}
		more, note, err := liveProbes(ctx, dcs[dc][0], splitList(*f.services))
		if err != nil {
			return nil, fmt.Errorf("-probes: datacenter %s: %w", dc, err)
		}
		if note != "" {
			fmt.Fprintf(out, "probes: %s: %s\n", dc, note)
		}
		for _, p := range more {
			p.Name = dc + ": " + p.Name
			ps = append(ps, p)
		}
	}
	return &applyProbes{probes: ps, consul: consul, out: out}, nil
}

// run runs every probe in phase and prints each result, with the servers'
// versions as the cluster reports them now.
func (p *applyProbes) run(ctx context.Context, phase string) {
	if p == nil {
		return
	}
	var versions []string
	if c, err := upgrade.Discover(ctx, p.consul); err == nil {
		for _, s := range c.Servers {
			versions = append(versions, s.Version)
		}
	}
	for _, r := range readprobe.RunAll(ctx, p.probes, phase, versions) {
		if !r.OK {
			p.failures++
		}
		fmt.Fprintln(p.out, r.String())
	}
}

// onEvent runs the probes after each step done, then passes e on.
func (p *applyProbes) onEvent(ctx context.Context, next func(upgrade.Event)) func(upgrade.Event) {
	if p == nil {
		return next
	}
	return func(e upgrade.Event) {
		next(e)
		if e.Kind == upgrade.EventStepDone {
			p.run(ctx, readprobe.AfterStep(e.Index))
		}
	}
}

// summary is printed at the end of the run.
func (p *applyProbes) summary() {
	if p == nil || p.failures == 0 {
		return
	}
	fmt.Fprintf(p.out, "probes: %d probe result(s) FAILED (above); the run did not stop for them: probes only read, and the gates judged each step\n", p.failures)
}

// probeDCs is -dc's datacenters and addresses (nil without -dc or when
// they do not parse: connect refuses them first).
func (cf connectFlags) probeDCs() map[string][]string {
	if cf.dcs == nil {
		return nil
	}
	dcs, err := parseDatacenters(cf.dcs.vals)
	if err != nil {
		return nil
	}
	return dcs
}

// probeAddr is the first agent address of -http-addr (or
// $CONSUL_HTTP_ADDR) with its port, "" for consul/api's default.
func (cf connectFlags) probeAddr() string {
	name, list := "-http-addr", *cf.addr
	if list == "" {
		name, list = "CONSUL_HTTP_ADDR", os.Getenv("CONSUL_HTTP_ADDR")
	}
	if list == "" {
		return ""
	}
	addrs, err := parseAddrs(name, list)
	if err != nil || len(addrs) == 0 {
		return ""
	}
	return addrs[0]
}
