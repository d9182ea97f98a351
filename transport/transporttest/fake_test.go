package transporttest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

const (
	from = "1.12.9"
	to   = "1.13.9"
)

func fakeState(f *transporttest.Fake) func(context.Context, string) (string, bool, string, error) {
	return func(_ context.Context, node string) (string, bool, string, error) {
		n, ok := f.Node(node)
		if !ok {
			return "", false, "", fmt.Errorf("fake has no node %s", node)
		}
		return n.Version, n.Running, strconv.Itoa(n.Incarnation), nil
	}
}

func TestFakePassesConformance(t *testing.T) {
	for _, node := range []transporttest.FakeNode{transporttest.Server("s1", from), transporttest.Client("c1", from)} {
		t.Run(string(node.Role), func(t *testing.T) {
			transporttest.Run(t, func(t *testing.T) transporttest.Harness {
				f := transporttest.NewFake(node, transporttest.Server("other", from))
				f.MissingBinary(node.Name, "1.14.8")
				return transporttest.Harness{Transport: f, Node: node.Name, Role: node.Role, From: from, To: to, State: fakeState(f), Missing: "1.14.8"}
			})
		})
	}
}

func swapReq(node string) transport.SwapRequest {
	return transport.SwapRequest{Node: node, Role: transport.RoleServer, From: from, To: to, StopMode: transport.StopKill}
}

// mustNode returns the node or fails the test.
func mustNode(t *testing.T, f *transporttest.Fake, name string) transporttest.FakeNode {
	t.Helper()
	n, ok := f.Node(name)
	if !ok {
		t.Fatalf("fake lost node %s", name)
	}
	return n
}

func touched(calls []transporttest.Call) []transporttest.Call {
	var out []transporttest.Call
	for _, c := range calls {
		if c.TouchesState() {
			out = append(out, c)
		}
	}
	return out
}

func TestSwapStopsThenStartsAndRecordsInOrder(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from), transporttest.Server("s2", from))
	ctx := t.Context()
	for _, n := range []string{"s2", "s1"} {
		if err := f.Swap(ctx, swapReq(n)); err != nil {
			t.Fatalf("Swap(%s) = %v", n, err)
		}
	}
	var got []string
	for i, c := range f.Calls() {
		if c.Seq != i+1 {
			t.Errorf("call %d has Seq %d, want %d", i, c.Seq, i+1)
		}
		got = append(got, fmt.Sprintf("%s %s %s", c.Op, c.Node, c.To))
	}
	want := []string{"swap s2 " + to, "stop s2 ", "start s2 " + to, "swap s1 " + to, "stop s1 ", "start s1 " + to}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if n := mustNode(t, f, "s1"); n.Version != to || !n.Running || !n.Healthy || n.Incarnation != 1 {
		t.Errorf("s1 after swap = %+v, want %s, running, healthy, incarnation 1", n, to)
	}
}

func TestRefusedRequestRecordsNoCallThatTouchesState(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from))
	bad := []transport.SwapRequest{
		{Node: "s1; rm -rf /", Role: transport.RoleServer, To: to, StopMode: transport.StopKill},
		{Node: "$(reboot)", Role: transport.RoleServer, To: to, StopMode: transport.StopKill},
		{Node: "s1", Role: transport.RoleServer, To: "latest", StopMode: transport.StopKill},
		{Node: "s1", Role: transport.RoleServer, To: to, StopMode: transport.StopLeave},
		{Node: "nobody", Role: transport.RoleServer, To: to, StopMode: transport.StopKill},
	}
	// Faults are not taken by refused requests either.
	boom := errors.New("disk full")
	f.FailNext("s1", boom)
	for _, req := range bad {
		if err := f.Swap(t.Context(), req); err == nil {
			t.Errorf("Swap(%+v) = nil, want a refusal", req)
		}
	}
	calls := f.Calls()
	if len(calls) != len(bad) {
		t.Errorf("recorded %d calls, want one per request (%d)", len(calls), len(bad))
	}
	for _, c := range calls {
		if c.Op != transporttest.OpSwap || c.Err == nil {
			t.Errorf("call %+v: want a swap that records its refusal", c)
		}
	}
	if tc := touched(calls); len(tc) != 0 {
		t.Errorf("refused requests touched state: %+v", tc)
	}
	if n := mustNode(t, f, "s1"); n != transporttest.Server("s1", from) {
		t.Errorf("s1 = %+v, want untouched", n)
	}
	if err := f.Swap(t.Context(), swapReq("s1")); !errors.Is(err, boom) {
		t.Errorf("the first valid swap after the refusals = %v, want the injected failure still pending", err)
	}
}

