package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// connectFlags are the flags that reach a live cluster. Anything left unset
// comes from the CONSUL_HTTP_* environment variables, as the consul CLI
// reads them (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE,
// CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY, CONSUL_CACERT, CONSUL_CAPATH,
// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME).
//
// -http-addr takes one address or a comma-separated list (the list style
// of -releases, -waive and -known-hosts, and the one -dc uses after its
// '='): with several, the first agent that answers is used and the next
// one when it stops answering (upgrade.Failover).
type connectFlags struct {
	addr *string
	dcs  *dcFlag // nil for a command that observes one datacenter
}

// addConnectFlags adds -http-addr, and -dc when federation is true.
func addConnectFlags(fs *flag.FlagSet, federation bool) connectFlags {
	cf := connectFlags{
		addr: fs.String("http-addr", "", "`ADDRESSES` of Consul agents' HTTP API, comma-separated, e.g. 127.0.0.1:8500 or https://consul.example:8501 or 10.0.0.1:8500,10.0.0.2:8500: with several, the first that answers is used and the next when it stops answering; an address without a port means port 8500 (https:// ones: 443) (default: $CONSUL_HTTP_ADDR, else 127.0.0.1:8500); token and TLS come from the CONSUL_HTTP_* variables"),
	}
	if federation {
		cf.dcs = &dcFlag{}
		fs.Var(cf.dcs, "dc", "another datacenter of a WAN federation, as `NAME=ADDRESSES` (its agents' HTTP addresses, comma-separated, used as -http-addr's are); repeat for each datacenter. -http-addr stays an agent of the run's own datacenter, which holds the lock")
	}
	return cf
}

// dcFlag collects every -dc value; they are checked after parsing
// (parseDatacenters), so a bad one gets the command's own message.
type dcFlag struct{ vals []string }

func (d *dcFlag) String() string {
	if d == nil {
		return ""
	}
	return strings.Join(d.vals, " ")
}

func (d *dcFlag) Set(v string) error {
	d.vals = append(d.vals, v)
	return nil
}

// given reports whether -dc was given at all.
func (cf connectFlags) given() bool { return cf.dcs != nil && len(cf.dcs.vals) > 0 }

