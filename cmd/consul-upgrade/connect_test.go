package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func TestAgentAddressListsAreChecked(t *testing.T) {
	for _, ok := range []string{
		"127.0.0.1:8500",
		"10.0.0.1:8500,10.0.0.2:8500, 10.0.0.3:8500",
		"https://consul.example:8501,https://consul2.example:8501",
		"http://10.0.0.1:8500/",
		"consul.example",
		"[::1]:8500",
		"unix:///var/run/consul.sock",
	} {
		if _, err := parseAddrs("-http-addr", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for list, want := range map[string]string{
		"10.0.0.1:8500,,10.0.0.2:8500":       `address #2 is empty; separate the agents' addresses with single commas`,
		"10.0.0.1:8500,":                     `address #2 is empty`,
		"10.0.0.1:8500,10.0.0.1:8500":        `address "10.0.0.1:8500" is listed twice`,
		"10.0.0.1:8500,http://10.0.0.1:8500": `is listed twice (as "10.0.0.1:8500" and "http://10.0.0.1:8500")`,
		"10.0.0.1:85OO":                      `address "10.0.0.1:85OO" has the port "85OO", which is not a number from 1 to 65535; write HOST:PORT`,
		"10.0.0.1:99999":                     `has the port "99999"`,
		"ftp://10.0.0.1:8500":                `has the scheme "ftp", which is not http, https or unix`,
		"https://":                           `address "https://" names no host`,
		":8500":                              `address ":8500" names no host`,
		"10.0.0.1:8500/v1":                   `is not an address (a path, query, user or space in it)`,
		"10.0.0.1 8500":                      `is not an address`,
		"::1":                                `is an IPv6 address without brackets and port; write [ADDRESS]:8500`,
		"unix://":                            `names no socket path`,
		"10.0.0.1:8500,10.0.0.2:8500,10.0.0.1:8500/": `is listed twice`,
	} {
		_, err := parseAddrs("-http-addr", list)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "-http-addr") {
			t.Errorf("%q: %v; want a usage error from -http-addr saying %q", list, err, want)
		}
	}
}

func TestDCValuesAreChecked(t *testing.T) {
	got, err := parseDatacenters([]string{"dc2=10.1.0.1:8500", "dc3 = 10.2.0.1:8500,10.2.0.2:8500"})
	if err != nil || !slices.Equal(got["dc2"], []string{"10.1.0.1:8500"}) || !slices.Equal(got["dc3"], []string{"10.2.0.1:8500", "10.2.0.2:8500"}) || len(got) != 2 {
		t.Errorf("parsed %v (%v); want dc2 with one address, dc3 with two", got, err)
	}
	for name, tc := range map[string]struct {
		vals []string
		want string
	}{
		"no '='":               {[]string{"dc2:10.1.0.1:8500"}, `-dc "dc2:10.1.0.1:8500" has no '='; write -dc NAME=ADDRESS[,ADDRESS...], e.g. -dc dc2=10.1.0.5:8500`},
		"no name":              {[]string{"=10.1.0.1:8500"}, `-dc "=10.1.0.1:8500" names no datacenter before '='`},
		"no address":           {[]string{"dc2="}, `-dc "dc2=" names no address after '='; write -dc dc2=ADDRESS`},
		"a name twice":         {[]string{"dc2=10.1.0.1:8500", "dc2=10.1.0.2:8500"}, `-dc dc2 is given twice ("dc2=10.1.0.1:8500" and "dc2=10.1.0.2:8500"); give each datacenter once, with all its agents comma-separated`},
		"an empty address":     {[]string{"dc2=10.1.0.1:8500,,"}, `-dc dc2 "10.1.0.1:8500,,": address #2 is empty`},
		"a bad address":        {[]string{"dc2=10.1.0.1:http"}, `-dc dc2: address "10.1.0.1:http" has the port "http"`},
		"an address twice":     {[]string{"dc2=10.1.0.1:8500,10.1.0.1:8500"}, `-dc dc2: address "10.1.0.1:8500" is listed twice`},
		"a name with spaces 1": {[]string{" =10.1.0.1:8500"}, `names no datacenter`},
	} {
		_, err := parseDatacenters(tc.vals)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want a usage error saying %q", name, err, tc.want)
		}
	}
}

