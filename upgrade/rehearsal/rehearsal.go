package rehearsal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/seed-e5e14ead/consul-upgrade/internal/traffic"
	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/probe"
)

// Run rehearses an upgrade: it starts a loopback replica of the cluster's
// shape (one datacenter: the same servers on the same versions, and a
// scaled-down number of clients), finds the binary of every version of the
// path, runs upgrade.Run with the same target and policy through
// transport/local while recorded KV traffic goes through every agent,
// checks the history for linearizability, writes report.md and
// timeline.svg into Options.OutDir, and tears the replica down: every
// agent process it started is killed by its pid and waited for, however
// Run ends (ctx cancelled included).
//
// Options that cannot be rehearsed are refused before anything starts:
// *OptionsError, *MissingBinaryError (one per missing version, joined;
// each names the command that builds it), *SnapshotFileError (a backup
// file that does not verify) or the planner's refusal; with WithData, a
// backup of the live cluster that fails is returned before the replica
// starts. Once the replica runs, Run returns a Report whatever happens;
// its error is the upgrade's (a *upgrade.HaltError, or ctx's), one
// wrapping ErrDataNotRestored, or a teardown failure. Data not read back
// equal is not an error: Report.Data says so (DataReport.Equal).
// An upgrade that completes with lost writes or a history that is not
// linearizable is not an error: the report says so (Report.Linearizable,
// Report.Traffic.Lost). Nor is a probe that fails: Report.ProbeFindings
// names it with the versions it failed on.
//
// The replica's leader is whichever server it elects, so the steps Run
// takes are those the planner chooses for the replica (the same policy
// and path; the leader's name may differ from the plan's).
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	r, err := resolve(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	if err := os.MkdirAll(r.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("rehearsal: output folder: %w", err)
	}

	var data *dataRun
	if r.withData() {
		if r.Snapshot == "" {
			r.logf("taking a backup of the live cluster (read only)")
		}
		if data, err = takeBackup(ctx, r); err != nil {
			return nil, err
		}
		defer func() {
			if cerr := data.cleanup(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("rehearsal: removing the backup taken: %w", cerr))
			}
		}()
	}
	r.logf("starting the replica: %d server(s), %d client(s) of datacenter %s", len(r.shape.servers), len(r.shape.clients), r.shape.datacenter)
	rp, err := startReplica(ctx, r)
	if err != nil {
		return nil, err
	}
	rep = &Report{
		Target: r.target, Policy: r.policy, Path: r.path,
		Datacenter: r.shape.datacenter, Skipped: r.shape.skipped, RealClients: r.shape.realClients,
	}
	for _, s := range rp.specs {
		a := Agent{Name: s.Name, Version: s.Version, Address: s.Address}
		if s.Role == transport.RoleServer {
			rep.Servers = append(rep.Servers, a)
		} else {
			rep.Clients = append(rep.Clients, a)
		}
	}
	defer func() {
		r.logf("tearing the replica down: killing %d agent process(es) by pid", len(rp.PIDs()))
		cerr := rp.close()
		rep.PIDs = rp.PIDs()
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("rehearsal: teardown: %w", cerr))
		}
	}()
	r.logf("replica ready on 127.0.%d.x (logs in %s)", rp.block, rp.dir)

	prefix := "rehearsal"
	var runErr error
	if data != nil {
		rep.Data = data.rep
		r.logf("restoring %s (%s) into the replica", data.rep.Source, data.rep.Backup.Kind)
		if rerr := data.restore(ctx, rp, len(r.shape.servers)); rerr != nil {
			data.rep.Err = rerr.Error()
			runErr = fmt.Errorf("%w: %w", ErrDataNotRestored, rerr)
		} else {
			prefix = trafficPrefix(data.restored)
			if data.rep.Backup.Kind == planner.BackupLogical {
				r.logf("restored: %d KV entries (a logical backup holds no catalog)", data.rep.Restored[KindKV])
			} else {
				r.logf("restored: %d KV entries, %d service instance(s) on non-agent nodes", data.rep.Restored[KindKV], data.rep.Restored[KindServices])
			}
		}
	}
	if runErr == nil {
		runErr = rehearse(ctx, r, rp, rep, prefix)
		if data != nil {
			r.logf("reading the data back")
			data.readBack(ctx, rp, prefix, runErr)
		}
	}
	rep.Done = runErr == nil
	if runErr != nil {
		rep.Err = runErr.Error()
	}
	if werr := rep.Write(r.OutDir); werr != nil {
		return rep, errors.Join(runErr, fmt.Errorf("rehearsal: writing the report: %w", werr))
	}
	return rep, runErr
}

