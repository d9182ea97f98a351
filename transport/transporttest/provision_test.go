package transporttest

import (
	"context"
	"errors"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

func TestFakeProvisionAddsARunningNodeAndRetireRemovesIt(t *testing.T) {
	f := NewFake(Server("s1", "1.12.9"))
	var added, retired []string
	f.OnProvision = func(node string, role transport.Role, version string) {
		added = append(added, node+" "+string(role)+" "+version)
	}
	f.OnRetire = func(node string) { retired = append(retired, node) }
	node, err := f.Provision(context.Background(), transport.RoleServer, "1.13.9")
	if err != nil {
		t.Fatal(err)
	}
	n, ok := f.Node(node)
	if node != "new-1" || !ok || !n.Running || !n.Healthy || n.Version != "1.13.9" || n.Role != transport.RoleServer {
		t.Fatalf("provisioned %q: %+v, want new-1 running healthy server on 1.13.9", node, n)
	}
	if len(added) != 1 || added[0] != "new-1 server 1.13.9" {
		t.Errorf("OnProvision saw %v", added)
	}
	if err := f.Retire(context.Background(), "s1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Node("s1"); ok {
		t.Error("s1 is still a node after Retire")
	}
	if len(retired) != 1 || retired[0] != "s1" {
		t.Errorf("OnRetire saw %v", retired)
	}
	calls := f.Calls()
	if calls[0].Op != OpProvision || calls[0].Node != "new-1" || calls[2].Op != OpRetire || calls[3].Op != OpStop || calls[3].StopMode != transport.StopLeave {
		t.Errorf("calls %+v: want provision, start, retire, stop (leave)", calls)
	}
}

func TestFakeProvisionFailuresLeaveNoNode(t *testing.T) {
	f := NewFake(Server("s1", "1.12.9"))
	f.Broken("1.13.9")
	if _, err := f.Provision(context.Background(), transport.RoleServer, "1.13.9"); !errors.Is(err, transport.ErrNotRunning) {
		t.Fatalf("provision of a broken version: err = %v, want ErrNotRunning", err)
	}
	boom := errors.New("no capacity")
	f.FailNextProvision(boom)
	if _, err := f.Provision(context.Background(), transport.RoleServer, "1.12.9"); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	if _, err := f.Provision(context.Background(), transport.RoleServer, "1.x"); !errors.Is(err, transport.ErrInvalidRequest) {
		t.Fatalf("bad version: err = %v, want ErrInvalidRequest", err)
	}
	if err := f.Retire(context.Background(), "nope"); !errors.Is(err, transport.ErrUnknownNode) {
		t.Fatalf("retire unknown: err = %v, want ErrUnknownNode", err)
	}
	for _, name := range []string{"new-1", "new-2", "new-3"} {
		if _, ok := f.Node(name); ok {
			t.Errorf("failed provision left node %s", name)
		}
	}
}
