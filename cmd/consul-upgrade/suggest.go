package main

import (
	"flag"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandLine renders "consul-upgrade ARGS..." so that it can be pasted
// into a shell as printed.
func commandLine(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return "consul-upgrade " + strings.Join(q, " ")
}

// givenFlags lists the flags of fs that were set on the command line, as
// "-name", "value" pairs ("-name" alone for a bool flag set true) in the
// order of the flag set, less those named in drop. A repeatable flag
// (-dc, -feature) gives each of its values.
func givenFlags(fs *flag.FlagSet, drop ...string) []string {
	return visitGiven(fs, func(name string) bool { return !slices.Contains(drop, name) })
}

// flagsNamed is givenFlags for the flags named in keep only.
func flagsNamed(fs *flag.FlagSet, keep ...string) []string {
	return visitGiven(fs, func(name string) bool { return slices.Contains(keep, name) })
}

func visitGiven(fs *flag.FlagSet, want func(name string) bool) []string {
	var out []string
	fs.Visit(func(f *flag.Flag) {
		if !want(f.Name) {
			return
		}
		switch v := f.Value.(type) {
		case *dcFlag:
			for _, val := range v.vals {
				out = append(out, "-"+f.Name, val)
			}
			return
		case *featureFlag:
			for _, val := range v.vals {
				out = append(out, "-"+f.Name, val)
			}
			return
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			if f.Value.String() == "true" {
				out = append(out, "-"+f.Name)
			} else {
				out = append(out, "-"+f.Name+"=false")
			}
			return
		}
		out = append(out, "-"+f.Name, f.Value.String())
	})
	return out
}

// connectionFlags are the flags plan, apply and status share: the agents
// and the declared features.
var connectionFlags = []string{"http-addr", "dc", "feature"}

// policyArgs renders a plan's policy as plan's policy flags, and reports
// whether they carry all of it (a policy with user rules or fields that
// have no flag does not fit: re-plan with -policy FILE).
func policyArgs(p planner.Policy) ([]string, bool) {
	var out []string
	add := func(name, v string) {
		if v != "" {
			out = append(out, "-"+name, v)
		}
	}
	add("strategy", string(p.Strategy))
	add("server-order", string(p.ServerOrder))
	add("stop-mode", string(p.StopMode))
	add("clients", string(p.Clients.Mode))
	for _, f := range []struct {
		name string
		v    int
	}{{"canary", p.Clients.Canary}, {"batch-size", p.Clients.BatchSize}, {"batch-percent", p.Clients.BatchPercent}, {"max-unavailable", p.Clients.MaxUnavailable}} {
		if f.v > 0 {
			add(f.name, strconv.Itoa(f.v))
		}
	}
	if p.NoSnapshot {
		out = append(out, "-no-snapshot")
	}
	if p.NoTransferLeadership {
		out = append(out, "-no-transfer-leadership")
	}
	if p.Enterprise {
		out = append(out, "-enterprise")
	}
	add("releases", strings.Join(p.Releases, ","))
	waive := make([]string, len(p.Waive))
	for i, id := range p.Waive {
		waive[i] = string(id)
	}
	add("waive", strings.Join(waive, ","))
	// Does parsing the flags back give the same policy?
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	pf := addPolicyFlags(fs)
	if fs.Parse(out) != nil {
		return out, false
	}
	back, err := pf.policy()
	return out, err == nil && reflect.DeepEqual(normPolicy(back), normPolicy(p))
}

// normPolicy makes nil and empty slices alike, for comparing.
func normPolicy(p planner.Policy) planner.Policy {
	if len(p.Releases) == 0 {
		p.Releases = nil
	}
	if len(p.Waive) == 0 {
		p.Waive = nil
	}
	return p
}

// replanLine is the plan command that makes plan again for the cluster as it
// is now, with the plan's target and policy and the connection and feature
// flags given (conn, from givenFlags), into the same file. ok is false
// when the policy needs a -policy FILE the line cannot carry.
func replanLine(p *planner.UpgradePlan, planFile string, conn []string) (line string, ok bool) {
	args := []string{"plan", "-to", p.Target}
	args = append(args, conn...)
	pol, ok := policyArgs(p.Policy)
	args = append(args, pol...)
	args = append(args, "-out", planFile)
	return commandLine(args...), ok
}
