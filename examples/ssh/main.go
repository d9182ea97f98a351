// Command ssh swaps one Consul agent on a remote host over SSH with
// transport/ssh: the binary for the target version is streamed over the
// connection, its SHA-256 checked on the host, installed atomically (the old
// one kept as <binary>.prev), the agent stopped and started, and the version
// it then reports printed.
//
//	go run ./examples/ssh -host 10.0.0.5:22 -user root -key ~/.ssh/id_ed25519 \
//	    -node consul-s1 -role server -to 1.13.9 \
//	    -artifact ./consul-1.13.9 -sha256 <hex from SHA256SUMS>
//
// See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it parses args, swaps, and returns the
// exit code (0 swapped, 1 the swap failed, 2 bad usage).
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// argvFlag is a command given as a JSON array of strings.
type argvFlag []string

func (a *argvFlag) String() string {
	if a == nil || *a == nil {
		return ""
	}
	b, _ := json.Marshal([]string(*a))
	return string(b)
}

func (a *argvFlag) Set(s string) error {
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return fmt.Errorf("want a JSON array of strings such as [\"systemctl\",\"start\",\"consul\"]: %v", err)
	}
	*a = v
	return nil
}

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssh", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		host       = fs.String("host", "", "the node's SSH address, host:port")
		user       = fs.String("user", "root", "login user")
		key        = fs.String("key", "", "private key file (unencrypted); empty uses the SSH agent at $SSH_AUTH_SOCK")
		knownHosts = fs.String("known-hosts", "", "known_hosts file (default ~/.ssh/known_hosts)")
		binPath    = fs.String("binary-path", "/usr/local/bin/consul", "absolute path of the consul binary on the host")
		node       = fs.String("node", "", "the agent's node name")
		role       = fs.String("role", "server", "server or client")
		from       = fs.String("from", "", "version running now (optional)")
		to         = fs.String("to", "", "version to run, e.g. 1.13.9")
		artifact   = fs.String("artifact", "", "local consul binary for -to")
		sum        = fs.String("sha256", "", "expected SHA-256 (hex) of -artifact, from the release's SHA256SUMS; empty checks the transfer only")
		stopMode   = fs.String("stop-mode", "kill", "kill (SIGKILL, no leave), terminate (SIGTERM) or leave (clients only)")
		supervisor = fs.Bool("supervisor-restarts", false, "a supervisor restarts the agent after the stop; do not run -start-cmd")
		timeout    = fs.Duration("timeout", 10*time.Minute, "bound on the whole swap")
		startCmd   argvFlag
		stopCmd    argvFlag
		checkCmd   argvFlag
	)
	fs.Var(&startCmd, "start-cmd", "start command as a JSON argv template (default [\"systemctl\",\"start\",\"consul\"])")
	fs.Var(&stopCmd, "stop-cmd", "stop command as a JSON argv template (default [\"systemctl\",\"kill\",\"-s\",\"SIG{{.Signal}}\",\"consul\"])")
	fs.Var(&checkCmd, "check-cmd", "command exiting 0 while the agent runs, JSON argv template (default [\"systemctl\",\"is-active\",\"--quiet\",\"consul\"])")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var missing []string
	for name, v := range map[string]string{"-host": *host, "-node": *node, "-to": *to, "-artifact": *artifact} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		fmt.Fprintf(stderr, "ssh: missing %v; see -h\n", missing)
		return 2
	}

	opts := []ssh.Option{ssh.WithResolver(ssh.Files(map[string]ssh.File{*to: {Path: *artifact, SHA256: *sum}}))}
	if *key != "" {
		opts = append(opts, ssh.WithKeyFile(*key))
	} else {
		opts = append(opts, ssh.WithAgent())
	}
	if *knownHosts != "" {
		opts = append(opts, ssh.WithKnownHosts(*knownHosts))
	}
	tr, err := ssh.New(map[string]ssh.Host{*node: {
		Addr: *host, User: *user, BinaryPath: *binPath,
		StartCmd: startCmd, StopCmd: stopCmd, CheckCmd: checkCmd,
		SupervisorRestarts: *supervisor,
	}}, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "ssh: %v\n", err)
		return 2
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req := transport.SwapRequest{Node: *node, Role: transport.Role(*role), From: *from, To: *to, StopMode: transport.StopMode(*stopMode)}
	began := time.Now()
	if err := tr.Swap(ctx, req); err != nil {
		fmt.Fprintf(stderr, "ssh: %v\n", err)
		var hk *ssh.HostKeyError
		if errors.As(err, &hk) {
			fmt.Fprintf(stderr, "ssh: the host's key fingerprint is %s\n", hk.Fingerprint)
		}
		return 1
	}
	v, err := tr.RunningVersion(ctx, *node)
	if err != nil {
		fmt.Fprintf(stderr, "ssh: swapped, but reading the version back failed: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: now runs consul %s (swap took %v; previous binary kept at %s.prev)\n", *node, v, time.Since(began).Round(time.Millisecond), *binPath)
	return 0
}
