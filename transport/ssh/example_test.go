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