// address is the address(es) that will be used, for messages.
func (cf connectFlags) address() string {
	if *cf.addr != "" {
		return *cf.addr
	}
	if a := os.Getenv("CONSUL_HTTP_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:8500"
}

// dial connects to a Consul agent; tests replace it with a simulated
// cluster.
var dial = upgrade.ConnectAddr

// agentSwitch is a move of a failover Consul from one agent to another.
type agentSwitch struct {
	DC    string // the -dc name, "" for -http-addr's datacenter
	From  string // the agent given up (the first address, at the start)
	To    string // the agent in use now
	Cause string // why: each address tried and its error
}

func (s agentSwitch) text() string {
	flag := "-http-addr"
	if s.DC != "" {
		flag = "-dc " + s.DC
	}
	return fmt.Sprintf("%s: consul agent %s is in use now, in place of %s (%s)", flag, s.To, s.From, s.Cause)
}

// live is a connected cluster: the agent of the run's own datacenter and,
// with -dc, one of each other datacenter.
type live struct {
	consul   upgrade.Consul
	others   map[string]upgrade.Consul // nil without -dc
	features upgrade.FeatureConfig     // -feature: declared, and laid over what is observed
}

// discover observes the cluster: one datacenter, or the federation that -dc
// names, as apply's run observes it, with the -feature declarations laid
// over it as the run lays Config.Features.
func (l live) discover(ctx context.Context) (planner.Cluster, error) {
	c, err := upgrade.DiscoverDatacenters(ctx, l.consul, l.others)
	if err != nil {
		return c, err
	}
	if err := l.features.Declare(&c.Features); err != nil {
		return c, usagef("-feature: %v", err)
	}
	return c, nil
}

// members lists the agents serf knows in every datacenter observed (the
// -http-addr agent's LAN pool, then each -dc one's).
func (l live) members(ctx context.Context) ([]memberStatus, error) {
	var out []memberStatus
	add := func(dc string, c upgrade.Consul) error {
		ms, err := c.Members(ctx)
		if err != nil {
			if dc != "" {
				err = fmt.Errorf("datacenter %s: %w", dc, err)
			}
			return err
		}
		for _, m := range ms {
			if m == nil {
				continue
			}
			role := "client"
			if m.Tags["role"] == "consul" {
				role = "server"
			}
			version, _, _ := strings.Cut(m.Tags["build"], ":")
			out = append(out, memberStatus{Name: m.Name, Datacenter: m.Tags["dc"], Role: role, Version: version, Serf: serfStatusName(m.Status)})
		}
		return nil
	}
	if err := add("", l.consul); err != nil {
		return out, err
	}
	for _, dc := range slices.Sorted(maps.Keys(l.others)) {
		if err := add(dc, l.others[dc]); err != nil {
			return out, err
		}
	}
	return out, nil
}

// serfStatusName names a serf member status as consul members prints it.
func serfStatusName(st int) string {
	switch st {
	case 1:
		return "alive"
	case 2:
		return "leaving"
	case 3:
		return "left"
	case 4:
		return "failed"
	}
	return "none"
}

// checkPlan refuses a saved plan with steps in a datacenter this command
// does not observe (a federation's plan without its -dc flags): a run
// observes only those, so it would find nothing to do there and end as if
// done, and status would misplace the cluster on the plan.
func (l live) checkPlan(ctx context.Context, plan *planner.UpgradePlan, planFile string) error {
	var named []string
	for _, s := range plan.Steps {
		if s.Datacenter != "" && !slices.Contains(named, s.Datacenter) {
			named = append(named, s.Datacenter)
		}
	}
	if len(named) == 0 {
		return nil
	}
	self, err := l.consul.AgentSelf(ctx)
	if err != nil {
		return fmt.Errorf("read the datacenter of the -http-addr agent (to check the plan's datacenters): %w", err)
	}
	own, _ := self["Config"]["Datacenter"].(string)
	var missing []string
	for _, dc := range named {
		if _, ok := l.others[dc]; !ok && dc != own {
			missing = append(missing, dc)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return usagef("-plan %s has steps in datacenter(s) %s, which this command does not observe (the -http-addr agent is in %s); give -dc %s=ADDRESS[,ADDRESS...] for each, as when the plan was made", planFile, strings.Join(missing, ", "), own, missing[0])
}

// connect checks -http-addr and -dc and connects. Several addresses make a
// failover Consul whose switches are told to onSwitch (nil: not told). With
// -dc, each name must be a datacenter the federation lists, other than
// -http-addr's own. Bad input is a *usageError; nothing is read before it
// is refused.
func (cf connectFlags) connect(ctx context.Context, onSwitch func(agentSwitch)) (live, error) {
	var l live
	addrs := []string{""} // "": the default, as ConnectAddr reads it
	// -http-addr, else $CONSUL_HTTP_ADDR, read the same way (a port-less
	// address means 8500 in both).
	if name, list := "-http-addr", *cf.addr; list != "" || os.Getenv("CONSUL_HTTP_ADDR") != "" {
		if list == "" {
			name, list = "CONSUL_HTTP_ADDR", os.Getenv("CONSUL_HTTP_ADDR")
		}
		var err error
		if addrs, err = parseAddrs(name, list); err != nil {
			return l, err
		}
	}
	var dcs map[string][]string
	if cf.dcs != nil {
		var err error
		if dcs, err = parseDatacenters(cf.dcs.vals); err != nil {
			return l, err
		}
	}
	var err error
	if l.consul, err = dialAll(ctx, "", addrs, onSwitch); err != nil {
		return l, err
	}
	if len(dcs) == 0 {
		return l, nil
	}
	l.others = map[string]upgrade.Consul{}
	for _, name := range slices.Sorted(maps.Keys(dcs)) {
		if l.others[name], err = dialAll(ctx, name, dcs[name], onSwitch); err != nil {
			return l, err
		}
	}
	return l, cf.checkDatacenters(ctx, l.consul, dcs)
}

// checkDatacenters refuses a -dc name the federation does not list, or the
// name of -http-addr's own datacenter.
func (cf connectFlags) checkDatacenters(ctx context.Context, consul upgrade.Consul, dcs map[string][]string) error {
	known, err := consul.Datacenters(ctx)
	if err != nil {
		return fmt.Errorf("list the federation's datacenters through %s (to check -dc): %w", cf.address(), err)
	}
	self, err := consul.AgentSelf(ctx)
	if err != nil {
		return fmt.Errorf("read the datacenter of %s (to check -dc): %w", cf.address(), err)
	}
	own, _ := self["Config"]["Datacenter"].(string)
	for _, name := range slices.Sorted(maps.Keys(dcs)) {
		switch {
		case name == own:
			return usagef("-dc %s: that is the datacenter of the -http-addr agent (%s); give -dc only for the other datacenters of the federation", name, cf.address())
		case !slices.Contains(known, name):
			return usagef("-dc %s: the federation has no datacenter %q (the catalog of %s lists %s); name one of those, or join %s to the federation over the WAN first", name, name, cf.address(), strings.Join(known, ", "), name)
		}
	}
	return nil
}

// dialAll connects to one agent (as today: dial), or to several through a
// failover Consul. dc names the -dc datacenter ("" for -http-addr's).
func dialAll(ctx context.Context, dc string, addrs []string, onSwitch func(agentSwitch)) (upgrade.Consul, error) {
	flagName := "-http-addr"
	if dc != "" {
		flagName = "-dc " + dc
	}
	if len(addrs) == 1 {
		c, err := dial(addrs[0])
		if err != nil {
			return nil, usagef("%s: %v", flagName, err)
		}
		return c, nil
	}
	eps := make([]upgrade.Endpoint, len(addrs))
	for i, a := range addrs {
		c, err := dial(a)
		if err != nil {
			return nil, usagef("%s: %v", flagName, err)
		}
		eps[i] = upgrade.Endpoint{Addr: a, Consul: c}
	}
	f, err := upgrade.Failover(eps, func(from, to string, cause error) {
		if onSwitch != nil {
			onSwitch(agentSwitch{DC: dc, From: from, To: to, Cause: causeText(cause)})
		}
	})
	if err != nil {
		return nil, usagef("%s: %v", flagName, err)
	}
	// upgrade.Failover does not tell which agent it starts with: one read
	// makes the choice, and an agent other than the first is reported as a
	// switch. When none answers, the command's first call says so.
	if _, err := f.AgentSelf(ctx); err == nil && f.Current() != addrs[0] && onSwitch != nil {
		i := slices.Index(addrs, f.Current())
		onSwitch(agentSwitch{DC: dc, From: addrs[0], To: f.Current(), Cause: strings.Join(addrs[:i], ", ") + " gave no answer"})
	}
	return f, nil
}

// causeText lists each address a failover tried and why it was passed over.
func causeText(cause error) string {
	var ue *upgrade.AgentUnreachableError
	if !errors.As(cause, &ue) {
		if cause == nil {
			return "the agent in use gave no answer"
		}
		return cause.Error()
	}
	parts := make([]string, len(ue.Tried))
	for i, a := range ue.Tried {
		parts[i] = fmt.Sprintf("%s: %v", a, ue.Errs[i])
	}
	return strings.Join(parts, "; ")
}

// parseAddrs splits a comma-separated list of agent addresses and checks
// each: no empty element, none twice, each one http(s)://HOST[:PORT],
// HOST[:PORT] or unix://PATH. An address without a port gets Consul's HTTP
// port (withPort).
func parseAddrs(flagName, list string) ([]string, error) {
	var out []string
	seen := map[string]string{}
	for i, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, usagef("%s %q: address #%d is empty; separate the agents' addresses with single commas, e.g. %s 10.0.0.1:8500,10.0.0.2:8500", flagName, list, i+1, flagName)
		}
		if problem := addrProblem(a); problem != "" {
			return nil, usagef("%s: address %q %s", flagName, a, problem)
		}
		a = withPort(a)
		key := strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(a), "http://"), "/")
		if first, dup := seen[key]; dup {
			return nil, usagef("%s: address %q is listed twice (as %q and %q); list each agent once", flagName, a, first, a)
		}
		seen[key] = a
		out = append(out, a)
	}
	return out, nil
}