func TestFailNextFailsOnceAndTouchesNothing(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from))
	boom := errors.New("disk full")
	f.FailNext("s1", boom)
	err := f.Swap(t.Context(), swapReq("s1"))
	if !errors.Is(err, boom) {
		t.Fatalf("Swap = %v, want an error wrapping %v", err, boom)
	}
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Node != "s1" || se.Phase != transport.PhaseStage {
		t.Errorf("Swap = %#v, want *SwapError{Node s1, Phase stage}", err)
	}
	if n := mustNode(t, f, "s1"); n.Version != from || !n.Running || n.Incarnation != 0 {
		t.Errorf("s1 after failed swap = %+v, want untouched", n)
	}
	if tc := touched(f.Calls()); len(tc) != 0 {
		t.Errorf("failed swap touched state: %+v", tc)
	}
	if err := f.Swap(t.Context(), swapReq("s1")); err != nil {
		t.Errorf("second swap = %v, want nil (the fault clears)", err)
	}
	if n := mustNode(t, f, "s1"); n.Version != to {
		t.Errorf("s1 after second swap runs %s, want %s", n.Version, to)
	}
}

func TestFailNextPassesASwapErrorThrough(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from))
	want := &transport.SwapError{Node: "s1", Phase: transport.PhaseVerify, To: to, Err: transport.ErrArtifact}
	f.FailNext("s1", want)
	err := f.Swap(t.Context(), swapReq("s1"))
	var se *transport.SwapError
	if !errors.As(err, &se) || se != want || !errors.Is(err, transport.ErrArtifact) {
		t.Errorf("Swap = %v, want the injected *SwapError itself", err)
	}
}

func TestHangNextBlocksUntilTheContextEnds(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from), transporttest.Server("s2", from))
	f.HangNext("s1")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Swap(ctx, swapReq("s1")) }()

	// While s1 hangs, the fake serves other nodes.
	if err := f.Swap(t.Context(), swapReq("s2")); err != nil {
		t.Fatalf("Swap(s2) while s1 hangs = %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("hung swap returned %v before its context ended", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("hung swap = %v, want an error wrapping context.Canceled", err)
		}
		var se *transport.SwapError
		if !errors.As(err, &se) || se.Node != "s1" {
			t.Errorf("hung swap = %v, want a *SwapError naming s1", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hung swap did not return after its context was cancelled")
	}
	if n := mustNode(t, f, "s1"); n.Version != from || !n.Running {
		t.Errorf("s1 after hung swap = %+v, want untouched", n)
	}
	if err := f.Swap(t.Context(), swapReq("s1")); err != nil {
		t.Errorf("swap after the hang = %v, want nil (the fault clears)", err)
	}
}

func TestComeBackOldSucceedsOnTheOldVersion(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from))
	f.ComeBackOld("s1")
	if err := f.Swap(t.Context(), swapReq("s1")); err != nil {
		t.Fatalf("Swap = %v, want nil (the fault hides behind success)", err)
	}
	n := mustNode(t, f, "s1")
	if n.Version != from || !n.Running || !n.Healthy || n.Incarnation != 1 {
		t.Errorf("s1 = %+v, want restarted on %s, running, healthy", n, from)
	}
	if v, err := f.RunningVersion(t.Context(), "s1"); err != nil || v != from {
		t.Errorf("RunningVersion = %q, %v; want %q", v, err, from)
	}
	if err := f.Swap(t.Context(), swapReq("s1")); err != nil {
		t.Fatal(err)
	}
	if n := mustNode(t, f, "s1"); n.Version != to {
		t.Errorf("after the fault cleared s1 runs %s, want %s", n.Version, to)
	}
}

func TestComeBackUnhealthyRunsTheNewVersionUnhealthy(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from))
	f.ComeBackUnhealthy("s1")
	if err := f.Swap(t.Context(), swapReq("s1")); err != nil {
		t.Fatalf("Swap = %v, want nil", err)
	}
	if n := mustNode(t, f, "s1"); n.Version != to || !n.Running || n.Healthy {
		t.Errorf("s1 = %+v, want %s running but unhealthy", n, to)
	}
	// A swap to the same version is not a no-op while the agent is unhealthy.
	if err := f.Swap(t.Context(), swapReq("s1")); err != nil {
		t.Fatal(err)
	}
	if n := mustNode(t, f, "s1"); !n.Healthy || n.Incarnation != 2 {
		t.Errorf("s1 after a repeated swap = %+v, want restarted (incarnation 2) and healthy", n)
	}
}

func TestBrokenVersionNeverComesUpAndRollbackRecovers(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from), transporttest.Server("s2", from))
	f.Broken(to)
	for _, node := range []string{"s1", "s2"} { // Broken stays in force
		err := f.Swap(t.Context(), swapReq(node))
		var se *transport.SwapError
		if !errors.As(err, &se) || se.Phase != transport.PhaseStart || !errors.Is(err, transport.ErrNotRunning) {
			t.Fatalf("Swap(%s) to broken %s = %v, want *SwapError{Phase start} wrapping ErrNotRunning", node, to, err)
		}
		if n := mustNode(t, f, node); n.Running || n.Healthy {
			t.Errorf("%s = %+v, want down", node, n)
		}
		if _, err := f.RunningVersion(t.Context(), node); !errors.Is(err, transport.ErrNotRunning) {
			t.Errorf("RunningVersion(%s) of a down node = %v, want ErrNotRunning", node, err)
		}
	}
	if err := f.Rollback(t.Context(), "s1"); err != nil {
		t.Fatalf("Rollback(s1) = %v", err)
	}
	if n := mustNode(t, f, "s1"); n.Version != from || !n.Running || !n.Healthy {
		t.Errorf("s1 after rollback = %+v, want %s running and healthy", n, from)
	}
}

