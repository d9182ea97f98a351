package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// policyFlags are the flags that shape the policy; each set flag overrides
// the policy file.
type policyFlags struct {
	file           *string
	strategy       *string
	serverOrder    *string
	stopMode       *string
	clients        *string
	canary         *int
	batchSize      *int
	batchPercent   *int
	maxUnavailable *int
	noSnapshot     *bool
	noTransfer     *bool
	enterprise     *bool
	releases       *string
	waive          *string
}

func addPolicyFlags(fs *flag.FlagSet) policyFlags {
	return policyFlags{
		file:           fs.String("policy", "", "`FILE` with a planner.Policy as JSON; the flags below override it"),
		strategy:       fs.String("strategy", "", "server strategy: `in-place` (default) or replace"),
		serverOrder:    fs.String("server-order", "", "server order: `followers-first` (default) or as-listed"),
		stopMode:       fs.String("stop-mode", "", "how agents stop before a swap: `kill`, terminate or leave (default: chosen per role and version)"),
		clients:        fs.String("clients", "", "client agents: `waves` (default) or leave-behind"),
		canary:         fs.Int("canary", 0, "size of the first client wave of each datacenter and hop (default 1)"),
		batchSize:      fs.Int("batch-size", 0, "size of every later client wave (default: 10% of the datacenter's clients)"),
		batchPercent:   fs.Int("batch-percent", 0, "size of every later client wave as a percentage of the datacenter's clients"),
		maxUnavailable: fs.Int("max-unavailable", 0, "at most this many clients of one datacenter and zone down at once (default: no bound beyond the wave)"),
		noSnapshot:     fs.Bool("no-snapshot", false, "skip the snapshot before each hop"),
		noTransfer:     fs.Bool("no-transfer-leadership", false, "do not hand leadership over before the leader is swapped (>= 1.15)"),
		enterprise:     fs.Bool("enterprise", false, "the cluster runs Consul Enterprise (detected from +ent builds)"),
		releases:       fs.String("releases", "", "comma-separated `VERSIONS` that can be installed; every stepping stone is one of them"),
		waive:          fs.String("waive", "", "comma-separated rule `IDs` whose blocking findings you accept"),
	}
}

// usageError is a problem with flags or input files: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

func (pf policyFlags) policy() (planner.Policy, error) {
	var pol planner.Policy
	if *pf.file != "" {
		if err := readJSON(*pf.file, &pol); err != nil {
			return pol, usagef("-policy %s: %v", *pf.file, err)
		}
	}
	switch s := planner.Strategy(*pf.strategy); s {
	case "":
	case planner.InPlace, planner.Replace:
		pol.Strategy = s
	default:
		return pol, usagef("-strategy %q is not a strategy (want %s or %s)", *pf.strategy, planner.InPlace, planner.Replace)
	}
	switch o := planner.ServerOrder(*pf.serverOrder); o {
	case "":
	case planner.FollowersFirst, planner.AsListed:
		pol.ServerOrder = o
	default:
		return pol, usagef("-server-order %q is not a server order (want %s or %s)", *pf.serverOrder, planner.FollowersFirst, planner.AsListed)
	}
	switch m := planner.StopMode(*pf.stopMode); m {
	case "":
	case planner.StopKill, planner.StopTerminate, planner.StopLeave:
		pol.StopMode = m
	default:
		return pol, usagef("-stop-mode %q is not a stop mode (want %s, %s or %s)", *pf.stopMode, planner.StopKill, planner.StopTerminate, planner.StopLeave)
	}
	switch m := planner.ClientMode(*pf.clients); m {
	case "":
	case planner.ClientWaves, planner.ClientLeaveBehind:
		pol.Clients.Mode = m
	default:
		return pol, usagef("-clients %q is not a client mode (want %s or %s)", *pf.clients, planner.ClientWaves, planner.ClientLeaveBehind)
	}
	for _, f := range []struct {
		name string
		v    int
		dst  *int
	}{
		{"canary", *pf.canary, &pol.Clients.Canary},
		{"batch-size", *pf.batchSize, &pol.Clients.BatchSize},
		{"batch-percent", *pf.batchPercent, &pol.Clients.BatchPercent},
		{"max-unavailable", *pf.maxUnavailable, &pol.Clients.MaxUnavailable},
	} {
		switch {
		case f.v < 0:
			return pol, usagef("-%s %d is negative; give a positive number or leave it out for the default", f.name, f.v)
		case f.v > 0:
			*f.dst = f.v
		}
	}
	if pol.Clients.BatchPercent > 100 {
		return pol, usagef("-batch-percent %d is above 100", pol.Clients.BatchPercent)
	}
	if *pf.noSnapshot {
		pol.NoSnapshot = true
	}
	if *pf.noTransfer {
		pol.NoTransferLeadership = true
	}
	if *pf.enterprise {
		pol.Enterprise = true
	}
	for _, v := range splitList(*pf.releases) {
		if _, err := planner.ParseVersion(v); err != nil {
			return pol, usagef("-releases: %v", err)
		}
		pol.Releases = append(pol.Releases, v)
	}
	for _, id := range splitList(*pf.waive) {
		pol.Waive = append(pol.Waive, planner.RuleID(id))
	}
	return pol, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// readJSON decodes one JSON value from a file, refusing unknown fields (a
// misspelt key would otherwise be silently ignored).
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value in the file")
	}
	return nil
}

// readPlan reads a plan saved by "plan -out".
func readPlan(path string) (*planner.UpgradePlan, error) {
	var p planner.UpgradePlan
	if err := readJSON(path, &p); err != nil {
		return nil, usagef("-plan %s: %v (save one with: consul-upgrade plan -to VERSION -out %s)", path, err, path)
	}
	if _, err := planner.ParseVersion(p.Target); err != nil {
		return nil, usagef("-plan %s: the plan's target: %v", path, err)
	}
	if err := p.Findings.Err(); err != nil {
		return nil, usagef("-plan %s: the plan was refused when it was made, so it cannot be applied: %v", path, err)
	}
	return &p, nil
}

// outputFlag is -output text|json.
func addOutputFlag(fs *flag.FlagSet) *string {
	return fs.String("output", "text", "output `FORMAT`: text or json")
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return usagef("-output %q is not a format (want text or json)", o)
	}
	return nil
}

// parseFlags parses args; it returns done=true with the exit code when the
// command should stop (help asked for, a bad flag, stray arguments).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q (flags only; flags go before arguments); run consul-upgrade %s -h\n", fs.Name(), fs.Arg(0), fs.Name())
		return exitUsage, true
	}
	return 0, false
}

// fail prints err for command name and returns its exit code (judge; the
// command touched nothing).
func fail(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "consul-upgrade %s: %v\n", name, err)
	_, code := judge(err, nil)
	return code
}
