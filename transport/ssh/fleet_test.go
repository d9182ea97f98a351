package ssh_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

// catalog is a cluster as the catalog lists it: three servers, four
// clients in two racks (one in no rack), in dc1.
func catalog() []ssh.Node {
	return []ssh.Node{
		{Name: "s1", Address: "10.0.0.11", Role: transport.RoleServer, Datacenter: "dc1", Meta: map[string]string{"rack": "r1"}},
		{Name: "s2", Address: "10.0.0.12", Role: transport.RoleServer, Datacenter: "dc1", Meta: map[string]string{"rack": "r2"}},
		{Name: "s3", Address: "10.0.0.13", Role: transport.RoleServer, Datacenter: "dc1"},
		{Name: "c1", Address: "10.0.1.1", Role: transport.RoleClient, Datacenter: "dc1", Meta: map[string]string{"rack": "r1", "os": "debian"}},
		{Name: "c2", Address: "10.0.1.2", Role: transport.RoleClient, Datacenter: "dc1", Meta: map[string]string{"rack": "r1", "os": "rhel"}},
		{Name: "c3", Address: "10.0.1.3", Role: transport.RoleClient, Datacenter: "dc1", Meta: map[string]string{"rack": "r2"}},
		{Name: "c4", Address: "10.0.1.4", Role: transport.RoleClient, Datacenter: "dc1"},
	}
}

func fleet() ssh.Fleet {
	return ssh.Fleet{
		Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul", Service: ssh.ServiceSystemd, KeyFile: "/keys/fleet"},
		Groups: []ssh.Group{
			{Name: "servers", Match: ssh.Match{Role: transport.RoleServer}, Set: ssh.Settings{BinaryPath: "/opt/consul/bin/consul", Port: 2222}},
			{Name: "rack r1", Match: ssh.Match{Meta: map[string]string{"rack": "r1"}}, Set: ssh.Settings{User: "r1ops", Port: 2201}},
			{Name: "rhel in r1", Match: ssh.Match{Role: transport.RoleClient, Meta: map[string]string{"rack": "r1", "os": "rhel"}}, Set: ssh.Settings{Unit: "consul-agent.service"}},
		},
		Nodes: map[string]ssh.Settings{
			"s1": {Addr: "mgmt-s1.internal", User: "root"},
		},
	}
}

func TestEachFieldComesFromTheNodeThenTheLaterGroupThenTheEarlierGroupThenTheDefaults(t *testing.T) {
	hosts, err := fleet().Resolve(catalog())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ssh.Host{
		// nodes["s1"] gives the address and the user over "rack r1" and
		// the defaults; "rack r1" (later) gives the port over "servers".
		"s1": {Addr: "mgmt-s1.internal:2201", User: "root", BinaryPath: "/opt/consul/bin/consul"},
		// "servers" only: its port and binary, the default user.
		"s2": {Addr: "10.0.0.12:2222", User: "ops", BinaryPath: "/opt/consul/bin/consul"},
		"s3": {Addr: "10.0.0.13:2222", User: "ops", BinaryPath: "/opt/consul/bin/consul"},
		// "rack r1": its user and port.
		"c1": {Addr: "10.0.1.1:2201", User: "r1ops", BinaryPath: "/usr/local/bin/consul"},
		// "rack r1" and "rhel in r1" (every meta pair matches).
		"c2": {Addr: "10.0.1.2:2201", User: "r1ops", BinaryPath: "/usr/local/bin/consul", Unit: "consul-agent.service"},
		// In rack r2, which no group names, and in no rack: the defaults,
		// the catalog's address, port 22.
		"c3": {Addr: "10.0.1.3:22", User: "ops", BinaryPath: "/usr/local/bin/consul"},
		"c4": {Addr: "10.0.1.4:22", User: "ops", BinaryPath: "/usr/local/bin/consul"},
	}
	if len(hosts) != len(want) {
		t.Fatalf("Resolve gave %d hosts (%v), want %d", len(hosts), slices.Sorted(maps.Keys(hosts)), len(want))
	}
	for name, w := range want {
		w.Service, w.KeyFile = ssh.ServiceSystemd, "/keys/fleet"
		got := hosts[name]
		if got.Addr != w.Addr || got.User != w.User || got.BinaryPath != w.BinaryPath || got.Service != w.Service || got.Unit != w.Unit || got.KeyFile != w.KeyFile {
			t.Errorf("host of %s = %+v\nwant %+v", name, got, w)
		}
	}
}

func TestAMetaMatchNeedsEveryPairAndANodeWithoutTheKeyIsNotSelected(t *testing.T) {
	f := ssh.Fleet{
		Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul"},
		Groups:   []ssh.Group{{Name: "debian r1", Match: ssh.Match{Meta: map[string]string{"rack": "r1", "os": "debian"}}, Set: ssh.Settings{User: "debian"}}},
	}
	hosts, err := f.Resolve(catalog())
	if err != nil {
		t.Fatal(err)
	}
	for name, user := range map[string]string{"c1": "debian", "c2": "ops", "s1": "ops", "c4": "ops"} {
		if hosts[name].User != user {
			t.Errorf("user of %s = %q, want %q", name, hosts[name].User, user)
		}
	}
}

