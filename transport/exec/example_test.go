package exec_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/exec"
)

// The transport runs your own commands, given as argv templates: here a
// shell script stands for a playbook that swaps the node's binary, and
// another prints the version the node runs. Values reach the commands as
// arguments, never spliced into a shell line.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "exec-example")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "c1"), []byte("1.12.9\n"), 0o644)

	tr, err := exec.New(exec.Config{
		Swap:    []string{"/bin/sh", "-c", `printf '%s\n' "$2" > "$0/$1"`, dir, "{{.Node}}", "{{.To}}"},
		Version: []string{"/bin/sh", "-c", `printf 'Consul v%s\n' "$(cat "$0/$1")"`, dir, "{{.Node}}"},
		Nodes:   []string{"c1"},
		Timeout: 10 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	err = tr.Swap(ctx, transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: "1.12.9", To: "1.13.9", StopMode: transport.StopLeave})
	fmt.Println("swap:", err)
	v, err := tr.RunningVersion(ctx, "c1")
	fmt.Println("c1 runs", v, err)

	// A node the transport does not know is refused before any command runs.
	err = tr.Swap(ctx, transport.SwapRequest{Node: "c2", Role: transport.RoleClient, To: "1.13.9", StopMode: transport.StopLeave})
	fmt.Println(errors.Is(err, transport.ErrUnknownNode))
	// Output:
	// swap: <nil>
	// c1 runs 1.13.9 <nil>
	// true
}

// With a Mirror and a Fetch command, each host downloads the binary itself
// and checks its SHA-256 before the Swap command runs; a corrupt download
// stops the swap with a *transport.FetchError and the Swap command never
// runs. Here the "host" is this machine and the mirror an httptest server.
func Example_fetch() {
	good := []byte("consul 1.13.9")
	sum := sha256.Sum256(good)
	var served atomic.Pointer[[]byte]
	truncated := []byte("consul 1.13.9, truncated")
	served.Store(&truncated)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(*served.Load()) }))
	defer srv.Close()
	dir, _ := os.MkdirTemp("", "exec-fetch-example")
	defer os.RemoveAll(dir)

	tr, err := exec.New(exec.Config{
		Mirror: transport.Mirrors(map[string]transport.Fetch{
			"1.13.9": {URL: srv.URL + "/consul/1.13.9/consul", SHA256: hex.EncodeToString(sum[:])},
		}),
		Fetch:   transport.FetchCommand("{{.URL}}", "{{.SHA256}}", filepath.Join(dir, "{{.Node}}.new")),
		Swap:    []string{"/bin/sh", "-c", `mv "$0/$1.new" "$0/$1" && echo "installed on $1"`, dir, "{{.Node}}"},
		Timeout: 10 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	req := transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: "1.12.9", To: "1.13.9", StopMode: transport.StopLeave}

	err = tr.Swap(context.Background(), req)
	var fe *transport.FetchError
	if errors.As(err, &fe) {
		fmt.Println(fe.Node, fe.Problem, "got", fe.Got[:12]+"...")
	}
	_, statErr := os.Stat(filepath.Join(dir, "c1"))
	fmt.Println("installed:", statErr == nil)

	served.Store(&good) // the mirror is fixed
	fmt.Println("retry:", tr.Swap(context.Background(), req))
	b, _ := os.ReadFile(filepath.Join(dir, "c1"))
	fmt.Printf("installed: %q\n", b)
	// Output:
	// c1 mismatch got fd42711de9e5...
	// installed: false
	// retry: <nil>
	// installed: "consul 1.13.9"
}
