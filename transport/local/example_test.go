package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
)

// New checks the agents of a local development cluster (each on its own
// loopback address, with its own data directory) before anything starts,
// and reports every problem at once.
func ExampleNew() {
	_, err := local.New(local.Dir("/opt/consul-bins"),
		local.Agent{Name: "s1", Role: transport.RoleServer, Version: "1.12.9", Address: "127.0.1.11", DataDir: "/tmp/dev/s1"},
		local.Agent{Name: "s2", Role: transport.RoleServer, Version: "1.12.9", Address: "127.0.1.11", DataDir: "/tmp/dev/s1"},
	)
	fmt.Println(err)
	// Output:
	// agent "s2": address 127.0.1.11 is also used by agent "s1"; give every agent its own loopback address
	// agent "s2": data dir /tmp/dev/s1 is also the data dir of agent "s1"; every agent needs its own
}

// Binaries come from a directory of consul-<version> files (what
// scripts/build-consul.sh writes). A swap to a version that has no binary
// is refused before the running agent is touched.
func ExampleDir() {
	dir, _ := os.MkdirTemp("", "consul-bins")
	defer os.RemoveAll(dir)
	tr, err := local.New(local.Dir(dir),
		local.Agent{Name: "c1", Role: transport.RoleClient, Version: "1.12.9", Address: "127.0.1.21", DataDir: filepath.Join(dir, "c1")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()
	err = tr.Swap(context.Background(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, From: "1.12.9", To: "1.13.9", StopMode: transport.StopKill})
	var se *transport.SwapError
	if errors.As(err, &se) {
		fmt.Println(se.Node, se.Phase, errors.Is(err, transport.ErrArtifact))
	}
	// Output:
	// c1 stage true
}
