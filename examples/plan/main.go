// Command plan prints the findings and the whole upgrade plan for a Consul
// cluster, without touching anything: the planner is pure.
//
// With no arguments it plans the 2015 upgrade that the project is built
// around: three servers (s1 leads) and 700 clients on 0.4.1, ACLs off, to
// 0.5.2, clients left behind on purpose as the operator chose then.
//
//	go run ./examples/plan
//	go run ./examples/plan -clients waves
//	go run ./examples/plan -cluster mycluster.json -to 1.13.9 -json
//
// Exit status: 0 for a plan, 1 when the plan is refused (the findings are
// printed), 2 for a bad flag, an unreadable or invalid file, or a bad
// version.
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

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// story is the embedded 2015 scenario: 3 servers and 700 clients on 0.4.1.
func story() planner.Cluster {
	c := planner.Cluster{
		Servers: []planner.Server{
			{Name: "s1", Address: "10.0.0.1", Version: "0.4.1", Leader: true, Voter: true, Healthy: true},
			{Name: "s2", Address: "10.0.0.2", Version: "0.4.1", Voter: true, Healthy: true},
			{Name: "s3", Address: "10.0.0.3", Version: "0.4.1", Voter: true, Healthy: true},
		},
	}
	for i := range 700 {
		c.Clients = append(c.Clients, planner.Client{
			Name:    fmt.Sprintf("client-%03d", i+1),
			Address: fmt.Sprintf("10.0.%d.%d", 1+i/250, 1+i%250),
			Version: "0.4.1",
		})
	}
	return c
}

const storyTarget = "0.5.2"

// run is the program with its inputs and outputs passed in, so tests can
// call it. It returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clusterFile := fs.String("cluster", "", "`FILE` with a planner.Cluster as JSON (default: the embedded 2015 scenario)")
	policyFile := fs.String("policy", "", "`FILE` with a planner.Policy as JSON (default: the zero policy; clients left behind for the 2015 scenario)")
	to := fs.String("to", "", "target `VERSION` (default "+storyTarget+" for the 2015 scenario; required with -cluster)")
	asJSON := fs.Bool("json", false, "print the plan as JSON instead of a table")
	waive := fs.String("waive", "", "comma-separated rule `IDs` whose blocking findings you accept")
	clients := fs.String("clients", "", "what happens to client agents: `waves` or leave-behind (overrides the policy)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: plan [-cluster FILE] [-policy FILE] [-to VERSION] [-clients waves|leave-behind] [-waive ID,...] [-json]\n\n")
		fmt.Fprintf(stderr, "Prints the findings and the upgrade plan for a Consul cluster; touches nothing.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "plan: unexpected argument %q (flags only); run plan -h for usage\n", fs.Arg(0))
		return 2
	}

	c := story()
	pol := planner.Policy{Clients: planner.ClientPolicy{Mode: planner.ClientLeaveBehind}}
	target := storyTarget
	if *clusterFile != "" {
		c = planner.Cluster{}
		if err := readJSON(*clusterFile, &c); err != nil {
			fmt.Fprintf(stderr, "plan: -cluster %s: %v\n", *clusterFile, err)
			return 2
		}
		pol = planner.Policy{}
		if *to == "" {
			fmt.Fprintf(stderr, "plan: -to is required with -cluster (the version to upgrade %s to, e.g. 1.13.9)\n", *clusterFile)
			return 2
		}
	}
	if *policyFile != "" {
		pol = planner.Policy{}
		if err := readJSON(*policyFile, &pol); err != nil {
			fmt.Fprintf(stderr, "plan: -policy %s: %v\n", *policyFile, err)
			return 2
		}
	}
	if *to != "" {
		target = *to
	}
	if _, err := planner.ParseVersion(target); err != nil {
		fmt.Fprintf(stderr, "plan: -to: %v\n", err)
		return 2
	}
	switch planner.ClientMode(*clients) {
	case "":
	case planner.ClientWaves, planner.ClientLeaveBehind:
		pol.Clients.Mode = planner.ClientMode(*clients)
	default:
		fmt.Fprintf(stderr, "plan: -clients %q is not a client mode (want waves or leave-behind)\n", *clients)
		return 2
	}
	for _, id := range strings.Split(*waive, ",") {
		if id = strings.TrimSpace(id); id != "" {
			pol.Waive = append(pol.Waive, planner.RuleID(id))
		}
	}

	p, err := planner.Plan(c, target, pol)
	var refused *planner.RefusedError
	if err != nil && !errors.As(err, &refused) {
		fmt.Fprintf(stderr, "plan: %v\n", err)
		var ve *planner.VersionError
		var pe *planner.PolicyError
		var de *planner.DowngradeError
		if errors.As(err, &ve) || errors.As(err, &pe) || errors.As(err, &de) {
			return 2
		}
		return 1
	}
	if *asJSON {
		data, jerr := p.JSON()
		if jerr != nil {
			fmt.Fprintf(stderr, "plan: encode the plan as JSON: %v\n", jerr)
			return 1
		}
		stdout.Write(append(data, '\n'))
	} else {
		fmt.Fprint(stdout, p)
		if refused == nil {
			fmt.Fprint(stdout, leftBehind(c, target, pol))
		}
	}
	if refused != nil {
		fmt.Fprintf(stderr, "plan: %v\n", refused)
		return 1
	}
	return 0
}

// leftBehind says how many clients the plan leaves on their version.
func leftBehind(c planner.Cluster, target string, pol planner.Policy) string {
	if pol.Clients.Mode != planner.ClientLeaveBehind || len(c.Clients) == 0 {
		return ""
	}
	tv, err := planner.ParseVersion(target)
	if err != nil {
		return ""
	}
	n := 0
	for _, cl := range c.Clients {
		if v, err := planner.ParseVersion(cl.Version); err == nil && v.LessThan(tv) {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("\nClients: %d of %d stay below %s, left behind on purpose; plan with -clients waves to upgrade them after their servers.\n", n, len(c.Clients), target)
}

// readJSON decodes the JSON file at path into v, refusing unknown fields
// and trailing data.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not valid JSON for %T: %w", v, err)
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}
