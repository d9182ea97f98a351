package local

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

func TestSetProvisioningReportsEveryBadField(t *testing.T) {
	tr, err := New(Dir(t.TempDir()), Agent{Name: "s1", Role: transport.RoleServer, Version: "1.12.9", Address: "127.0.1.11", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	err = tr.SetProvisioning(ProvisionTemplate{NamePrefix: "bad name ", Addresses: []string{"nope"}, HTTPPort: -1})
	for _, want := range []string{"name prefix", `address "nope"`, "http port -1", "dir is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to mention %q", err, want)
		}
	}
}

func TestProvisionIsRefusedWithoutATemplateAndRetireOfAnUnknownNode(t *testing.T) {
	tr, err := New(func(string) (string, error) { return "/bin/true", nil }, Agent{Name: "s1", Role: transport.RoleServer, Version: "1.12.9", Address: "127.0.1.11", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Provision(context.Background(), transport.RoleServer, "1.13.9"); err == nil || !strings.Contains(err.Error(), "SetProvisioning") {
		t.Errorf("provision without a template: err = %v, want it to point at SetProvisioning", err)
	}
	if err := tr.Retire(context.Background(), "s9"); !errors.Is(err, transport.ErrUnknownNode) {
		t.Errorf("retire s9: err = %v, want ErrUnknownNode", err)
	}
}

func TestProvisionSkipsAddressesInUseAndForgetsAFailedAgent(t *testing.T) {
	dir := t.TempDir()
	// /bin/false exits at once: the start fails, the agent is forgotten.
	tr, err := New(func(string) (string, error) { return "/bin/false", nil }, Agent{Name: "s1", Role: transport.RoleServer, Version: "1.12.9", Address: "127.0.1.11", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.SetProvisioning(ProvisionTemplate{NamePrefix: "n", Addresses: []string{"127.0.1.11", "127.0.1.14"}, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	_, err = tr.Provision(context.Background(), transport.RoleServer, "1.13.9")
	if err == nil || !strings.Contains(err.Error(), "n1") || !strings.Contains(err.Error(), "forgotten") {
		t.Fatalf("err = %v, want a failed start of n1, forgotten", err)
	}
	if nodes := tr.Nodes(); len(nodes) != 1 || nodes[0] != "s1" {
		t.Errorf("nodes after a failed provision: %v, want only s1", nodes)
	}
	if a, ok := tr.Agent("n1"); ok {
		t.Errorf("failed agent still known: %+v", a)
	}
	// 127.0.1.11 belongs to s1 and 127.0.1.14 was given out: nothing left.
	if _, err := tr.Provision(context.Background(), transport.RoleServer, "1.13.9"); err == nil || !strings.Contains(err.Error(), "every provisioning address is used") {
		t.Errorf("second provision: err = %v, want the addresses to be used up", err)
	}
}