// Bad addresses and -dc values end every command that connects with exit
// code 2 and a message naming the value, before anything is dialled.
func TestBadAddressesAndDCValuesExitWith2BeforeDialling(t *testing.T) {
	dialled := 0
	oldDial := dial
	dial = func(string) (upgrade.Consul, error) { dialled++; return nil, errors.New("dialled") }
	t.Cleanup(func() { dial = oldDial })
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.json")
	os.WriteFile(planFile, []byte(`{"target": "1.13.9", "policy": {}, "findings": [], "path": [], "steps": []}`), 0o644)
	testTransport = newSim(3, 0).NewFake()
	defer func() { testTransport = nil }()
	for name, args := range map[string][]string{
		"plan, an empty address":        {"plan", "-to", "1.13.9", "-http-addr", "10.0.0.1:8500,"},
		"plan, -dc without '='":         {"plan", "-to", "1.13.9", "-http-addr", "10.0.0.1:8500", "-dc", "dc2"},
		"plan, -dc with -cluster":       {"plan", "-to", "1.13.9", "-cluster", "c.json", "-dc", "dc2=10.1.0.1:8500"},
		"apply, an address twice":       {"apply", "-yes", "-plan", planFile, "-http-addr", "10.0.0.1:8500,10.0.0.1:8500"},
		"apply, -dc given twice":        {"apply", "-yes", "-plan", planFile, "-dc", "dc2=10.1.0.1:8500", "-dc", "dc2=10.1.0.2:8500"},
		"status, a bad port":            {"status", "-http-addr", "10.0.0.1:0"},
		"status, -dc without addresses": {"status", "-dc", "dc2="},
		"rehearse, a bad scheme":        {"rehearse", "-to", "1.13.9", "-out", dir, "-http-addr", "tcp://10.0.0.1:8500"},
	} {
		code, _, stderr := cli(t, args...)
		if code != exitUsage || !strings.Contains(stderr, "consul-upgrade "+args[0]+": ") || !(strings.Contains(stderr, "-http-addr") || strings.Contains(stderr, "-dc")) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and a message naming the flag", name, code, stderr)
		}
	}
	if dialled != 0 {
		t.Errorf("dialled %d time(s) for refused input", dialled)
	}
	if code, _, stderr := cli(t, "rehearse", "-h"); code != exitOK || strings.Contains(stderr, "-dc") {
		t.Errorf("rehearse -h: exit %d; it replicates one datacenter, so it must not offer -dc:\n%s", code, stderr)
	}
}

// withAgents makes dial answer for the given addresses only.
func withAgents(t *testing.T, agents map[string]upgrade.Consul) {
	t.Helper()
	oldDial, oldTerm := dial, stdinIsTerminal
	dial = func(addr string) (upgrade.Consul, error) {
		if c, ok := agents[addr]; ok {
			return c, nil
		}
		return nil, fmt.Errorf("test: no agent at %q", addr)
	}
	stdinIsTerminal = func() bool { return false }
	t.Cleanup(func() { dial, stdinIsTerminal = oldDial, oldTerm })
}

// agentAt is the simulated agent of node, refused while it is down.
func agentAt(t *testing.T, sim *consultest.Cluster, node string) (string, upgrade.Consul) {
	t.Helper()
	n, ok := sim.Node(node)
	if !ok {
		t.Fatalf("no node %s", node)
	}
	c, err := sim.ClientAt(n.Address)
	if err != nil {
		t.Fatal(err)
	}
	return n.Address + ":8500", upgrade.NewConsul(c)
}

// deadAgent is an agent address where nothing answers (every request is
// refused).
func deadAgent(t *testing.T) upgrade.Consul {
	t.Helper()
	dead := consultest.NewCluster(1, 0, "1.12.9")
	dead.SetUnreachable(true)
	c, err := dead.Client()
	if err != nil {
		t.Fatal(err)
	}
	return upgrade.NewConsul(c)
}