func TestADatacenterMatchSelectsOnlyThatDatacentersNodes(t *testing.T) {
	nodes := append(catalog(), ssh.Node{Name: "dc2-s1", Address: "10.2.0.11", Role: transport.RoleServer, Datacenter: "dc2"})
	f := ssh.Fleet{
		Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul"},
		Groups:   []ssh.Group{{Name: "dc2", Match: ssh.Match{Datacenter: "dc2"}, Set: ssh.Settings{User: "dc2ops"}}},
	}
	hosts, err := f.Resolve(nodes)
	if err != nil {
		t.Fatal(err)
	}
	if hosts["dc2-s1"].User != "dc2ops" || hosts["s1"].User != "ops" {
		t.Errorf("users: dc2-s1 %q, s1 %q; want dc2ops and ops", hosts["dc2-s1"].User, hosts["s1"].User)
	}
}

// problems returns the *FleetError's problems, failing the test on any
// other error.
func problems(t *testing.T, err error) []ssh.FleetProblem {
	t.Helper()
	var fe *ssh.FleetError
	if !errors.As(err, &fe) {
		t.Fatalf("Resolve = %v, want a *ssh.FleetError", err)
	}
	return fe.Problems
}

func findProblem(ps []ssh.FleetProblem, node, field string) (ssh.FleetProblem, bool) {
	for _, p := range ps {
		if p.Node == node && p.Field == field {
			return p, true
		}
	}
	return ssh.FleetProblem{}, false
}

func TestASystemdGroupAndACommandFromTheDefaultsConflictNamingTheNodeBothRulesAndTheFix(t *testing.T) {
	f := ssh.Fleet{
		Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul", StopCmd: []string{"pkill", "-{{.Signal}}", "consul"}},
		Groups:   []ssh.Group{{Name: "servers", Match: ssh.Match{Role: transport.RoleServer}, Set: ssh.Settings{Service: ssh.ServiceSystemd}}},
	}
	_, err := f.Resolve(catalog())
	ps := problems(t, err)
	p, ok := findProblem(ps, "s1", "StopCmd")
	if !ok {
		t.Fatalf("no StopCmd problem for s1 among %v", ps)
	}
	for _, want := range []string{"node s1", "defaults: StopCmd", `Service is "systemd" (from group "servers")`, "drop StopCmd from defaults"} {
		if !strings.Contains(p.String(), want) {
			t.Errorf("%q does not say %q", p.String(), want)
		}
	}
	// The clients (no systemd) keep their StopCmd without complaint.
	if _, ok := findProblem(ps, "c1", "StopCmd"); ok {
		t.Errorf("c1 is reported, but its Service is the default: %v", ps)
	}
	if len(ps) != 3 {
		t.Errorf("%d problems, want 3 (one per server): %v", len(ps), err)
	}
}

func TestAUnitSetForANodeThatIsNotSystemdIsRefused(t *testing.T) {
	f := ssh.Fleet{
		Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul"},
		Nodes:    map[string]ssh.Settings{"c1": {Unit: "consul.service"}},
	}
	_, err := f.Resolve(catalog())
	p, ok := findProblem(problems(t, err), "c1", "Unit")
	if !ok || p.Rule != `nodes["c1"]` || !strings.Contains(p.Fix, `Service "systemd"`) {
		t.Fatalf("problems = %v, want c1's Unit from nodes[\"c1\"] refused with the fix to set Service systemd", err)
	}
}

func TestAnEntryForANodeTheCatalogDoesNotListIsRefusedNamingIt(t *testing.T) {
	f := fleet()
	f.Nodes["s9"] = ssh.Settings{User: "root"}
	_, err := f.Resolve(catalog())
	ps := problems(t, err)
	if len(ps) != 1 || ps[0].Node != "s9" || ps[0].Rule != `nodes["s9"]` || !strings.Contains(ps[0].Problem, "does not list") || !strings.Contains(ps[0].Problem, "c1, c2, c3") || !strings.Contains(ps[0].Fix, "remove the entry") {
		t.Fatalf("problems = %v, want one naming nodes[\"s9\"], the nodes listed and the fix", ps)
	}
}

