// Package leave_test measures, on real agents, issue 21's question: below
// 1.15 (no transfer-leader step), would a graceful leave of each server
// (Consul 1.10.4 and later hand leadership over when a leader leaves,
// hashicorp/consul#11376) cost less than the stop the tool uses (SIGTERM,
// no leave, so the leader's stop costs one election)? The tool refuses
// leave for an in-place server swap (the catalogue's no-leave-in-place,
// after hashicorp/consul#17758, and transport.ValidateRequest), so the
// comparison drives the swaps itself through the rig's transport: followers
// first, the leader last, each server stopped (terminate, or `consul leave`)
// and started on the target, then waited on until the autopilot reports
// every server healthy and a failure tolerance of 1 again. A writer puts a
// key every 20 ms through the client; the leader and the failure tolerance
// are sampled through the client every 100 ms.
//
// Each case checks what must hold for both ways (no acknowledged write
// lost, every server on the target and a voter, the tolerance back at 1)
// and logs its figures on a line starting with FIGURES (tests/README.md
// has the table).
package leave_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

type health struct {
	Healthy          bool
	FailureTolerance int
	Servers          []struct {
		Name    string
		Healthy bool
		Voter   bool
	}
}

// sampler reads the autopilot's health through the client every 100 ms.
type sampler struct {
	mu        sync.Mutex
	min       int
	below     time.Duration // time with a failure tolerance under 1
	noLeader  time.Duration // time with no answer from a leader
	longestNL time.Duration
	last      health
	lastOK    bool
}

func (s *sampler) run(ctx context.Context, addr string) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	s.min = 99
	wg.Add(1)
	go func() {
		defer wg.Done()
		hc := &http.Client{Timeout: 2 * time.Second}
		last := time.Now()
		var nlSince time.Time
		for ctx.Err() == nil {
			var h health
			ok := false
			if resp, err := hc.Get("http://" + addr + "/v1/operator/autopilot/health"); err == nil {
				ok = resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil
				resp.Body.Close()
			}
			now := time.Now()
			step := now.Sub(last)
			last = now
			s.mu.Lock()
			s.last, s.lastOK = h, ok
			if ok {
				s.min = min(s.min, h.FailureTolerance)
				if h.FailureTolerance < 1 {
					s.below += step
				}
				nlSince = time.Time{}
			} else {
				s.noLeader += step
				if nlSince.IsZero() {
					nlSince = now
				}
				s.longestNL = max(s.longestNL, now.Sub(nlSince))
			}
			s.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// settled reports whether the last sample shows n healthy voters and a
// failure tolerance of 1 or more.
func (s *sampler) settled(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	voters := 0
	for _, sv := range s.last.Servers {
		if sv.Voter && sv.Healthy {
			voters++
		}
	}
	return s.lastOK && s.last.Healthy && voters == n && s.last.FailureTolerance >= 1
}

func measure(t *testing.T, from, to string, mode transport.StopMode) {
	ctx := t.Context()
	cl := consulrig.Start(t, consulrig.Options{Version: from})
	client := cl.Clients()[0]
	var smp sampler
	stopSampler := smp.run(ctx, cl.HTTPAddr(client))
	w := cl.StartWriter(client, "leave", 20*time.Millisecond)
	time.Sleep(2 * time.Second) // writes before the first swap

	leader, err := cl.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	order := slices.DeleteFunc(cl.Servers(), func(s string) bool { return s == leader })
	order = append(order, leader)
	began := time.Now()
	var settle []time.Duration
	for _, s := range order {
		start := time.Now()
		if err := cl.Transport().Stop(ctx, s, mode); err != nil {
			t.Fatalf("stop %s (%s): %v", s, mode, err)
		}
		if err := cl.Transport().Swap(ctx, transport.SwapRequest{Node: s, Role: transport.RoleServer, From: from, To: to, StopMode: transport.StopKill}); err != nil {
			t.Fatalf("start %s on %s: %v", s, to, err)
		}
		// Settled: the event waited on, bounded only by the test's deadline.
		for !smp.settled(len(order)) {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: the cluster did not settle with %d healthy voters and a failure tolerance of 1", s, len(order))
			case <-time.After(100 * time.Millisecond):
			}
		}
		settle = append(settle, time.Since(start).Round(100*time.Millisecond))
	}
	wall := time.Since(began)
	time.Sleep(2 * time.Second) // writes after the last swap
	stats := w.Stop()
	stopSampler()

	lost, err := cl.MissingWrites(ctx, client, "leave", stats.Acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(lost), lost)
	}
	for _, s := range order {
		v, err := cl.Transport().RunningVersion(ctx, s)
		if err != nil || v != to {
			t.Errorf("%s runs %q (%v), want %s", s, v, err, to)
		}
	}
	t.Logf("FIGURES %s -> %s stop %s: writes %d, failed %d (%d bursts), longest failure %s, no leader through the client %s (longest %s), failure tolerance min %d, below 1 for %s, each server until settled %v, wall %s",
		from, to, mode, len(stats.Acked)+stats.Failed, stats.Failed, stats.Bursts, stats.LongestBurst.Round(10*time.Millisecond),
		smp.noLeader.Round(100*time.Millisecond), smp.longestNL.Round(100*time.Millisecond), smp.min, smp.below.Round(100*time.Millisecond), settle, wall.Round(time.Second))
}

func TestLeaveVersusTerminate_1_12_9_to_1_13_9(t *testing.T) {
	t.Run("terminate", func(t *testing.T) { measure(t, "1.12.9", "1.13.9", transport.StopTerminate) })
	t.Run("leave", func(t *testing.T) { measure(t, "1.12.9", "1.13.9", transport.StopLeave) })
}

func TestLeaveVersusTerminate_1_10_12_to_1_11_11(t *testing.T) {
	t.Run("terminate", func(t *testing.T) { measure(t, "1.10.12", "1.11.11", transport.StopTerminate) })
	t.Run("leave", func(t *testing.T) { measure(t, "1.10.12", "1.11.11", transport.StopLeave) })
}
