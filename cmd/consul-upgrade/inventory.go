package main

import (
	"context"
	"fmt"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/exec"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

// inventory is the file -inventory reads: which transport swaps the nodes,
// and its settings.
//
//	{"transport": "ssh", "ssh": {"known_hosts": ["/home/op/.ssh/known_hosts"], "key_file": "/home/op/.ssh/id_ed25519",
//	  "binaries": {"1.13.9": {"Path": "/srv/consul/consul-1.13.9", "SHA256": "..."}},
//	  "hosts": {"s1": {"Addr": "10.0.0.1", "User": "ops", "BinaryPath": "/usr/local/bin/consul", "SupervisorRestarts": true}}}}
//
// or, instead of "hosts", a fleet whose nodes and addresses come from the
// catalog (ssh.Fleet: defaults, groups by role, datacenter or node meta,
// per-node entries):
//
//	  "fleet": {"defaults": {"User": "ops", "BinaryPath": "/usr/local/bin/consul", "Service": "systemd"},
//	    "groups": [{"name": "rack r1", "match": {"meta": {"rack": "r1"}}, "set": {"Port": 2222}}],
//	    "nodes": {"s1": {"Addr": "10.9.0.1"}}}
//
//	{"transport": "exec", "exec": {"swap": ["/usr/local/bin/swap-consul", "{{.Node}}", "{{.To}}", "{{.StopMode}}"],
//	  "version": ["/usr/local/bin/consul-version", "{{.Node}}"], "check": ["/usr/local/bin/has-consul", "{{.Node}}", "{{.To}}"], "timeout": "10m"}}
type inventory struct {
	Transport string        `json:"transport"`
	SSH       *sshInventory `json:"ssh,omitempty"`
	Exec      *execInv      `json:"exec,omitempty"`
}

type sshInventory struct {
	KnownHosts []string            `json:"known_hosts"`
	KeyFile    string              `json:"key_file,omitempty"`
	Agent      bool                `json:"agent,omitempty"`
	Binaries   map[string]ssh.File `json:"binaries"`
	Hosts      map[string]ssh.Host `json:"hosts"`
	Fleet      *ssh.Fleet          `json:"fleet,omitempty"`
}

type execInv struct {
	Swap     []string `json:"swap"`
	Rollback []string `json:"rollback,omitempty"`
	Version  []string `json:"version,omitempty"`
	Check    []string `json:"check,omitempty"`
	Nodes    []string `json:"nodes,omitempty"`
	Env      []string `json:"env,omitempty"`
	Dir      string   `json:"dir,omitempty"`
	Timeout  string   `json:"timeout,omitempty"`
}

// loadedInventory is a read and checked inventory file. Its transport is
// built by transport: at once for hosts listed by hand and for exec, from
// the live cluster's catalog for an ssh fleet.
type loadedInventory struct {
	path  string
	tr    transport.Transport // nil for a fleet
	fleet *ssh.Fleet
	opts  []ssh.Option // the fleet's transport options
}

// needsCluster reports whether the transport is built from the catalog.
func (l *loadedInventory) needsCluster() bool { return l.fleet != nil }

// transport returns the inventory's transport; for a fleet, resolved
// against the nodes the catalog of the connected cluster lists.
func (l *loadedInventory) transport(ctx context.Context, c live) (transport.Transport, error) {
	if l.fleet == nil {
		return l.tr, nil
	}
	nodes, err := c.catalogNodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("-inventory %s: list the nodes of the fleet: %w", l.path, err)
	}
	return l.resolve(nodes)
}

// resolve builds the fleet's transport for nodes.
func (l *loadedInventory) resolve(nodes []ssh.Node) (*ssh.Transport, error) {
	hosts, err := l.fleet.Resolve(nodes)
	if err != nil {
		return nil, usagef("-inventory %s: %v", l.path, err)
	}
	t, err := ssh.New(hosts, l.opts...)
	if err != nil {
		return nil, usagef("-inventory %s: %v", l.path, err)
	}
	return t, nil
}

// loadTransport reads the inventory file and builds its transport, with
// the flags that override it (kind "": the file's; knownHosts, keyFile:
// added). An ssh fleet needs the cluster: it is checked here (its rules)
// and built by loadedInventory.transport.
func loadTransport(path, kind string, knownHosts []string, keyFile string, useAgent bool) (*loadedInventory, error) {
	if path == "" {
		return nil, usagef("-inventory is required: a JSON file naming the transport (ssh or exec) and its hosts or commands; see consul-upgrade apply -h")
	}
	var inv inventory
	if err := readJSON(path, &inv); err != nil {
		return nil, usagef("-inventory %s: %v", path, err)
	}
	if kind != "" {
		inv.Transport = kind
	}
	switch inv.Transport {
	case "ssh":
		s := inv.SSH
		if s == nil {
			return nil, usagef("-inventory %s: transport ssh needs an \"ssh\" section with hosts (or a fleet), binaries and known_hosts", path)
		}
		kh := append(append([]string{}, s.KnownHosts...), knownHosts...)
		if len(kh) == 0 {
			return nil, usagef("-inventory %s: transport ssh needs known_hosts (or -known-hosts FILE): host keys are always checked", path)
		}
		opts := []ssh.Option{ssh.WithKnownHosts(kh...), ssh.WithResolver(ssh.Files(s.Binaries))}
		if keyFile == "" {
			keyFile = s.KeyFile
		}
		if keyFile != "" {
			opts = append(opts, ssh.WithKeyFile(keyFile))
		}
		if useAgent || s.Agent {
			opts = append(opts, ssh.WithAgent())
		}
		switch {
		case s.Fleet != nil && len(s.Hosts) > 0:
			return nil, usagef("-inventory %s: the ssh section has both \"hosts\" and \"fleet\"; give one: hosts listed by hand, or a fleet resolved from the catalog (a node's own settings go in the fleet's \"nodes\")", path)
		case s.Fleet != nil:
			if err := s.Fleet.Validate(); err != nil {
				return nil, usagef("-inventory %s: %v", path, err)
			}
			return &loadedInventory{path: path, fleet: s.Fleet, opts: opts}, nil
		case len(s.Hosts) == 0:
			return nil, usagef("-inventory %s: the ssh section lists no hosts; give \"hosts\" (each node by hand) or a \"fleet\" (the catalog's nodes, by rule)", path)
		}
		t, err := ssh.New(s.Hosts, opts...)
		if err != nil {
			return nil, usagef("-inventory %s: %v", path, err)
		}
		return &loadedInventory{path: path, tr: t}, nil
	case "exec":
		e := inv.Exec
		if e == nil {
			return nil, usagef("-inventory %s: transport exec needs an \"exec\" section with at least a swap command", path)
		}
		cfg := exec.Config{Swap: e.Swap, Rollback: e.Rollback, Version: e.Version, Check: e.Check, Nodes: e.Nodes, Env: e.Env, Dir: e.Dir}
		if e.Timeout != "" {
			d, err := time.ParseDuration(e.Timeout)
			if err != nil || d <= 0 {
				return nil, usagef("-inventory %s: exec timeout %q is not a positive duration (e.g. \"10m\")", path, e.Timeout)
			}
			cfg.Timeout = d
		}
		t, err := exec.New(cfg)
		if err != nil {
			return nil, usagef("-inventory %s: %v", path, err)
		}
		return &loadedInventory{path: path, tr: t}, nil
	case "":
		return nil, usagef("-inventory %s: no transport named; set \"transport\" to ssh or exec (or pass -transport)", path)
	default:
		return nil, usagef("-inventory %s: transport %q is not one of ssh, exec", path, inv.Transport)
	}
}
