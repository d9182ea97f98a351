package planner

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// basisPlan is the plan of baseCluster("1.12.9") to 1.13.9 (s3 leads):
// snapshot, s1, s2, s3, then the clients c1 and c2 in waves.
func basisPlan(t *testing.T) (Cluster, *UpgradePlan) {
	t.Helper()
	c := baseCluster("1.12.9")
	p, err := Plan(c, "1.13.9", Policy{})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	return c, p
}

// staleDiffs returns the diffs of the *StalePlanError CheckBasis gives,
// failing the test when it gives none.
func staleDiffs(t *testing.T, p *UpgradePlan, c Cluster) []BasisDiff {
	t.Helper()
	err := p.CheckBasis(c)
	var se *StalePlanError
	if !errors.As(err, &se) {
		t.Fatalf("CheckBasis = %v, want a *StalePlanError", err)
	}
	if len(se.Diffs) == 0 || se.NoBasis {
		t.Fatalf("stale error %+v names no difference", se)
	}
	return se.Diffs
}

func hasDiff(ds []BasisDiff, want string) bool {
	for _, d := range ds {
		if d.String() == want {
			return true
		}
	}
	return false
}

func TestAPlanRecordsWhatItWasReviewedOnAndRoundTripsThroughJSON(t *testing.T) {
	c := baseCluster("1.12.9")
	c.Missing = []MissingServer{{Name: "s0", Address: "10.0.0.9", Version: "1.12.9", Status: "left"}}
	c.UnfinishedSwap = &UnfinishedSwap{Node: "s2", From: "1.12.9", To: "1.13.9", Holder: "run 1"}
	p, err := Plan(c, "1.13.9", Policy{})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	b := p.Basis
	if b == nil || len(b.Datacenters) != 1 {
		t.Fatalf("basis %+v: want one datacenter", b)
	}
	d := b.Datacenters[0]
	if d.Name != "dc1" || d.Leader != "s3" || d.Voters != 3 || d.FailureTolerance != 1 || len(d.Servers) != 3 || d.ClientCount() != 2 {
		t.Errorf("dc1 basis %+v: want leader s3, 3 voters, failure tolerance 1, 3 servers, 2 clients", d)
	}
	if len(d.Missing) != 1 || d.Missing[0].Name != "s0" || b.UnfinishedSwap == nil || b.UnfinishedSwap.Node != "s2" {
		t.Errorf("basis %+v: want s0 missing and s2's unfinished swap", b)
	}
	data, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back UpgradePlan
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Basis, p.Basis) {
		t.Errorf("basis after JSON %+v, want %+v", back.Basis, p.Basis)
	}
	if err := back.CheckBasis(c); err != nil {
		t.Errorf("the unchanged cluster against the plan read back: %v", err)
	}
	if !strings.Contains(p.String(), "dc1: 3 server(s) (3 voter(s), leader s3, failure tolerance 1), 2 client(s)") ||
		!strings.Contains(p.String(), "unfinished swap: s2 1.12.9 -> 1.13.9") {
		t.Errorf("the printed plan does not show what it was reviewed on:\n%s", p)
	}
}

func TestAPlanWithoutABasisIsRefusedAsUncheckable(t *testing.T) {
	c, p := basisPlan(t)
	data, _ := p.JSON()
	var old map[string]any
	if err := json.Unmarshal(data, &old); err != nil {
		t.Fatal(err)
	}
	delete(old, "basis") // a plan saved before plans recorded their basis
	data, _ = json.Marshal(old)
	var back UpgradePlan
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("an old plan must still load: %v", err)
	}
	err := back.CheckBasis(c)
	var se *StalePlanError
	if !errors.As(err, &se) || !se.NoBasis {
		t.Fatalf("CheckBasis = %v, want a *StalePlanError with NoBasis", err)
	}
	if !strings.Contains(err.Error(), "records no basis") || !strings.Contains(err.Error(), "plan again") {
		t.Errorf("error %q should say the plan records no basis and to plan again", err)
	}
}

func TestTheBasisHoldsWhileTheClusterMovesOnlyAlongThePlansDoneSteps(t *testing.T) {
	c, p := basisPlan(t)
	c = cloneCluster(c)
	for i, s := range p.Steps {
		if err := p.CheckBasis(c); err != nil {
			t.Fatalf("before step %d (%s): %v", i+1, s, err)
		}
		applyStep(t, &c, s)
		if s.Kind == StepSwapServer && s.Node == "s3" {
			// The leader's swap hands leadership to another server.
			c.Servers[2].Leader, c.Servers[0].Leader = false, true
		}
	}
	if err := p.CheckBasis(c); err != nil {
		t.Fatalf("after the last step: %v", err)
	}
}

