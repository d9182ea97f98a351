package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// sshFiles writes a client key (PKCS#8 PEM) and an empty known_hosts file.
func sshFiles(t *testing.T) (key, knownHosts string) {
	t.Helper()
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	key, knownHosts = filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(knownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return key, knownHosts
}

// fleetInventory writes an ssh inventory whose hosts are the fleet f.
func fleetInventory(t *testing.T, f ssh.Fleet) string {
	t.Helper()
	key, kh := sshFiles(t)
	b, err := json.Marshal(map[string]any{"transport": "ssh", "ssh": map[string]any{"known_hosts": []string{kh}, "key_file": key, "fleet": f}})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "inventory.json", string(b))
}

func TestAFleetInventoryTakesItsNodesAddressesRolesAndMetaFromTheCatalog(t *testing.T) {
	sim := newSim(3, 2, consultest.WithFeatures(consultest.Features{NodeMeta: map[string]map[string]string{"c1": {"rack": "r1"}, "s2": {"rack": "r1"}}}))
	client, err := sim.Client()
	if err != nil {
		t.Fatal(err)
	}
	cluster := live{consul: upgrade.NewConsul(client)}
	nodes, err := cluster.catalogNodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(nodes, func(a, b ssh.Node) int { return strings.Compare(a.Name, b.Name) })
	var got []string
	for _, n := range nodes {
		got = append(got, n.Name+" "+n.Address+" "+string(n.Role)+" "+n.Datacenter+" rack="+n.Meta["rack"])
	}
	want := []string{"c1 10.0.1.1 client dc1 rack=r1", "c2 10.0.1.2 client dc1 rack=", "s1 10.0.0.1 server dc1 rack=", "s2 10.0.0.2 server dc1 rack=r1", "s3 10.0.0.3 server dc1 rack="}
	if !slices.Equal(got, want) {
		t.Fatalf("catalog nodes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	inv := fleetInventory(t, ssh.Fleet{
		Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul", Service: ssh.ServiceSystemd},
		Groups: []ssh.Group{
			{Name: "servers", Match: ssh.Match{Role: transport.RoleServer}, Set: ssh.Settings{BinaryPath: "/opt/consul/consul"}},
			{Name: "rack r1", Match: ssh.Match{Meta: map[string]string{"rack": "r1"}}, Set: ssh.Settings{Port: 2222}},
		},
		Nodes: map[string]ssh.Settings{"s3": {Addr: "s3.mgmt.internal"}},
	})
	l, err := loadTransport(inv, "", nil, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if !l.needsCluster() {
		t.Fatal("a fleet inventory does not ask for the cluster")
	}
	hosts, err := l.fleet.Resolve(nodes)
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range map[string]string{
		"s1": "10.0.0.1:22 /opt/consul/consul", "s2": "10.0.0.2:2222 /opt/consul/consul", "s3": "s3.mgmt.internal:22 /opt/consul/consul",
		"c1": "10.0.1.1:2222 /usr/local/bin/consul", "c2": "10.0.1.2:22 /usr/local/bin/consul",
	} {
		if h := hosts[name]; h.Addr+" "+h.BinaryPath != w || h.User != "ops" || h.Service != ssh.ServiceSystemd {
			t.Errorf("host of %s = %+v, want %s as ops through systemd", name, h, w)
		}
	}
	tr, err := l.transport(t.Context(), cluster)
	if err != nil {
		t.Fatalf("the fleet's transport: %v", err)
	}
	if _, ok := tr.(*ssh.Transport); !ok {
		t.Errorf("the fleet's transport is a %T, want *ssh.Transport", tr)
	}
}

func TestAFleetInventoryIsCheckedAsTheOtherForms(t *testing.T) {
	key, kh := sshFiles(t)
	for _, c := range []struct {
		name, body, want string
	}{
		{"hosts and a fleet both", `{"transport": "ssh", "ssh": {"known_hosts": ["` + kh + `"], "key_file": "` + key + `", "hosts": {"s1": {"Addr": "127.0.0.1", "User": "u", "BinaryPath": "/c"}}, "fleet": {"defaults": {"User": "u"}}}}`, `both "hosts" and "fleet"`},
		{"neither hosts nor a fleet", `{"transport": "ssh", "ssh": {"known_hosts": ["` + kh + `"], "key_file": "` + key + `"}}`, `lists no hosts; give "hosts"`},
		{"a group that matches everything", `{"transport": "ssh", "ssh": {"known_hosts": ["` + kh + `"], "key_file": "` + key + `", "fleet": {"groups": [{"name": "all", "set": {"User": "u"}}]}}}`, `group "all": match is empty`},
		{"a role that is not one", `{"transport": "ssh", "ssh": {"known_hosts": ["` + kh + `"], "key_file": "` + key + `", "fleet": {"groups": [{"name": "s", "match": {"role": "servers"}}]}}}`, `match.role "servers" is not a role`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadTransport(writeFile(t, "inv.json", c.body), "", nil, "", false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("loadTransport = %v, want an error saying %q", err, c.want)
			}
			if _, ok := err.(*usageError); !ok {
				t.Errorf("error is a %T, want a *usageError (exit 2)", err)
			}
		})
	}
}

