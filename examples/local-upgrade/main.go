// Command local-upgrade runs the whole loop on real Consul: it starts 3
// servers and 1 client on loopback addresses (127.0.0.11-13 and .21), writes
// data through the client, upgrades every agent from -from to -to with
// upgrade.Run while printing each event, verifies the data and the versions,
// and tears everything down.
//
// The Consul binaries come from -bin-dir (consul-<version>); a missing one is
// built with scripts/build-consul.sh (run from the repository root), which
// takes a few minutes the first time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command line.
type options struct {
	from, to  string
	binDir    string
	script    string
	base      string // first three octets of the agents' addresses
	keys      int
	timeout   time.Duration
	rollback  bool
	eventJSON bool
}

func defaultBinDir() string {
	if d := os.Getenv("CONSUL_UPGRADE_BIN_DIR"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "consul-upgrade", "bin")
	}
	return filepath.Join(cache, "consul-upgrade", "bin")
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("local-upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.from, "from", "1.12.9", "Consul version the cluster starts on")
	fs.StringVar(&o.to, "to", "1.13.9", "Consul version to upgrade to")
	fs.StringVar(&o.binDir, "bin-dir", defaultBinDir(), "directory holding consul-<version> binaries")
	fs.StringVar(&o.script, "build-script", "scripts/build-consul.sh", "script that builds a missing binary (run from the repository root)")
	fs.StringVar(&o.base, "net", "127.0.0", "first three octets of the loopback addresses (servers .11-.13, client .21)")
	fs.IntVar(&o.keys, "keys", 100, "number of KV keys written before and verified after the upgrade")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	fs.BoolVar(&o.rollback, "rollback", true, "roll a node that fails its swap or gate back to its old binary")
	fs.BoolVar(&o.eventJSON, "json", false, "print events as JSON lines")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (all options are flags; see -h)", fs.Arg(0))
	}
	for _, v := range []struct{ flag, val string }{{"-from", o.from}, {"-to", o.to}} {
		if err := transport.ValidateVersion(v.val); err != nil {
			return o, fmt.Errorf("%s %q: %v", v.flag, v.val, err)
		}
	}
	if fv, err := planner.ParseVersion(o.from); err == nil {
		if tv, err := planner.ParseVersion(o.to); err == nil && !fv.LessThan(tv) {
			return o, fmt.Errorf("-to %s must be newer than -from %s", o.to, o.from)
		}
	}
	parts := strings.Split(o.base, ".")
	if len(parts) != 3 || parts[0] != "127" {
		return o, fmt.Errorf("-net %q: want three octets of a loopback address, e.g. 127.0.0", o.base)
	}
	for _, p := range parts {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 255 {
			return o, fmt.Errorf("-net %q: octet %q is not 0-255", o.base, p)
		}
	}
	if o.keys < 1 {
		return o, fmt.Errorf("-keys %d: want at least 1", o.keys)
	}
	return o, nil
}

// run is the program; it returns the exit status: 0 upgraded and verified,
// 1 the upgrade or a verification failed, 2 bad flags or no binaries.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "local-upgrade:", err)
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	bins := map[string]string{}
	for _, v := range []string{o.from, o.to} {
		p, err := findOrBuild(ctx, o, v, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "local-upgrade:", err)
			return 2
		}
		bins[v] = p
	}
	if err := upgradeCluster(ctx, o, bins, stdout); err != nil {
		fmt.Fprintln(stderr, "local-upgrade:", err)
		return 1
	}
	return 0
}

// findOrBuild returns the binary for version v, building it when missing.
func findOrBuild(ctx context.Context, o options, v string, stderr io.Writer) (string, error) {
	p := filepath.Join(o.binDir, "consul-"+v)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	if _, err := os.Stat(o.script); err != nil {
		return "", fmt.Errorf("no Consul %s binary at %s, and the build script %s is not here (%v); run from the repository root or pass -bin-dir", v, p, o.script, err)
	}
	fmt.Fprintf(stderr, "building Consul %s with %s (a few minutes the first time)\n", v, o.script)
	cmd := exec.CommandContext(ctx, o.script, v)
	cmd.Env = append(os.Environ(), "CONSUL_UPGRADE_BIN_DIR="+o.binDir)
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building Consul %s: %w", v, err)
	}
	built := strings.TrimSpace(string(out))
	if built != p {
		return "", fmt.Errorf("build script printed %q, want %q", built, p)
	}
	return p, nil
}