// defaultHTTPPort is the port of an agent address given without one:
// Consul's HTTP port, not the scheme's 80 (consul/api's reading).
const defaultHTTPPort = "8500"

// withPort gives HOST and http://HOST (an address addrProblem accepted)
// Consul's HTTP port, 8500: "-http-addr 10.0.0.1" means 10.0.0.1:8500. An
// https:// address without a port is left to its scheme's 443 (a load
// balancer's), and unix:// has no port.
func withPort(a string) string {
	scheme, rest, hasScheme := strings.Cut(a, "://")
	if !hasScheme {
		scheme, rest = "", a
	}
	if hasScheme && !strings.EqualFold(scheme, "http") {
		return a
	}
	host := strings.TrimSuffix(rest, "/")
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	if strings.Contains(host, ":") && !bracketed {
		return a // it has a port
	}
	host = net.JoinHostPort(strings.Trim(host, "[]"), defaultHTTPPort)
	if hasScheme {
		return scheme + "://" + host
	}
	return host
}

// addrProblem says what is wrong with an agent address ("" if nothing).
func addrProblem(a string) string {
	const want = "; write HOST:PORT (10.0.0.1:8500), https://HOST:PORT or unix://PATH"
	rest := a
	if scheme, r, ok := strings.Cut(a, "://"); ok {
		switch strings.ToLower(scheme) {
		case "http", "https":
			rest = r
		case "unix":
			if r == "" {
				return "names no socket path" + want
			}
			return ""
		default:
			return fmt.Sprintf("has the scheme %q, which is not http, https or unix%s", scheme, want)
		}
	}
	rest = strings.TrimSuffix(rest, "/")
	switch {
	case rest == "":
		return "names no host" + want
	case strings.ContainsAny(rest, "/?#@ \t"):
		return "is not an address (a path, query, user or space in it)" + want
	case !strings.Contains(rest, ":"):
		return ""
	case strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") && net.ParseIP(rest[1:len(rest)-1]) != nil:
		return "" // [IPv6] without a port
	}
	if net.ParseIP(rest) != nil {
		return "is an IPv6 address without brackets and port; write [ADDRESS]:8500"
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return fmt.Sprintf("is not HOST:PORT (%v)%s", err, want)
	}
	if host == "" {
		return "names no host" + want
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("has the port %q, which is not a number from 1 to 65535%s", port, want)
	}
	return ""
}