// Failover through the CLI: plan and status start on the second address
// when the first does not answer, and say so; apply goes on through the
// next agent when the one it uses is swapped, and prints each switch as a
// progress line (text) or an agent-switched event (json).
func TestSeveralAddressesFailOverAndEachSwitchIsPrinted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 1)
		a1, c1 := agentAt(t, sim, "s1")
		a2, c2 := agentAt(t, sim, "s2")
		a3, c3 := agentAt(t, sim, "s3")
		const dead, dead2 = "dead.example:8500", "dead2.example:8500"
		withAgents(t, map[string]upgrade.Consul{dead: deadAgent(t), dead2: deadAgent(t), a1: c1, a2: c2, a3: c3})
		fake := sim.NewFake()
		testTransport = fake
		defer func() { testTransport = nil }()
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")

		code, out, stderr := cli(t, "plan", "-to", "1.13.9", "-http-addr", dead+","+a2, "-out", planFile, "-output", "json")
		if code != exitOK {
			t.Fatalf("plan: exit %d\n%s", code, stderr)
		}
		wantLine := fmt.Sprintf("consul-upgrade plan: -http-addr: consul agent %s is in use now, in place of %s (%s gave no answer)\n", a2, dead, dead)
		if !strings.Contains(stderr, wantLine) {
			t.Errorf("plan's stderr lacks the switch line %q:\n%s", wantLine, stderr)
		}
		var p planner.UpgradePlan
		if err := json.Unmarshal([]byte(out), &p); err != nil || len(p.Steps) != 5 {
			t.Fatalf("plan -output json printed %q (%v); want the plan alone, 5 steps", out, err)
		}

		// The plan swaps s2 first: apply talks to s2's agent, which the
		// swap stops, then to s3's; s3's swap sends it back to s2's.
		code, out, stderr = cli(t, "apply", "-plan", planFile, "-yes", "-snapshot-dir", filepath.Join(dir, "snaps"), "-http-addr", a2+","+a3)
		if code != exitOK || !strings.Contains(out, "Done: every agent runs 1.13.9") {
			t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
		}
		for _, want := range []string{
			fmt.Sprintf("    agent-switched: -http-addr: consul agent %s is in use now, in place of %s (%s: ", a3, a2, a2),
			fmt.Sprintf("    agent-switched: -http-addr: consul agent %s is in use now, in place of %s (%s: ", a2, a3, a3),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("apply's progress lacks %q:\n%s", want, out)
			}
		}
		if i, j := strings.Index(out, "step 2 of 5: swap-server s2"), strings.Index(out, "agent-switched"); i < 0 || j < i {
			t.Errorf("the first switch is not after s2's swap began:\n%s", out)
		}
		if s := swaps(fake); strings.Join(s, ",") != "s2,s3,s1,c1" {
			t.Errorf("swaps %v, want s2,s3,s1,c1", s)
		}
		if held := sim.HeldLocks(); len(held) != 0 {
			t.Errorf("locks still held: %v", held)
		}

		// status reads the lock and the backup record (the KV store)
		// through the agent that answers.
		code, out, stderr = cli(t, "status", "-plan", planFile, "-http-addr", dead+","+a1)
		if code != exitOK || !strings.Contains(out, "Lock: free") || !strings.Contains(out, "5 of 5 step(s) done") {
			t.Errorf("status: exit %d\n%s\n%s", code, out, stderr)
		}
		if want := "consul-upgrade status: -http-addr: consul agent " + a1 + " is in use now"; !strings.Contains(stderr, want) {
			t.Errorf("status's stderr lacks %q:\n%s", want, stderr)
		}

		// Nothing answers: exit 1 naming every address tried.
		code, _, stderr = cli(t, "status", "-http-addr", dead+","+dead2)
		if code != exitHalted || !strings.Contains(stderr, "no consul agent answered") {
			t.Errorf("status with no agent: exit %d, stderr %q; want 1, naming the addresses tried", code, stderr)
		}
	})
}

func TestApplyReportsASwitchAsAJSONEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		a2, c2 := agentAt(t, sim, "s2")
		a3, c3 := agentAt(t, sim, "s3")
		withAgents(t, map[string]upgrade.Consul{a2: c2, a3: c3})
		testTransport = sim.NewFake()
		defer func() { testTransport = nil }()
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		if code, _, stderr := cli(t, "plan", "-to", "1.13.9", "-no-snapshot", "-http-addr", a2, "-out", planFile); code != exitOK {
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		code, out, stderr := cli(t, "apply", "-plan", planFile, "-yes", "-output", "json", "-snapshot-dir", filepath.Join(dir, "snaps"), "-http-addr", a2+","+a3)
		if code != exitOK {
			t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
		}
		var switches []jsonEvent
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev jsonEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if ev.Event == "agent-switched" {
				switches = append(switches, ev)
			}
		}
		if len(switches) < 2 || switches[0].From != a2 || switches[0].To != a3 || switches[1].From != a3 || switches[1].To != a2 || switches[0].DC != "" || !strings.Contains(switches[0].Detail, "is in use now") {
			t.Errorf("agent-switched events %+v; want %s -> %s, then back", switches, a2, a3)
		}
	})
}