func upgradeCluster(ctx context.Context, o options, bins map[string]string, stdout io.Writer) (err error) {
	dir, err := os.MkdirTemp("", "local-upgrade-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	servers := []string{"s1", "s2", "s3"}
	var join []string
	for i := range servers {
		join = append(join, fmt.Sprintf("-retry-join=%s.%d", o.base, 11+i))
	}
	var agents []local.Agent
	for i, name := range servers {
		agents = append(agents, local.Agent{
			Name: name, Role: transport.RoleServer, Version: o.from,
			Address: fmt.Sprintf("%s.%d", o.base, 11+i),
			DataDir: filepath.Join(dir, name),
			Args:    append([]string{"-bootstrap-expect=3", "-retry-interval=1s"}, join...),
		})
	}
	agents = append(agents, local.Agent{
		Name: "c1", Role: transport.RoleClient, Version: o.from,
		Address: o.base + ".21",
		DataDir: filepath.Join(dir, "c1"),
		Args:    append([]string{"-retry-interval=1s"}, join...),
	})
	resolve := func(v string) (string, error) {
		if p, ok := bins[v]; ok {
			return p, nil
		}
		return "", fmt.Errorf("no binary for Consul %s in this run (have %s and %s)", v, o.from, o.to)
	}
	tr, err := local.New(resolve, agents...)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "tearing down: stopping every agent")
		if cerr := tr.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("teardown: %w", cerr)
		}
	}()

	began := time.Now()
	fmt.Fprintf(stdout, "starting 3 servers and 1 client on Consul %s (%s.11-13, %s.21; logs in %s)\n", o.from, o.base, o.base, dir)
	for _, a := range agents {
		if err := tr.Start(ctx, a.Name); err != nil {
			return fmt.Errorf("start %s: %w", a.Name, err)
		}
	}
	client := agents[3].HTTPAddr()
	if err := waitHealthy(ctx, agents[0].HTTPAddr()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cluster healthy after %s\n", time.Since(began).Round(100*time.Millisecond))

	for i := 0; i < o.keys; i++ {
		if err := kvPut(ctx, client, fmt.Sprintf("demo/%04d", i), strconv.Itoa(i)); err != nil {
			return fmt.Errorf("write demo/%04d through c1: %w", i, err)
		}
	}
	fmt.Fprintf(stdout, "wrote %d keys through c1\n", o.keys)

	consul, err := upgrade.ConnectAddr(client)
	if err != nil {
		return err
	}
	cfg := upgrade.Config{
		Consul:    consul,
		Transport: tr,
		Target:    o.to,
		Snapshot:  upgrade.SnapshotDir(filepath.Join(dir, "snapshots")),
		Rollback:  o.rollback,
		OnEvent:   func(e upgrade.Event) { printEvent(stdout, e, o.eventJSON) },
	}
	if err := os.MkdirAll(filepath.Join(dir, "snapshots"), 0o755); err != nil {
		return err
	}
	started := time.Now()
	res, err := upgrade.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	fmt.Fprintf(stdout, "upgrade done in %s: %d steps\n", time.Since(started).Round(100*time.Millisecond), len(res.Steps))

	for i := 0; i < o.keys; i++ {
		key := fmt.Sprintf("demo/%04d", i)
		v, err := kvGet(ctx, client, key)
		if err != nil {
			return fmt.Errorf("verify %s: %w", key, err)
		}
		if v != strconv.Itoa(i) {
			return fmt.Errorf("verify %s: value %q, want %q", key, v, strconv.Itoa(i))
		}
	}
	versions, err := memberVersions(ctx, client)
	if err != nil {
		return err
	}
	for _, a := range agents {
		if versions[a.Name] != o.to {
			return fmt.Errorf("verify: %s runs %q, want %s", a.Name, versions[a.Name], o.to)
		}
	}
	fmt.Fprintf(stdout, "verified: %d keys intact; s1, s2, s3 and c1 all run %s\n", o.keys, o.to)
	return nil
}

func printEvent(w io.Writer, e upgrade.Event, asJSON bool) {
	if asJSON {
		line := map[string]any{"time": e.Time, "kind": e.Kind, "step": e.Step.Kind, "node": e.Step.Node, "nodes": e.Step.Nodes, "to": e.Step.To, "condition": e.Condition, "detail": e.Detail}
		if e.Err != nil {
			line["error"] = e.Err.Error()
		}
		b, _ := json.Marshal(line)
		fmt.Fprintln(w, string(b))
		return
	}
	node := e.Step.Node
	if len(e.Step.Nodes) > 0 {
		node = strings.Join(e.Step.Nodes, ",")
	}
	msg := e.Detail
	if e.Kind == upgrade.EventStepStarted {
		msg = e.Step.Reason
	}
	if e.Err != nil {
		msg = e.Err.Error()
	}
	fmt.Fprintf(w, "%s  %-14s %-15s %-8s %s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Step.Kind, node, msg)
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// waitHealthy waits until autopilot on addr reports every server healthy.
func waitHealthy(ctx context.Context, addr string) error {
	var last string
	for {
		var h struct {
			Healthy bool
			Servers []struct{ Name string }
		}
		err := getJSON(ctx, "http://"+addr+"/v1/operator/autopilot/health", &h)
		switch {
		case err != nil:
			last = err.Error()
		case h.Healthy && len(h.Servers) == 3:
			return nil
		default:
			last = fmt.Sprintf("healthy=%v with %d servers", h.Healthy, len(h.Servers))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy (last: %s): %w", last, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func getJSON(ctx context.Context, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Autopilot health answers 429 while unhealthy, with the same body.
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

func kvPut(ctx context.Context, addr, key, value string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "true" {
		return fmt.Errorf("PUT %s: %s: %s", key, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

func kvGet(ctx context.Context, addr, key string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/kv/"+key+"?raw&consistent", nil)
	if err != nil {
		return "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", key, resp.Status)
	}
	return string(b), nil
}

func memberVersions(ctx context.Context, addr string) (map[string]string, error) {
	var ms []struct {
		Name string
		Tags map[string]string
	}
	if err := getJSON(ctx, "http://"+addr+"/v1/agent/members", &ms); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range ms {
		v, _, _ := strings.Cut(m.Tags["build"], ":")
		out[m.Name] = v
	}
	return out, nil
}