// parseDatacenters reads the -dc values: NAME=ADDRESS[,ADDRESS...], each
// name once.
func parseDatacenters(vals []string) (map[string][]string, error) {
	out := map[string][]string{}
	given := map[string]string{}
	for _, v := range vals {
		name, list, ok := strings.Cut(v, "=")
		name = strings.TrimSpace(name)
		switch {
		case !ok:
			return nil, usagef("-dc %q has no '='; write -dc NAME=ADDRESS[,ADDRESS...], e.g. -dc dc2=10.1.0.5:8500", v)
		case name == "":
			return nil, usagef("-dc %q names no datacenter before '='; write -dc NAME=ADDRESS[,ADDRESS...], e.g. -dc dc2=10.1.0.5:8500", v)
		case strings.TrimSpace(list) == "":
			return nil, usagef("-dc %q names no address after '='; write -dc %s=ADDRESS[,ADDRESS...], e.g. -dc %s=10.1.0.5:8500", v, name, name)
		}
		if first, dup := given[name]; dup {
			return nil, usagef("-dc %s is given twice (%q and %q); give each datacenter once, with all its agents comma-separated: -dc %s=ADDRESS,ADDRESS", name, first, v, name)
		}
		given[name] = v
		addrs, err := parseAddrs("-dc "+name, list)
		if err != nil {
			return nil, err
		}
		out[name] = addrs
	}
	return out, nil
}

// noteSwitch prints each switch of a failover Consul as a line on w (stderr
// for plan and status, whose stdout is the plan or the report).
func noteSwitch(w io.Writer, command string) func(agentSwitch) {
	return func(s agentSwitch) { fmt.Fprintf(w, "consul-upgrade %s: %s\n", command, s.text()) }
}