// rehearse runs the upgrade under traffic and fills in rep.
func rehearse(ctx context.Context, r *resolved, rp *replica, rep *Report, prefix string) error {
	consul, err := upgrade.ConnectAddr(rp.consulAddr())
	if err != nil {
		return err
	}
	var eps []traffic.Endpoint
	for _, role := range []transport.Role{transport.RoleClient, transport.RoleServer} {
		for _, s := range rp.specs {
			if s.Role == role {
				eps = append(eps, traffic.Endpoint{Name: s.Name, Addr: s.HTTPAddr()})
			}
		}
	}
	var pr *prober // built before the traffic starts: an error returns with nothing running
	if !r.NoProbes {
		if pr, err = newProber(r, rp, prefix); err != nil {
			return err
		}
	}
	rec, err := traffic.Start(traffic.Config{Endpoints: eps, Prefix: prefix, Rate: r.Rate, MaxDuration: r.Timeout})
	if err != nil {
		return err
	}
	origin := time.Now().Add(-rec.Elapsed())
	rep.Started = origin
	since := func(t time.Time) time.Duration { return t.Sub(origin) }

	watch := watchLeader(rp, origin)
	marks := rp.markLogs()
	leaderAtStart, _ := pollLeader(&http.Client{Timeout: 2 * time.Second}, []string{rp.consulAddr()}, rp.byIP())

	if pr != nil {
		pr.run(ctx, probe.PhaseBefore)
	}

	var mu sync.Mutex // OnEvent is synchronous; the mutex guards against a future change
	open := -1        // index in rep.Steps of the step in progress
	cfg := upgrade.Config{
		Consul:      consul,
		Transport:   rp.tr,
		Target:      r.target,
		Policy:      r.policy,
		Snapshot:    upgrade.SnapshotDir(filepath.Join(rp.dir, "snapshots")),
		ServerAPI:   upgrade.ServerHTTP(8500),
		GateTimeout: 5 * time.Minute,
		OnEvent: func(e upgrade.Event) {
			mu.Lock()
			switch e.Kind {
			case upgrade.EventStepStarted:
				rep.Steps = append(rep.Steps, StepFigures{Step: e.Step, Start: since(e.Time), GateStart: -1, End: since(e.Time)})
				open = len(rep.Steps) - 1
			case upgrade.EventGateWaiting:
				if open >= 0 {
					s := &rep.Steps[open]
					if s.GateStart < 0 {
						s.GateStart = since(e.Time)
					}
					if c := string(e.Condition); c != "" && !slices.Contains(s.WaitedOn, c) {
						s.WaitedOn = append(s.WaitedOn, c)
					}
					s.End = since(e.Time)
				}
			case upgrade.EventStepDone:
				if open >= 0 {
					rep.Steps[open].End, rep.Steps[open].Done = since(e.Time), true
					open = -1
				}
			case upgrade.EventHalted:
				if open >= 0 {
					rep.Steps[open].End = since(e.Time)
				}
			}
			mu.Unlock()
			if pr != nil && e.Kind == upgrade.EventStepDone {
				// The mixed window: the probes run while the run waits
				// (OnEvent is synchronous), before the next step acts.
				pr.run(ctx, probe.AfterStep(e.Index))
			}
			if r.OnEvent != nil {
				r.OnEvent(e)
			}
		},
	}
	if err := os.MkdirAll(filepath.Join(rp.dir, "snapshots"), 0o755); err != nil {
		return err
	}
	start := time.Now()
	rep.RunStart = since(start)
	res, runErr := upgrade.Run(ctx, cfg)
	rep.Wall = time.Since(start)
	if res != nil {
		rep.Stabilization = res.Baseline.ServerStabilizationTime
	}
	if rep.Stabilization == 0 {
		rep.Stabilization = upgrade.DefaultStabilizationTime
	}
	if pr != nil {
		if ctx.Err() == nil {
			pr.run(ctx, probe.PhaseAfter)
		}
		rep.Probes = pr.results
		rep.ProbeFindings = probe.Findings(pr.results)
	}
	mu.Lock()
	if open >= 0 { // a step cut short (ctx ended)
		rep.Steps[open].End = since(time.Now())
	}
	mu.Unlock()

	// Stop the traffic; its final reads need the replica, which is still
	// up. When ctx has ended (Ctrl-C) they get a short bound.
	rep.Recorded = rec.Elapsed()
	stopWait, checkWait := time.Minute, traffic.DefaultCheckTimeout
	if ctx.Err() != nil {
		stopWait, checkWait = 10*time.Second, 20*time.Second
	}
	sctx, scancel := context.WithTimeout(context.Background(), stopWait)
	h, stopErr := rec.Stop(sctx)
	scancel()
	rep.NoLeader = watch.stop()
	rep.Leaders = []LeaderSeen{{At: 0, Leader: leaderAtStart}}
	for _, e := range rp.elections(marks) {
		rep.Leaders = append(rep.Leaders, LeaderSeen{At: since(e.at), Leader: e.node, Elected: true})
	}
	r.logf("traffic stopped: %d operations; checking linearizability", len(h))
	rep.Series, rep.Failed = series(h, rep.Recorded)
	rep.Traffic, err = traffic.Check(h, r.OutDir, checkWait)
	if err != nil {
		return errors.Join(runErr, err)
	}
	if rep.Traffic.Result == porcupine.Illegal {
		if rep.Defect, err = rep.explain(h, r.OutDir, checkWait); err != nil {
			return errors.Join(runErr, err)
		}
	}
	if runErr != nil {
		return runErr
	}
	return stopErr
}