// The KV calls of a failover Consul follow the failover: a key written through
// one agent is read through the next when the first stops answering.
func TestTheKVStoreFollowsTheFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(3, 0)
		a2, c2 := agentAt(t, sim, "s2")
		a3, c3 := agentAt(t, sim, "s3")
		withAgents(t, map[string]upgrade.Consul{a2: c2, a3: c3})
		var seen []agentSwitch
		c, err := dialAll(t.Context(), "", []string{a2, a3}, func(s agentSwitch) { seen = append(seen, s) })
		if err != nil {
			t.Fatal(err)
		}
		kv, ok := c.(upgrade.KVStore)
		if !ok {
			t.Fatalf("%T does not implement upgrade.KVStore", c)
		}
		if _, ok := c.(upgrade.Locker); !ok {
			t.Fatalf("%T lost the failover's Locker", c)
		}
		ctx := t.Context()
		if err := kv.KVPut(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := sim.Swap("s2", "1.12.9", false); err != nil { // s2's agent stops
			t.Fatal(err)
		}
		v, found, err := kv.KVGet(ctx, "k")
		if err != nil || !found || string(v) != "v" {
			t.Fatalf("KVGet after s2 stopped: %q, %v, %v; want v through s3", v, found, err)
		}
		if len(seen) != 1 || seen[0].From != a2 || seen[0].To != a3 {
			t.Errorf("switches %+v, want one from %s to %s", seen, a2, a3)
		}
		if err := kv.KVDelete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if _, found, _ := kv.KVGet(ctx, "k"); found {
			t.Error("k still there after KVDelete")
		}
	})
}

// twoDCs is a federation of two simulated datacenters (dc1 the primary,
// dc2 with node names dc2-...) behind the addresses dc1.example:8500 and
// dc2.example:8500, with one transport that swaps whichever owns the node.
func twoDCs(t *testing.T) (dc1, dc2 *consultest.Cluster, tr *fedTransport) {
	t.Helper()
	dc1 = newSim(3, 1, consultest.WithDatacenter("dc1", "dc1"), consultest.WithPeerDatacenters("dc2"))
	dc2 = newSim(3, 1, consultest.WithDatacenter("dc2", "dc1"), consultest.WithNodePrefix("dc2-"))
	agents := map[string]upgrade.Consul{}
	for addr, sim := range map[string]*consultest.Cluster{"dc1.example:8500": dc1, "dc2.example:8500": dc2} {
		c, err := sim.Client()
		if err != nil {
			t.Fatal(err)
		}
		agents[addr] = upgrade.NewConsul(c)
	}
	withAgents(t, agents)
	tr = &fedTransport{dc1: dc1.NewFake(), dc2: dc2.NewFake()}
	testTransport = tr
	t.Cleanup(func() { testTransport = nil })
	return dc1, dc2, tr
}

type fedTransport struct {
	dc1, dc2 *transporttest.Fake
	order    []string
}

func (f *fedTransport) Swap(ctx context.Context, req transport.SwapRequest) error {
	f.order = append(f.order, req.Node)
	if strings.HasPrefix(req.Node, "dc2-") {
		return f.dc2.Swap(ctx, req)
	}
	return f.dc1.Swap(ctx, req)
}

