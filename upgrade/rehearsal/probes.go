package rehearsal

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
)

// probeWait is the wait of the rehearsal's blocking probes: long enough
// to block, short enough that the probes of a phase take a few seconds.
const probeWait = time.Second

// prober runs the rehearsal's probes through the replica's run agent (the
// first client) in each phase, and keeps their results.
type prober struct {
	rp      *replica
	probes  []probe.Probe
	logf    func(string, ...any)
	results []probe.Result
}

// newProber builds the probes of a rehearsal: blocking-kv on
// prefix/probe-blocking-kv (written by the rehearsal through the same
// agent), then probe.ReadOnly's (the ACL reads with a token).
func newProber(r *resolved, rp *replica, prefix string) (*prober, error) {
	addr := rp.consulAddr()
	c, err := probe.Connect(addr, r.Token)
	if err != nil {
		return nil, err
	}
	key := prefix + "/probe-blocking-kv"
	dc := newDataClient(addr, r.Token)
	n := 0
	write := func(ctx context.Context) error {
		n++
		return dc.put(ctx, kvPath(key), strings.NewReader(fmt.Sprintf("probe write %d", n)))
	}
	ps := append([]probe.Probe{probe.BlockingKV(c, key, probeWait, write)},
		probe.ReadOnly(c, probe.Options{Services: r.ProbeServices, ACL: r.Token != "", Wait: probeWait})...)
	return &prober{rp: rp, probes: ps, logf: r.logf}, nil
}

// serverVersions are the versions the replica's servers run now.
func (rp *replica) serverVersions() []string {
	var out []string
	for _, s := range rp.specs {
		if s.Role != transport.RoleServer {
			continue
		}
		if a, ok := rp.tr.Agent(s.Name); ok {
			out = append(out, a.Version)
		}
	}
	return out
}

// run runs every probe once in phase.
func (p *prober) run(ctx context.Context, phase string) {
	res := probe.RunAll(ctx, p.probes, phase, p.rp.serverVersions())
	p.results = append(p.results, res...)
	var failed []string
	for _, r := range res {
		if !r.OK {
			failed = append(failed, r.Probe)
		}
	}
	if len(failed) == 0 {
		p.logf("probes %s: all %d ok", phase, len(res))
	} else {
		p.logf("probes %s: %d of %d FAILED (%s)", phase, len(failed), len(res), strings.Join(failed, ", "))
	}
}

// probePhases are the phases of the results, in order of first result.
func probePhases(results []probe.Result) (phases []string, versions map[string][]string) {
	versions = map[string][]string{}
	for _, r := range results {
		if !slices.Contains(phases, r.Phase) {
			phases = append(phases, r.Phase)
			versions[r.Phase] = r.Versions
		}
	}
	return phases, versions
}

// writeProbeSection writes the probe table (probe × phase) and the
// findings.
func (r *Report) writeProbeSection(p func(string, ...any)) {
	p("\n## Probes\n\n")
	if len(r.Probes) == 0 {
		p("No probe ran.\n")
		return
	}
	p("Read as a user of the cluster reads it, through the replica's first agent, before the upgrade, after each step (the mixed-version window) and after. A cell is ok or FAIL with the probe's latency; a failure's error is under Findings.\n\n")
	phases, versions := probePhases(r.Probes)
	p("| probe |")
	for _, ph := range phases {
		p(" %s (%s) |", ph, strings.Join(versions[ph], " + "))
	}
	p("\n|---|%s\n", strings.Repeat("---|", len(phases)))
	var names []string
	cell := map[[2]string]probe.Result{}
	for _, res := range r.Probes {
		if !slices.Contains(names, res.Probe) {
			names = append(names, res.Probe)
		}
		cell[[2]string{res.Probe, res.Phase}] = res
	}
	for _, n := range names {
		p("| %s |", n)
		for _, ph := range phases {
			res, ok := cell[[2]string{n, ph}]
			switch {
			case !ok:
				p(" - |")
			case res.OK:
				p(" ok %s |", probeDur(res.Latency))
			default:
				p(" **FAIL** %s |", probeDur(res.Latency))
			}
		}
		p("\n")
	}
	p("\n### Findings\n\n")
	if len(r.ProbeFindings) == 0 {
		p("None: every probe answered as expected in every phase.\n")
		return
	}
	for _, f := range r.ProbeFindings {
		p("- %s\n", mdEscape(f.String()))
	}
}

// probeRow is the summary row of the probes.
func (r *Report) probeRow() string {
	phases, _ := probePhases(r.Probes)
	if len(r.ProbeFindings) == 0 {
		return fmt.Sprintf("%d probe run(s) in %d phase(s), all ok", len(r.Probes), len(phases))
	}
	var names []string
	for _, f := range r.ProbeFindings {
		names = append(names, fmt.Sprintf("%s on %s", f.Probe, strings.Join(f.Versions, " + ")))
	}
	return fmt.Sprintf("%d probe run(s) in %d phase(s); %d FAILED: %s (see Probes)", len(r.Probes), len(phases), len(r.ProbeFindings), strings.Join(names, "; "))
}

// probeDur is a probe's latency: to the millisecond below a second (most
// answers take a few).
func probeDur(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return dur(d)
}