func TestPlanWithAFleetInventoryResolvesItAgainstTheCatalogBeforeTheReview(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		withSim(t, newSim(3, 1))
		testTransport = nil // the inventory's transport, not the fake
		inv := fleetInventory(t, ssh.Fleet{
			Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul"},
			Nodes:    map[string]ssh.Settings{"s9": {User: "root"}},
		})
		code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-inventory", inv)
		if code != exitUsage || !strings.Contains(stderr, `nodes["s9"]: names a node the catalog does not list (it lists 4: c1, s1, s2, s3)`) {
			t.Fatalf("plan: exit %d, stderr %q; want 2 naming the unknown node", code, stderr)
		}
	})
}

func TestApplyWithAFleetWhoseHostsCannotBeReachedIsRefusedBeforeTheFirstStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 1)
		withSim(t, sim)
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		testTransport = nil // the inventory's ssh transport, not the fake
		// Every host on loopback (never the simulator's 10.x addresses), on
		// a port where nothing listens.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := l.Addr().(*net.TCPAddr).Port
		l.Close()
		inv := fleetInventory(t, ssh.Fleet{
			Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul", Port: closed},
			Groups: []ssh.Group{
				{Name: "servers", Match: ssh.Match{Role: transport.RoleServer}, Set: ssh.Settings{Addr: "127.0.0.1"}},
				{Name: "clients", Match: ssh.Match{Role: transport.RoleClient}, Set: ssh.Settings{Addr: "127.0.0.1"}},
			},
		})
		code, stdout, stderr := cli(t, "apply", "-plan", planFile, "-yes", "-inventory", inv)
		addr := "127.0.0.1:" + strconv.Itoa(closed)
		for _, want := range []string{"pre-flight: 4 node(s) cannot be reached", "refused before anything was touched", "node s1: host " + addr + " cannot be reached as ops (connect)", "client c1: node c1: host " + addr} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr does not say %q:\n%s", want, stderr)
			}
		}
		if code != exitUsage {
			t.Errorf("exit %d, want %d (refused)", code, exitUsage)
		}
		if strings.Contains(stdout, "Halted at step") {
			t.Errorf("stdout reports a halt at a step:\n%s", stdout)
		}
		for _, n := range sim.Nodes() {
			if n.Version != "1.12.9" || !n.Up {
				t.Errorf("%s: %+v, want untouched: up on 1.12.9", n.Name, n)
			}
		}
		if sim.Calls("/v1/snapshot") != 0 {
			t.Error("the refused run took a snapshot")
		}
	})
}