func TestANodeNoRuleGivesAUserOrBinaryIsRefusedSayingWhereToSetIt(t *testing.T) {
	f := ssh.Fleet{Groups: []ssh.Group{{Name: "servers", Match: ssh.Match{Role: transport.RoleServer}, Set: ssh.Settings{User: "root", BinaryPath: "/opt/consul"}}}}
	_, err := f.Resolve(catalog())
	ps := problems(t, err)
	p, ok := findProblem(ps, "c1", "User")
	if !ok {
		t.Fatalf("no User problem for c1 among %v", ps)
	}
	for _, want := range []string{"is set by no rule", "set it in defaults", "a client in datacenter dc1 with meta os=debian rack=r1", `nodes["c1"]`} {
		if !strings.Contains(p.String(), want) {
			t.Errorf("%q does not say %q", p.String(), want)
		}
	}
	if _, ok := findProblem(ps, "c4", "BinaryPath"); !ok {
		t.Errorf("no BinaryPath problem for c4 among %v", ps)
	}
	if _, ok := findProblem(ps, "s1", "User"); ok {
		t.Errorf("s1 is reported, but group servers gives it a user")
	}
	// Every client lacks both: 4 clients x 2 fields, all at once.
	if len(ps) != 8 {
		t.Errorf("%d problems, want 8: %v", len(ps), err)
	}
}

func TestMalformedRulesAreRefusedAllAtOnceBeforeAnyNodeIsResolved(t *testing.T) {
	f := ssh.Fleet{
		Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul", Port: 70000},
		Groups: []ssh.Group{
			{Name: "everything", Set: ssh.Settings{User: "x"}},
			{Name: "servers", Match: ssh.Match{Role: "servers"}},
			{Name: "servers", Match: ssh.Match{Meta: map[string]string{"rack": ""}}},
			{Match: ssh.Match{Role: transport.RoleClient}, Set: ssh.Settings{Addr: "10.0.0.5:22", Service: "runit"}},
		},
	}
	_, err := f.Resolve(catalog())
	msg := err.Error()
	for _, want := range []string{
		"defaults: Port is 70000; give a port from 1 to 65535",
		`group "everything": match is empty, so it selects every node; give a role, a datacenter or node meta to match, or put these settings in defaults`,
		`group "servers": match.role "servers" is not a role; give "server" or "client"`,
		`group "servers": name is used by two groups`,
		`match.meta has an empty key or value ("rack": "")`,
		`group #4: name is empty`,
		`group #4: Addr "10.0.0.5:22" holds a port; give the host alone in Addr and the port in Port`,
		`group #4: Service "runit" is not a service manager`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
}

func TestCatalogNodesThatCannotBeHostsAreRefused(t *testing.T) {
	f := fleet()
	f.Nodes = nil
	nodes := append(catalog(),
		ssh.Node{Name: "c1", Address: "10.0.9.9", Role: transport.RoleClient},
		ssh.Node{Name: "x;reboot", Address: "10.0.9.8", Role: transport.RoleClient},
		ssh.Node{Name: "c9", Role: transport.RoleClient},
		ssh.Node{Name: "c10", Address: "10.0.9.10", Role: "agent"},
	)
	_, err := f.Resolve(nodes)
	msg := err.Error()
	for _, want := range []string{"node c1: the catalog: is listed twice", "node x;reboot: the catalog: node name", `node c9: the catalog: Address is empty and no rule sets Addr; set Addr in nodes["c9"]`, `node c10: the catalog: role "agent" is not`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
}

func TestWhatNewRefusesIsRefusedByResolveNamingTheNode(t *testing.T) {
	f := ssh.Fleet{
		Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul"},
		Groups:   []ssh.Group{{Name: "rack r2", Match: ssh.Match{Meta: map[string]string{"rack": "r2"}}, Set: ssh.Settings{BinaryPath: "consul", CommandTimeout: -time.Second}}},
	}
	_, err := f.Resolve(catalog())
	ps := problems(t, err)
	if len(ps) != 2 || ps[0].Node != "c3" || ps[1].Node != "s2" || !strings.Contains(ps[0].Problem, "BinaryPath \"consul\" is not a clean absolute path") || !strings.Contains(ps[0].Problem, "CommandTimeout") {
		t.Fatalf("problems = %v, want c3 and s2 (rack r2) refused for their BinaryPath and CommandTimeout", ps)
	}
}

func TestResolvedHostsAreTakenByNew(t *testing.T) {
	s := noSSHD(t)
	f := fleet()
	f.Defaults.KeyFile = "" // no such file here
	hosts, err := f.Resolve(catalog())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ssh.New(hosts, ssh.WithKey(s.keyPEM), ssh.WithKnownHosts(s.knownHosts)); err != nil {
		t.Fatalf("New(resolved hosts) = %v", err)
	}
}

func TestValidateChecksTheRulesWithoutNodes(t *testing.T) {
	if err := fleet().Validate(); err != nil {
		t.Fatalf("Validate of a good fleet = %v", err)
	}
	f := fleet()
	f.Groups = append(f.Groups, ssh.Group{Name: "all", Set: ssh.Settings{Port: -1}})
	f.Nodes["bad name"] = ssh.Settings{}
	err := f.Validate()
	for _, want := range []string{`group "all": match is empty`, `group "all": Port is -1`, `node bad name: nodes["bad name"]: is not a node name`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to say %q", err, want)
		}
	}
}