func TestAServerKilledAndRemovedByAutopilotMakesThePlanStale(t *testing.T) {
	c, p := basisPlan(t)
	c = cloneCluster(c)
	// s2 dies; autopilot removes it from the Raft configuration and serf
	// lists it as left.
	c.Servers = []Server{c.Servers[0], c.Servers[2]}
	c.Missing = []MissingServer{{Name: "s2", Version: "1.12.9", Status: "left"}}
	ds := staleDiffs(t, p, c)
	for _, want := range []string{
		"server s2: recorded a healthy voter on 1.12.9, observed missing: s2 (1.12.9, left in serf, not in the Raft configuration)",
		"voters of dc1: recorded 3 (s1, s2, s3), observed 2 (s1, s3)",
		"failure tolerance of dc1: recorded 1, observed 0",
	} {
		if !hasDiff(ds, want) {
			t.Errorf("diffs %v lack %q", ds, want)
		}
	}
}

func TestAKilledServerStillInTheRaftConfigurationMakesThePlanStale(t *testing.T) {
	c, p := basisPlan(t)
	c = cloneCluster(c)
	c.Servers[1].Healthy = false // s2 failed in serf, autopilot not yet done with it
	ds := staleDiffs(t, p, c)
	if !hasDiff(ds, "health of s2: recorded healthy, observed not healthy") || !hasDiff(ds, "failure tolerance of dc1: recorded 1, observed 0") {
		t.Errorf("diffs %v: want s2's health and the failure tolerance", ds)
	}
}

func TestANewServerMakesThePlanStale(t *testing.T) {
	c, p := basisPlan(t)
	c = cloneCluster(c)
	c.Servers = append(c.Servers, NewServer("s4", "1.12.9"))
	ds := staleDiffs(t, p, c)
	if !hasDiff(ds, "server s4: recorded not in the cluster, observed a healthy voter on 1.12.9") {
		t.Errorf("diffs %v: want s4 named as new", ds)
	}
}

func TestAVersionChangedOutOfBandMakesThePlanStale(t *testing.T) {
	c, p := basisPlan(t)
	c = cloneCluster(c)
	// s2 is upgraded by hand before the plan's first server step (s1).
	c.Servers[1].Version = "1.13.9"
	ds := staleDiffs(t, p, c)
	if !hasDiff(ds, "version of s2: recorded 1.12.9, observed 1.13.9") {
		t.Errorf("diffs %v: want s2's version", ds)
	}
	// s3 upgraded by hand after the plan swapped s1 is not explained
	// either: the plan's next step is s2's, and s3's comes after it.
	c = cloneCluster(baseCluster("1.12.9"))
	applyStep(t, &c, p.Steps[0])
	applyStep(t, &c, p.Steps[1])
	c.Servers[2].Version = "1.13.9" // s3, the leader, by hand
	ds = staleDiffs(t, p, c)
	if !hasDiff(ds, "version of s3: recorded 1.12.9, observed 1.13.9") {
		t.Errorf("diffs %v: want s3's version", ds)
	}
}