// series counts the operations of h per second of their call, and returns
// the failed ones (indeterminate and not sent), the final reads excluded.
// The last, partial second of the recording is left out of the series.
func series(h traffic.History, recorded time.Duration) ([]Second, []traffic.Op) {
	whole := int(recorded / time.Second)
	var out []Second
	var failed []traffic.Op
	for _, op := range h {
		if op.Final {
			continue
		}
		i := int(op.Call / time.Second)
		for len(out) <= i && i < whole {
			out = append(out, Second{})
		}
		if op.Outcome != traffic.Done {
			failed = append(failed, op)
		}
		if i >= whole {
			continue
		}
		switch op.Outcome {
		case traffic.Done:
			out[i].OK++
		case traffic.Indeterminate:
			out[i].Indeterminate++
		case traffic.NotSent:
			out[i].NotSent++
		}
	}
	slices.SortStableFunc(failed, func(a, b traffic.Op) int { return int(a.Call - b.Call) })
	return out, failed
}

// leaderWatch polls the leader through the replica's agents every 200 ms
// and records the stretches when no agent could name a leader (the
// elections themselves come from the servers' logs).
type leaderWatch struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen []LeaderSeen // each change between a leader known ("") and not
}

func (rp *replica) byIP() map[string]string {
	byIP := map[string]string{}
	for n, ip := range rp.addr {
		byIP[ip] = n
	}
	return byIP
}

func watchLeader(rp *replica, origin time.Time) *leaderWatch {
	byIP := rp.byIP()
	var addrs []string
	for _, s := range rp.specs {
		if s.Role == transport.RoleClient {
			addrs = append(addrs, s.HTTPAddr())
		}
	}
	for _, s := range rp.specs {
		if s.Role == transport.RoleServer {
			addrs = append(addrs, s.HTTPAddr())
		}
	}
	w := &leaderWatch{done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second}
	w.wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			// No agent answering counts as no leader known: an agent
			// that cannot reach a leader answers with an error.
			leader, _ := pollLeader(client, addrs, byIP)
			if leader != "" {
				leader = "known"
			}
			w.mu.Lock()
			if len(w.seen) == 0 || w.seen[len(w.seen)-1].Leader != leader {
				w.seen = append(w.seen, LeaderSeen{At: time.Since(origin), Leader: leader})
			}
			w.mu.Unlock()
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
		}
	})
	return w
}

// pollLeader asks the agents in turn for /v1/status/leader; the first
// leader named counts ("" when none names one).
func pollLeader(client *http.Client, addrs []string, byIP map[string]string) (string, bool) {
	for _, a := range addrs {
		resp, err := client.Get("http://" + a + "/v1/status/leader")
		if err != nil {
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			continue
		}
		var addr string
		if json.Unmarshal(body, &addr) != nil {
			continue
		}
		if addr == "" {
			continue
		}
		ip, _, _ := strings.Cut(addr, ":")
		if n, ok := byIP[ip]; ok {
			return n, true
		}
		return addr, true
	}
	return "", false
}

func (w *leaderWatch) stop() []LeaderSeen {
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}
