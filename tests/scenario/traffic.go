package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario/traffictest"
)

// Traffic records KV traffic (internal/traffic: puts, check-and-sets and
// consistent reads on a few keys) through the cluster's agents while a
// scenario runs, then checks the history for linearizability and lost
// acknowledged writes (traffictest.Require: a failure fails the test and keeps
// the history and Porcupine's visualization). Use it as
// Scenario{During: tr.During}; its fields hold the results afterwards.
type Traffic struct {
	// Config is the recorder's configuration. When it names no
	// endpoints, the workers go through every client agent, then every
	// server, in turn.
	Config traffic.Config
	// History, Report and Recorded (how long the traffic ran, final reads
	// excluded) are filled in when the run has returned.
	History  traffic.History
	Report   traffic.Report
	Recorded time.Duration
}

// During starts the recorder; the function it returns stops it and checks
// the history.
func (tr *Traffic) During(t *testing.T, cl *consulrig.Cluster) func() {
	t.Helper()
	cfg := tr.Config
	if len(cfg.Endpoints) == 0 {
		for _, n := range append(cl.Clients(), cl.Servers()...) {
			cfg.Endpoints = append(cfg.Endpoints, traffic.Endpoint{Name: n, Addr: cl.HTTPAddr(n)})
		}
	}
	rec, err := traffic.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		tr.Recorded = rec.Elapsed()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		h, err := rec.Stop(ctx)
		tr.History = h
		if err != nil {
			t.Error(err)
		}
		tr.Report = traffictest.Require(t, h)
		t.Logf("TRAFFIC %s; recorded for %s; by agent: %s", tr.Report, tr.Recorded.Round(100*time.Millisecond), h.ByNode())
	}
}