// -dc adds the other datacenters of a WAN federation: plan shows their
// steps, apply carries them out (one snapshot per datacenter), status
// follows the plan across them.
func TestDCUpgradesAFederationFromTheCLI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dc1, dc2, tr := twoDCs(t)
		dir := t.TempDir()
		planFile, snaps := filepath.Join(dir, "plan.json"), filepath.Join(dir, "snaps")
		fed := []string{"-http-addr", "dc1.example:8500", "-dc", "dc2=dc2.example:8500"}

		code, out, stderr := cli(t, append([]string{"plan", "-to", "1.13.9", "-out", planFile}, fed...)...)
		if code != exitOK || !strings.Contains(out, "dc2-s2") {
			t.Fatalf("plan: exit %d\n%s\n%s", code, out, stderr)
		}
		p, err := readPlan(planFile)
		if err != nil {
			t.Fatal(err)
		}
		// A snapshot, then dc1 (the primary: servers, leader last; its
		// client), then dc2.
		if len(p.Steps) != 9 || p.Steps[5].Node != "dc2-s2" || p.Steps[5].Datacenter != "dc2" {
			t.Fatalf("plan steps %v; want a snapshot, dc1's 3 servers and wave, then dc2's", p.Steps)
		}
		// Without -dc the plan covers the agent's own datacenter alone.
		code, out, stderr = cli(t, "plan", "-to", "1.13.9", "-http-addr", "dc1.example:8500", "-output", "json")
		var one planner.UpgradePlan
		if code != exitOK || json.Unmarshal([]byte(out), &one) != nil {
			t.Fatalf("plan of dc1 alone: exit %d: %s", code, stderr)
		}
		for _, s := range one.Steps {
			if s.Datacenter == "dc2" || strings.HasPrefix(s.Node, "dc2-") {
				t.Errorf("the plan without -dc has dc2's step %s", s)
			}
		}

		// The federation's plan without -dc: refused before anything.
		for _, cmd := range [][]string{{"apply", "-plan", planFile, "-yes", "-snapshot-dir", snaps}, {"status", "-plan", planFile}} {
			code, _, stderr := cli(t, append(cmd, "-http-addr", "dc1.example:8500")...)
			if want := "-plan " + planFile + " has steps in datacenter(s) dc2, which this command does not observe (the -http-addr agent is in dc1); give -dc dc2=ADDRESS"; code != exitUsage || !strings.Contains(stderr, want) {
				t.Errorf("%s without -dc: exit %d, stderr %q; want 2 saying %q", cmd[0], code, stderr, want)
			}
		}
		if len(tr.order) != 0 {
			t.Fatalf("apply without -dc swapped %v", tr.order)
		}

		code, out, stderr = cli(t, append([]string{"apply", "-plan", planFile, "-yes", "-snapshot-dir", snaps}, fed...)...)
		if code != exitOK || !strings.Contains(out, "Done: every agent runs 1.13.9") {
			t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
		}
		if want := "s2,s3,s1,c1,dc2-s2,dc2-s3,dc2-s1,dc2-c1"; strings.Join(tr.order, ",") != want {
			t.Errorf("swaps %v, want %s", tr.order, want)
		}
		for _, sim := range []*consultest.Cluster{dc1, dc2} {
			for _, n := range sim.Nodes() {
				if n.Version != "1.13.9" {
					t.Errorf("%s runs %s after apply", n.Name, n.Version)
				}
			}
		}
		for _, dc := range []string{"dc1", "dc2"} {
			if m, _ := filepath.Glob(filepath.Join(snaps, "consul-"+dc+"-1.12.9-*.snap")); len(m) != 1 {
				t.Errorf("snapshots of %s: %v, want one", dc, m)
			}
		}

		code, out, stderr = cli(t, append([]string{"status", "-plan", planFile}, fed...)...)
		if code != exitOK || !strings.Contains(out, "9 of 9 step(s) done") || !strings.Contains(out, "dc2-s1") {
			t.Errorf("status: exit %d\n%s\n%s", code, out, stderr)
		}
	})
}

// A -dc name must be another datacenter the federation lists: an unknown
// name, the -http-addr agent's own, or an address whose agent belongs to
// another datacenter is refused with exit 2 before anything is touched.
func TestDCNamesMustBeTheFederationsOtherDatacenters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, _, tr := twoDCs(t)
		dir := t.TempDir()
		planFile := filepath.Join(dir, "plan.json")
		os.WriteFile(planFile, []byte(`{"target": "1.13.9", "policy": {"no_snapshot": true}, "findings": [], "path": [], "steps": []}`), 0o644)
		for name, tc := range map[string]struct {
			dc   string
			want string
		}{
			"an unknown name":    {"dc3=dc2.example:8500", `-dc dc3: the federation has no datacenter "dc3" (the catalog of dc1.example:8500 lists dc1, dc2); name one of those`},
			"the own name":       {"dc1=dc2.example:8500", `-dc dc1: that is the datacenter of the -http-addr agent (dc1.example:8500); give -dc only for the other datacenters`},
			"another dc's agent": {"dc2=dc1.example:8500", `Datacenters = "dc2": maps to an agent of datacenter dc1`},
		} {
			for _, cmd := range [][]string{
				{"plan", "-to", "1.13.9"},
				{"apply", "-plan", planFile, "-yes"},
				{"status"},
			} {
				code, _, stderr := cli(t, append(cmd, "-http-addr", "dc1.example:8500", "-dc", tc.dc)...)
				if code != exitUsage || !strings.Contains(stderr, tc.want) {
					t.Errorf("%s, %s: exit %d, stderr %q; want 2 saying %q", name, cmd[0], code, stderr, tc.want)
				}
			}
		}
		if len(tr.order) != 0 {
			t.Errorf("refused runs swapped %v", tr.order)
		}
	})
}