func TestALeaderChangeNotMadeByThePlanMakesItStaleAndOneMadeByItDoesNot(t *testing.T) {
	c, p := basisPlan(t)
	moved := cloneCluster(c)
	moved.Servers[2].Leader, moved.Servers[0].Leader = false, true
	ds := staleDiffs(t, p, moved)
	if len(ds) != 1 || ds[0].Item != "leader" || ds[0].Recorded != "s3" || !strings.HasPrefix(ds[0].Observed, "s1 ") {
		t.Errorf("diffs %v: want only the leader, s3 -> s1", ds)
	}

	// A swap of the plan restarts a server, which may move the leader.
	done := cloneCluster(c)
	applyStep(t, &done, p.Steps[0])
	applyStep(t, &done, p.Steps[1]) // s1
	done.Servers[2].Leader, done.Servers[1].Leader = false, true
	if err := p.CheckBasis(done); err != nil {
		t.Errorf("leader moved after the plan swapped a server: %v", err)
	}

	// A transfer of the plan moves it to its target.
	hi := baseCluster("1.15.4")
	tp, err := Plan(hi, "1.16.1", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	hi = cloneCluster(hi)
	var target string
	for _, s := range tp.Steps {
		applyStep(t, &hi, s)
		if s.Kind == StepTransferLeader {
			target = s.Target
			break
		}
	}
	if target == "" {
		t.Fatalf("plan %v has no transfer", tp.Steps)
	}
	if err := tp.CheckBasis(hi); err != nil {
		t.Errorf("leader moved by the plan's transfer to %s: %v", target, err)
	}
	for i := range hi.Servers {
		hi.Servers[i].Leader = hi.Servers[i].Name != target && hi.Servers[i].Name != "s3"
		if hi.Servers[i].Leader {
			break
		}
	}
	ds = staleDiffs(t, tp, hi)
	if !strings.Contains(ds[0].String(), "leader of dc1: recorded "+target) {
		t.Errorf("diffs %v: want the leader moved away from the transfer's target %s", ds, target)
	}
}

func TestClientsThatComeOrGoMakeThePlanStaleButAHaltedWaveDoesNot(t *testing.T) {
	c, p := basisPlan(t)
	gone := cloneCluster(c)
	gone.Clients = gone.Clients[:1]
	if ds := staleDiffs(t, p, gone); !hasDiff(ds, "client c2: recorded a member on 1.12.9, observed gone: not a member of the cluster") {
		t.Errorf("diffs %v: want c2 gone", ds)
	}
	fresh := cloneCluster(c)
	fresh.Clients = append(fresh.Clients, Client{Name: "c3", Version: "1.12.9"})
	if ds := staleDiffs(t, p, fresh); !hasDiff(ds, "client c3: recorded not in the cluster, observed a member on 1.12.9") {
		t.Errorf("diffs %v: want c3 new", ds)
	}

	// Every server swapped, then a wave of both clients halted after c1.
	wave := cloneCluster(c)
	var w Step
	for _, s := range p.Steps {
		if s.Kind == StepSwapClients {
			w = s
			break
		}
		applyStep(t, &wave, s)
	}
	if len(w.Nodes) == 0 {
		t.Fatalf("plan %v has no client wave", p.Steps)
	}
	wave.Servers[0].Leader, wave.Servers[2].Leader = true, false
	for i := range wave.Clients {
		if wave.Clients[i].Name == w.Nodes[0] {
			wave.Clients[i].Version = w.To
		}
	}
	if err := p.CheckBasis(wave); err != nil {
		t.Errorf("a wave halted midway: %v", err)
	}
}

func TestManyClientChangesAreSummedUp(t *testing.T) {
	c := baseCluster("1.12.9")
	c.Clients = clientsOf("web", "", "1.12.9", 40)
	p, err := Plan(c, "1.13.9", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	c = cloneCluster(c)
	c.Clients = c.Clients[:15]
	ds := staleDiffs(t, p, c)
	if len(ds) != clientDiffsShown+1 {
		t.Fatalf("%d diffs, want %d clients named and a summary", len(ds), clientDiffsShown)
	}
	if last := ds[len(ds)-1]; last.Item != "clients" || last.Recorded != "40 client(s)" || !strings.HasPrefix(last.Observed, "15 client(s), 25 difference(s) (25 gone") {
		t.Errorf("summary %v", last)
	}
	err = p.CheckBasis(c)
	if !strings.Contains(err.Error(), "and 1 more") {
		t.Errorf("error %q should list the first %d differences and count the rest", err, diffsShown)
	}
}

func TestTheReplaceStrategysAddedAndRetiredServersAreExplainedByItsSteps(t *testing.T) {
	c := replaceCluster("1.12.9")
	p, err := Plan(c, "1.13.9", replacePol)
	if err != nil {
		t.Fatal(err)
	}
	c = cloneCluster(c)
	added := map[string]int{}
	for i, s := range p.Steps {
		if err := p.CheckBasis(c); err != nil {
			t.Fatalf("before step %d (%s): %v", i+1, s, err)
		}
		var retired *Server
		if s.Kind == StepRetireServer {
			for _, sv := range c.Servers {
				if sv.Name == s.Node {
					retired = &sv
				}
			}
		}
		applyReplaceStep(t, &c, s, added)
		if retired != nil { // serf lists a retired server as left for a while
			c.Missing = append(c.Missing, MissingServer{Name: retired.Name, Version: retired.Version, Status: "left"})
		}
	}
	if err := p.CheckBasis(c); err != nil {
		t.Fatalf("after the last step: %v", err)
	}
}

func TestAnUnfinishedSwapThatAppearedMakesThePlanStale(t *testing.T) {
	c, p := basisPlan(t)
	c = cloneCluster(c)
	// Another run's swap, not one of the plan's (its To is not the
	// plan's): s1 still runs 1.12.9, healthy.
	c.UnfinishedSwap = &UnfinishedSwap{Node: "s1", From: "1.12.9", To: "1.13.8"}
	ds := staleDiffs(t, p, c)
	if len(ds) != 1 || !strings.HasPrefix(ds[0].String(), "unfinished swap: recorded none, observed s1 1.12.9 -> 1.13.8") {
		t.Errorf("diffs %v: want the unfinished swap", ds)
	}
}

func TestAServerThatRecoveredOrAToleranceThatRoseIsNotStale(t *testing.T) {
	c := baseCluster("1.12.9")
	c.Servers[0].Healthy = false
	p, err := Plan(c, "1.13.9", Policy{Waive: []RuleID{PrecheckServerUnhealthy}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Basis.Datacenters[0].FailureTolerance != 0 {
		t.Fatalf("basis %+v: want failure tolerance 0", p.Basis.Datacenters[0])
	}
	c = cloneCluster(c)
	c.Servers[0].Healthy = true
	if err := p.CheckBasis(c); err != nil {
		t.Errorf("s1 recovered: %v", err)
	}
}

// apply died while it swapped s1, the plan's first server step: the swap
// record is the plan's own, so s1 down (and the tolerance with it) is the
// step under way, not a change; the next run finishes it first.
func TestThePlansOwnUnfinishedSwapIsNotStale(t *testing.T) {
	c, p := basisPlan(t)
	c = cloneCluster(c)
	c.SnapshotVersion = "1.12.9"
	c.Servers[0].Healthy = false // s1 stopped
	c.UnfinishedSwap = &UnfinishedSwap{Node: "s1", From: "1.12.9", To: "1.13.9"}
	if err := p.CheckBasis(c); err != nil {
		t.Errorf("the plan's own swap under way: %v", err)
	}
	c.Servers[0].Version, c.Servers[0].Healthy = "1.13.9", true // s1 back on 1.13.9, not yet gated
	if err := p.CheckBasis(c); err != nil {
		t.Errorf("the plan's own swap done, record not yet deleted: %v", err)
	}
	c.Servers[1].Healthy = false // and s2 is down too: that is a change
	if ds := staleDiffs(t, p, c); !hasDiff(ds, "health of s2: recorded healthy, observed not healthy") {
		t.Errorf("diffs %v: want s2's health", ds)
	}
}

// When the leader is not the one the plan simulated, the hop's servers come
// in the order Next gives (the new leader last): the plan is not stale for
// a server of the hop swapped before its turn, and ServerHop says so; with
// the simulated leader still leading, it is.
func TestAHopsServersSwappedInAnotherOrderAfterALeaderChangeKeepThePlan(t *testing.T) {
	c, p := basisPlan(t)
	first := slices.IndexFunc(p.Steps, func(s Step) bool { return s.Kind == StepSwapServer })
	if first < 0 || p.Steps[first].Node != "s1" || p.Steps[first+2].Node != "s3" {
		t.Fatalf("plan %v: want s1, s2, then the leader s3", p.Steps)
	}
	done := cloneCluster(c)
	for _, s := range p.Steps[:first+1] {
		applyStep(t, &done, s)
	}
	// An election after s1's swap: s2 leads, so Next takes s3 before s2.
	done.Servers[2].Leader, done.Servers[1].Leader = false, true
	if end, ok := ServerHop(p.Steps, first+1, done); !ok || end != first+3 {
		t.Errorf("ServerHop = %d, %v; want %d, true (the leader is s2, the plan simulated s3)", end, ok, first+3)
	}
	next, err := Next(done, "1.13.9", Policy{})
	if err != nil || next.Kind != StepSwapServer || next.Node != "s3" {
		t.Fatalf("Next = %v, %v; want s3's swap (a follower now)", next, err)
	}
	applyStep(t, &done, next)
	if err := p.CheckBasis(done); err != nil {
		t.Errorf("CheckBasis after s3 swapped before s2 (s2 leads): %v", err)
	}

	// The same versions with s3, the simulated leader, still leading: s3
	// was changed before its turn by something else than the plan.
	still := cloneCluster(done)
	still.Servers[1].Leader, still.Servers[2].Leader = false, true
	if _, ok := ServerHop(p.Steps, first+1, still); ok {
		t.Errorf("ServerHop allows another order while the simulated leader s3 leads")
	}
	if err := p.CheckBasis(still); err == nil {
		t.Errorf("CheckBasis = nil with s3 (the leader) swapped before s2, want stale")
	}
}
