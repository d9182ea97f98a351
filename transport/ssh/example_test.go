package ssh_test

import (
	"crypto/ed25519"
	"fmt"
	"strings"

	gossh "golang.org/x/crypto/ssh"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

// New checks every host before any connection, so a mistake in the
// inventory shows before the upgrade starts, every problem at once.
func ExampleNew() {
	_, priv, _ := ed25519.GenerateKey(nil)
	signer, _ := gossh.NewSignerFromKey(priv)
	_, err := ssh.New(map[string]ssh.Host{
		"c1": {Addr: "10.0.1.5", User: "ops", BinaryPath: "/usr/local/bin/consul"},
		"c2": {Addr: "10.0.1.6:22", BinaryPath: "consul"},
	}, ssh.WithSigner(signer), ssh.InsecureIgnoreHostKey())
	fmt.Println(err)
	// Output:
	// ssh transport: host for node "c2": User is empty; give the login user; BinaryPath "consul" is not a clean absolute path; write it like /usr/local/bin/consul
}

// With WithFetch each host downloads the binary from the mirror itself (curl
// or wget) and checks its SHA-256; the orchestrator sends only commands.
func ExampleWithFetch() {
	_, priv, _ := ed25519.GenerateKey(nil)
	signer, _ := gossh.NewSignerFromKey(priv)
	mirror := transport.Mirrors(map[string]transport.Fetch{
		"1.13.9": {URL: "https://mirror.internal/consul/1.13.9/consul_linux_amd64", SHA256: strings.Repeat("ab", 32)},
	})
	tr, err := ssh.New(map[string]ssh.Host{
		"c1": {Addr: "10.0.1.5", User: "ops", BinaryPath: "/usr/local/bin/consul"},
	}, ssh.WithSigner(signer), ssh.InsecureIgnoreHostKey(), ssh.WithFetch(mirror))
	fmt.Println(tr != nil, err)
	// On a swap the host runs this command (with the temporary file next to
	// BinaryPath), then the usual install, stop and start.
	line, _ := ssh.Command(transport.FetchCommand("https://mirror.internal/consul/1.13.9/consul_linux_amd64", strings.Repeat("ab", 32), "/usr/local/bin/.consul.upgrade.XXXX"))
	fmt.Println(len(line) < 1024)
	// Output:
	// true <nil>
	// true
}

// Command quotes every element, so a value never reaches the remote shell
// as syntax.
func ExampleCommand() {
	line, _ := ssh.Command([]string{"sh", "-c", `kill -s "$1" "$(cat "$0")"`, "/run/consul.pid", "KILL"})
	fmt.Println(line)
	_, err := ssh.Command([]string{"echo", "a\x00b"})
	fmt.Println(err)
	// Output:
	// 'sh' '-c' 'kill -s "$1" "$(cat "$0")"' '/run/consul.pid' 'KILL'
	// argument 1 "a\x00b" holds a NUL byte at 1; a command line cannot carry one
}

// A Fleet gives the hosts of a whole cluster by rule: the addresses come
// from the catalog, one set of defaults covers every node, groups override
// them for servers, clients or a node-meta match, and a node's own entry
// overrides everything.
func ExampleFleet_Resolve() {
	nodes := []ssh.Node{ // as the catalog lists them
		{Name: "s1", Address: "10.0.0.11", Role: transport.RoleServer},
		{Name: "c1", Address: "10.0.1.1", Role: transport.RoleClient, Meta: map[string]string{"rack": "r1"}},
		{Name: "c2", Address: "10.0.1.2", Role: transport.RoleClient},
	}
	fleet := ssh.Fleet{
		Defaults: ssh.Settings{User: "ops", BinaryPath: "/usr/local/bin/consul", Service: ssh.ServiceSystemd},
		Groups: []ssh.Group{
			{Name: "servers", Match: ssh.Match{Role: transport.RoleServer}, Set: ssh.Settings{BinaryPath: "/opt/consul/bin/consul"}},
			{Name: "rack r1", Match: ssh.Match{Meta: map[string]string{"rack": "r1"}}, Set: ssh.Settings{Port: 2222}},
		},
		Nodes: map[string]ssh.Settings{"c2": {Addr: "c2.mgmt.internal"}},
	}
	hosts, err := fleet.Resolve(nodes)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, n := range []string{"s1", "c1", "c2"} {
		h := hosts[n]
		fmt.Println(n, h.Addr, h.User, h.BinaryPath, h.Service)
	}
	// A field no rule sets is refused, naming the node and where to set it.
	fleet.Defaults.User, fleet.Nodes = "", nil
	_, err = fleet.Resolve(nodes[:1])
	fmt.Println(err)
	// Output:
	// s1 10.0.0.11:22 ops /opt/consul/bin/consul systemd
	// c1 10.0.1.1:2222 ops /usr/local/bin/consul systemd
	// c2 c2.mgmt.internal:22 ops /usr/local/bin/consul systemd
	// fleet: 1 problem(s); node s1: User is set by no rule; set it in defaults, in a group that selects s1 (a server in no named datacenter), or in nodes["s1"]
}