func TestRollbackWithoutASwapIsRefused(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from))
	err := f.Rollback(t.Context(), "s1")
	var se *transport.SwapError
	if !errors.Is(err, transport.ErrInvalidRequest) || !errors.As(err, &se) || se.Phase != transport.PhaseRollback {
		t.Errorf("Rollback of a never-swapped node = %v, want *SwapError{Phase rollback} wrapping ErrInvalidRequest", err)
	}
	if tc := touched(f.Calls()); len(tc) != 0 {
		t.Errorf("refused rollback touched state: %+v", tc)
	}
}

func TestOnSwapSeesTheFinalState(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from))
	var seen []string
	f.OnSwap = func(req transport.SwapRequest) {
		n, _ := f.Node(req.Node) // must not deadlock: the lock is released
		seen = append(seen, fmt.Sprintf("%s->%s runs %s", req.From, req.To, n.Version))
	}
	f.ComeBackOld("s1")
	_ = f.Swap(t.Context(), swapReq("s1"))
	_ = f.Swap(t.Context(), transport.SwapRequest{Node: "bad name", Role: transport.RoleServer, To: to, StopMode: transport.StopKill})
	_ = f.Swap(t.Context(), swapReq("s1"))
	_ = f.Rollback(t.Context(), "s1")
	want := []string{
		from + "->" + to + " runs " + from, // the observer learns the truth from Node
		from + "->" + to + " runs " + to,
		to + "->" + from + " runs " + from, // a rollback is reported as a swap back
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("OnSwap saw %q, want %q", seen, want)
	}
}

func TestFakeIsSafeForConcurrentUse(t *testing.T) {
	var nodes []transporttest.FakeNode
	for i := range 20 {
		nodes = append(nodes, transporttest.Client(fmt.Sprintf("c%d", i), from))
	}
	f := transporttest.NewFake(nodes...)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			node := fmt.Sprintf("c%d", i)
			req := transport.SwapRequest{Node: node, Role: transport.RoleClient, From: from, To: to, StopMode: transport.StopTerminate}
			for range 5 {
				_ = f.Swap(t.Context(), req)
				_, _ = f.RunningVersion(t.Context(), node)
				_ = f.Calls()
			}
		})
	}
	wg.Wait()
	for i := range 20 {
		if n := mustNode(t, f, fmt.Sprintf("c%d", i)); n.Version != to || n.Incarnation != 1 {
			t.Errorf("c%d = %+v, want %s after exactly one restart", i, n, to)
		}
	}
	if got := len(touched(f.Calls())); got != 40 {
		t.Errorf("%d stops and starts recorded, want 40 (one each per node)", got)
	}
}

// TestSwapToTheReleaseAnEnterpriseNodeRunsIsIdempotent: a node reporting
// 1.13.9+ent already runs 1.13.9 (build metadata is ignored), so the swap
// neither stops nor starts it.
func TestSwapToTheReleaseAnEnterpriseNodeRunsIsIdempotent(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", to+"+ent"))
	if err := f.Swap(t.Context(), swapReq("s1")); err != nil {
		t.Fatalf("Swap(s1 -> %s) = %v", to, err)
	}
	if n := mustNode(t, f, "s1"); n.Version != to+"+ent" || n.Incarnation != 0 {
		t.Errorf("s1 after the swap = %+v, want untouched on %s+ent", n, to)
	}
	for _, c := range f.Calls() {
		if c.Op != "swap" {
			t.Errorf("call %s %s: an idempotent swap stops or starts nothing", c.Op, c.Node)
		}
	}
}

func TestProgressTellsHowFarAFailedSwapGot(t *testing.T) {
	cases := []struct {
		name  string
		fault func(f *transporttest.Fake)
		want  []transport.Phase
	}{
		{"a swap to a broken version reports the stop and no start", func(f *transporttest.Fake) { f.Broken(to) }, []transport.Phase{transport.PhaseStop}},
		{"a swap failed by FailNext reports nothing (the node is untouched)", func(f *transporttest.Fake) { f.FailNext("s1", errors.New("no binary")) }, nil},
		{"a swap that comes back on the old version reports both", func(f *transporttest.Fake) { f.ComeBackOld("s1") }, []transport.Phase{transport.PhaseStop, transport.PhaseStart}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := transporttest.NewFake(transporttest.Server("s1", from))
			c.fault(f)
			var got []transport.Phase
			req := swapReq("s1")
			req.Progress = func(p transport.Phase) {
				if _, ok := f.Node("s1"); !ok { // the fake's lock is not held
					t.Error("the fake lost s1")
				}
				got = append(got, p)
			}
			_ = f.Swap(t.Context(), req)
			if !slices.Equal(got, c.want) {
				t.Errorf("progress %q, want %q", got, c.want)
			}
		})
	}
}
