// Command consul-upgrade plans and applies a safe upgrade of a Consul
// cluster, one step at a time, on the public API of this module (planner,
// upgrade, transport/...).
//
//	consul-upgrade plan  -http-addr 127.0.0.1:8500 -to 1.13.9 -out plan.json
//	consul-upgrade apply -plan plan.json -inventory hosts.json -step
//	consul-upgrade status
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

// Exit codes, the same for every command.
const (
	exitOK       = 0 // done, or the requested step(s) carried out, or printed
	exitHalted   = 1 // a step or gate failed and the run halted, or Consul could not be reached
	exitUsage    = 2 // bad flags or input, a refused plan or run (nothing touched), or the operator declined
	exitDiverged = 3 // the cluster no longer matches the saved plan (nothing touched)
)

const exitCodesHelp = `Exit codes:
  0  done: the plan was printed, the step(s) asked for were carried out, or
     the cluster already runs the target
  1  halted: a step or its gate failed (the run stopped; nothing after the
     failed step was touched), the upgrade lock was lost, Consul could not
     be reached, or Ctrl-C
  2  usage or refused: bad flags or files, a plan refused by its findings,
     the upgrade lock held by another run, or the operator answered no;
     nothing in the cluster was touched
  3  diverged: the cluster no longer matches the saved plan; nothing was
     touched; plan again and review
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
