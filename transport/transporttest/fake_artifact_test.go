package transporttest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

func TestAMissingBinaryFailsItsCheckAndItsSwapWithoutTouchingTheNode(t *testing.T) {
	f := transporttest.NewFake(transporttest.Server("s1", from), transporttest.Server("s2", from))
	f.MissingBinary("s1", to)
	ctx := context.Background()

	var ae *transport.ArtifactError
	if err := f.CheckArtifact(ctx, "s1", transport.RoleServer, to); !errors.As(err, &ae) || ae.Node != "s1" || ae.Version != to || !errors.Is(err, transport.ErrArtifact) {
		t.Fatalf("CheckArtifact(s1, %s) = %v, want a *transport.ArtifactError for s1 and %s", to, err, to)
	}
	if err := f.CheckArtifact(ctx, "s1", transport.RoleServer, to+"+ent"); !errors.As(err, &ae) {
		t.Errorf("CheckArtifact(s1, %s+ent) = %v, want the same missing release", to, err)
	}
	for _, ok := range []struct{ node, version string }{{"s2", to}, {"s1", "1.14.8"}} {
		if err := f.CheckArtifact(ctx, ok.node, transport.RoleServer, ok.version); err != nil {
			t.Errorf("CheckArtifact(%s, %s) = %v, want nil", ok.node, ok.version, err)
		}
	}
	err := f.Swap(ctx, swapReq("s1"))
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Phase != transport.PhaseStage || !errors.Is(err, transport.ErrArtifact) {
		t.Fatalf("Swap of s1 to its missing binary = %v, want a stage-phase SwapError wrapping ErrArtifact", err)
	}
	for _, c := range f.Calls() {
		if c.TouchesState() {
			t.Errorf("a check or a refused swap touched a node: %+v", c)
		}
	}
	if n := mustNode(t, f, "s1"); n.Version != from || !n.Running {
		t.Errorf("s1 = %+v after the refused swap, want it running %s", n, from)
	}

	f.MissingBinary("s2", "")
	if err := f.CheckArtifact(ctx, "s2", transport.RoleServer, "1.14.8"); !errors.As(err, &ae) {
		t.Errorf("MissingBinary(s2, \"\") then CheckArtifact(s2, 1.14.8) = %v, want every version missing", err)
	}
	if err := f.CheckArtifact(ctx, "s2", transport.RoleClient, to); !errors.Is(err, transport.ErrInvalidRequest) {
		t.Errorf("a server checked as a client = %v, want ErrInvalidRequest", err)
	}
}
