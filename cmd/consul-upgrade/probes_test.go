package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	readprobe "github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
)

// apply -probes runs the probes before the run, after each step and
// after, and prints each result with the servers' versions; a probe that
// fails in the mixed window is printed as FAILED and the run goes on to
// the target (exit 0), with a closing line saying it did not stop.
func TestApplyProbesPrintsEachResultAndAFailureDoesNotHaltTheRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 2)
		fake := withSim(t, sim)
		var gotAddr string
		var gotServices []string
		old := liveProbes
		liveProbes = func(_ context.Context, addr string, services []string) ([]readprobe.Probe, string, error) {
			gotAddr, gotServices = addr, services
			return []readprobe.Probe{
				{Name: "always-ok", Run: func(context.Context) error { return nil }},
				{Name: "mixed-breaks", Run: func(context.Context) error {
					if sim.Version("s1") != sim.Version("s2") || sim.Version("s2") != sim.Version("s3") {
						return errors.New("no instance while the servers' versions differ")
					}
					return nil
				}},
			}, "no ACL token given (CONSUL_HTTP_TOKEN), so the ACL reads are left out", nil
		}
		t.Cleanup(func() { liveProbes = old })
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-yes", "-probes", "-probe-services", "web,db", "-http-addr", "10.0.0.1")
		if code != exitOK {
			t.Fatalf("apply -probes: exit %d\n%s\n%s", code, out, stderr)
		}
		if s := swaps(fake); len(s) != 5 {
			t.Errorf("swaps %v: want every server and client swapped although a probe failed", s)
		}
		if gotAddr != "10.0.0.1:8500" || strings.Join(gotServices, ",") != "web,db" {
			t.Errorf("probes built for %q with services %v; want 10.0.0.1:8500 and web,db", gotAddr, gotServices)
		}
		for _, want := range []string{
			"probes: no ACL token given",
			"probe always-ok before (1.12.9): ok",
			"probe mixed-breaks before (1.12.9): ok",
			"probe mixed-breaks step 2 (1.12.9, 1.13.9): FAILED",
			"no instance while the servers' versions differ",
			"probe mixed-breaks step 4 (1.13.9): ok",
			"probe always-ok after (1.13.9): ok",
			"probes: 2 probe result(s) FAILED (above); the run did not stop for them",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	})
}

// Without -probes no probe is built.
func TestApplyWithoutProbesBuildsNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		withSim(t, newSim(3, 0))
		old := liveProbes
		built := false
		liveProbes = func(context.Context, string, []string) ([]readprobe.Probe, string, error) {
			built = true
			return nil, "", nil
		}
		t.Cleanup(func() { liveProbes = old })
		planFile := filepath.Join(t.TempDir(), "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		if code, out, stderr := cli(t, "apply", "-plan", planFile, "-yes"); code != exitOK || built || strings.Contains(stderr, "probe ") {
			t.Errorf("apply: exit %d, probes built %v\n%s\n%s", code, built, out, stderr)
		}
	})
}

// With -dc, the probes also go through the first agent of each other
// datacenter, named "DC: probe" (a secondary's acl-replication among
// them), and that datacenter's note is printed with its name.
func TestProbesGoThroughEachOtherDatacenterNamedByIt(t *testing.T) {
	old := liveProbes
	t.Cleanup(func() { liveProbes = old })
	var addrs []string
	liveProbes = func(_ context.Context, addr string, _ []string) ([]readprobe.Probe, string, error) {
		addrs = append(addrs, addr)
		ps := []readprobe.Probe{{Name: "catalog-nodes", Run: func(context.Context) error { return nil }}}
		if addr == "10.0.2.1:8500" {
			return append(ps, readprobe.Probe{Name: "acl-replication", Run: func(context.Context) error { return nil }}), "", nil
		}
		return ps, "no ACL token given", nil
	}
	on, services := true, "consul"
	var out strings.Builder
	p, err := startProbes(t.Context(), probeFlags{on: &on, services: &services}, "10.0.1.1:8500", map[string][]string{"dc2": {"10.0.2.1:8500", "10.0.2.2:8500"}}, nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, pr := range p.probes {
		names = append(names, pr.Name)
	}
	if got := strings.Join(names, ","); got != "catalog-nodes,dc2: catalog-nodes,dc2: acl-replication" {
		t.Errorf("probes %q: want the own datacenter's, then dc2's named by it", got)
	}
	if strings.Join(addrs, ",") != "10.0.1.1:8500,10.0.2.1:8500" {
		t.Errorf("probes built through %v: want the own agent, then dc2's first", addrs)
	}
	if !strings.Contains(out.String(), "probes: no ACL token given") {
		t.Errorf("output %q lacks the own datacenter's note", out.String())
	}
}
