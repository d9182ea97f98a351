// Command consul-upgrade plans and applies a safe upgrade of a Consul
// cluster, one step at a time, on the public API of this module (planner,
// upgrade, transport/...).
//
//	consul-upgrade plan  -http-addr 127.0.0.1:8500 -to 1.13.9 -out plan.json
//	consul-upgrade apply -plan plan.json -inventory hosts.json -step
//	consul-upgrade status
//	consul-upgrade version
//
// Run "consul-upgrade help" for the commands and their exit codes.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// Exit codes, the same for every command. They derive from what the
// command touched (upgrade.Result.Touched) first, then from its error:
// judge.
const (
	exitOK       = 0 // done, the requested step(s) carried out, or printed
	exitHalted   = 1 // stopped on an error after touching the cluster (whatever the error), or before touching it for a reason that is not a refusal
	exitUsage    = 2 // bad flags or input, or a refusal; nothing touched
	exitDiverged = 3 // the cluster no longer matches the saved plan; nothing touched
)

const exitCodesHelp = `Exit codes:
(apply derives them from the record of the nodes it touched, which it
prints, first, and only then from the error)
  0  done: the plan or the status was printed, the step(s) asked for were
     carried out (apply -step, or every step you approved before you
     answered no), or the cluster already runs the target
  1  halted: the run touched the cluster and then stopped on an error,
     whatever the error (a failed step or gate, the upgrade lock lost, a
     plan the cluster diverged from after a step, Ctrl-C); or it stopped
     before touching anything for a reason that is not a refusal (Consul
     could not be reached, a swap that failed before it stopped the node,
     the lock lost, Ctrl-C). Every node the run touched is listed, with
     how far it got (stopped, started, gated, rolled back)
  2  usage or refused, and nothing in the cluster was touched: bad flags
     or files, a plan refused by its findings, a target that is not a
     Consul release, a binary a host cannot get (pre-flight), the upgrade
     lock held by another run, a stop refused to keep the quorum, an
     unreadable swap record, or you answered no at the first prompt
  3  diverged or stale, and nothing in the cluster was touched: the cluster
     no longer matches the saved plan (its steps, or what it was reviewed
     on); plan again (the command is printed), review, and apply the new
     plan
Under -output json an error is also one JSON object on stdout: its event
(halted, interrupted, usage, refused, diverged), error_type, error,
exit_code and touched (the record; [] when nothing was touched).
`

// command is one subcommand. run returns the exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands is the dispatch table. Other files may add entries from an init
// func.
var commands = map[string]command{
	"plan":   {summary: "print the upgrade plan for a cluster (a file, or live through its HTTP API) and save it", run: runPlan},
	"apply":  {summary: "carry out a saved plan, step by step, asking before each step", run: runApply},
	"status": {summary: "show who holds the upgrade lock, what is done and what comes next", run: runStatus},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to a command; it is the whole program with its inputs and
// outputs passed in, so tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-version", "--version":
		return runVersion(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				return c.run(ctx, []string{"-h"}, stdout, stderr)
			}
		}
		usage(stdout)
		return exitOK
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "consul-upgrade: unknown command %q; the commands are %v (consul-upgrade help)\n", name, commandNames())
		return exitUsage
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func commandNames() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: consul-upgrade <command> [flags]\n\nPlans and applies a safe upgrade of a Consul cluster.\n\nCommands:\n")
	for _, n := range commandNames() {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun consul-upgrade <command> -h for its flags.\n\n%s", exitCodesHelp)
}
