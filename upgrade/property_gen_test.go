package upgrade

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// This file generates the scenarios of the property test (property_test.go)
// from a seed: a cluster, the options of the runs, and a schedule of
// faults. Everything is drawn from one PCG stream in a fixed order, so a
// seed is a scenario.

// propUpgrade is a from/to pair the simulator can carry out: planner.Path
// finds its hops, and the simulator's eras follow the versions the agents
// run (propEra). The pairs cover every era consultest simulates, multi-hop
// paths, and leadership transfer (1.15 and later on both sides).
type propUpgrade struct{ from, to string }

var propUpgrades = []propUpgrade{
	{"0.5.2", "0.6.4"},  // 0.4/0.5 -> 0.6: logical backups, peers only
	{"0.6.4", "0.7.5"},  // 0.6 -> 0.7: the lock moves by a release and an acquire
	{"0.6.4", "0.9.3"},  // two hops across three eras
	{"0.7.5", "0.9.3"},  // raft configuration, then raft protocol 2
	{"0.8.5", "1.2.4"},  // the dedicated path out of 0.8
	{"1.2.4", "1.6.10"}, // the dedicated path to 1.6.10
	{"1.10.12", "1.12.9"},
	{"1.12.9", "1.13.9"}, // the demo cluster's hop
	{"1.12.9", "1.14.8"},
	{"1.14.8", "1.16.1"}, // 1.14 -> 1.15 without transfer, then 1.15 -> 1.16 with it
	{"1.15.4", "1.16.1"}, // leadership transfer
}

// propEra is the API era of agents on version v, as the simulator has them.
func propEra(v string) consultest.Era {
	pv, err := planner.ParseVersion(v)
	if err != nil {
		return consultest.EraCurrent
	}
	seg := pv.Segments()
	switch {
	case seg[0] >= 1:
		return consultest.EraCurrent
	case seg[1] < 6:
		return consultest.Era04
	case seg[1] < 7:
		return consultest.Era06
	case seg[1] < 8:
		return consultest.Era07
	}
	return consultest.Era08Raft2
}

// propPoint is where a fault is injected.
type propPoint string

const (
	// atBeforeRun: before the run starts (after the approved plan was
	// made, for the first run): between runs, as an operator's pause.
	atBeforeRun propPoint = "before-run"
	// atBeforeStep: in Config.BeforeStep, after the step was decided and
	// checked, before anything of it is touched.
	atBeforeStep propPoint = "before-step"
	// atStepStarted: at the step-started event, before the step's lock
	// move and quorum check.
	atStepStarted propPoint = "step-started"
	// atNodeStopped: at a node-stopped event (the transport reports the
	// stop; the simulated cluster has not seen the restart yet).
	atNodeStopped propPoint = "node-stopped"
	// atAfterSwap: when the transport's swap returned (the cluster saw it).
	atAfterSwap propPoint = "after-swap"
	// atGateWaiting: at the step's first gate-waiting event.
	atGateWaiting propPoint = "gate-waiting"
	// atStepDone: at the step-done event, after the gate passed.
	atStepDone propPoint = "step-done"
	// atRollbackGate: at the first gate-waiting event after a rollback
	// (the node is back on its old binary, the cluster not yet healthy).
	atRollbackGate propPoint = "rollback-gate"
)

var propPointsInRun = []propPoint{atBeforeStep, atStepStarted, atNodeStopped, atAfterSwap, atGateWaiting, atStepDone, atRollbackGate}

// propFaultKind is what a fault does.
type propFaultKind string

const (
	fKill           propFaultKind = "kill"             // kill -9 of a server that is up
	fKillBeforeStop propFaultKind = "kill-before-stop" // at a server swap: kill another voter of its datacenter
	fRevive         propFaultKind = "revive"           // start a killed server again
	fReviveAll      propFaultKind = "revive-all"       // start every killed server again (an operator between runs)
	fRemoveDead     propFaultKind = "remove-dead"      // autopilot removes a killed server (one is killed first if none is down)
	fLeader         propFaultKind = "leader"           // leadership moves to another healthy voter
	fLoseLock       propFaultKind = "lose-lock"        // every session of the lock's datacenter is invalidated
	fMissingBinary  propFaultKind = "missing-binary"   // a node cannot get a binary
	fBroken         propFaultKind = "broken"           // a version never comes up
	fUnhealthy      propFaultKind = "come-back-unhealthy"
	fOld            propFaultKind = "come-back-old"
	fFailNext       propFaultKind = "fail-next" // the next swap of a node fails before it stops anything
	fHang           propFaultKind = "hang-next" // the next swap of a node hangs until the run's context ends
	fCancel         propFaultKind = "cancel"    // the run's context is cancelled
	fSkip           propFaultKind = "skip"      // BeforeStep says Skip
	fAbort          propFaultKind = "abort"     // BeforeStep says Abort
	fEditPlan       propFaultKind = "edit-plan" // the approved plan is edited (a step or the basis)
	fReplan         propFaultKind = "replan"    // the operator plans again and approves the new plan
)

// propFault is one fault of a scenario: it fires at the first point At of
// run Run at or after its Step-th step (0-based, counted by the steps the
// run started), and Pick chooses what it acts on among what is there when
// it fires (nodes by name, in order).
type propFault struct {
	Index int // its place in the scenario's faults (-property.faults)
	Run   int
	At    propPoint
	Step  int
	Kind  propFaultKind
	Pick  uint64
}

func (f propFault) String() string {
	if f.At == atBeforeRun {
		return fmt.Sprintf("run %d %s: %s #%d", f.Run+1, f.At, f.Kind, f.Pick%1000)
	}
	return fmt.Sprintf("run %d %s (step >= %d): %s #%d", f.Run+1, f.At, f.Step+1, f.Kind, f.Pick%1000)
}

// propDCShape is one datacenter of a scenario.
type propDCShape struct {
	Name             string
	Servers, Clients int
}

// propScenario is everything a seed decides.
type propScenario struct {
	Seed     uint64
	From, To string
	DCs      []propDCShape
	// ViaClient: the run talks to the agent of client c1 (the lock's
	// session is then on c1), not to a server.
	ViaClient  bool
	Rollback   bool
	Plan       bool // the runs follow an approved plan, made before the first
	MaxSteps   int  // Config.MaxSteps of every run (0: no bound)
	NoSnapshot bool
	WaiveSpare bool // Policy.Waive holds no-spare-voter
	Runs       int  // how many runs at most
	Faults     []propFault
}

func (s *propScenario) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %s -> %s;", s.Seed, s.From, s.To)
	for _, d := range s.DCs {
		fmt.Fprintf(&b, " %s: %d server(s), %d client(s);", d.Name, d.Servers, d.Clients)
	}
	fmt.Fprintf(&b, " via client %v, rollback %v, approved plan %v, max steps %d, no snapshot %v, waive no-spare-voter %v, up to %d run(s)",
		s.ViaClient, s.Rollback, s.Plan, s.MaxSteps, s.NoSnapshot, s.WaiveSpare, s.Runs)
	if len(s.Faults) == 0 {
		b.WriteString("; no faults")
	}
	for _, f := range s.Faults {
		fmt.Fprintf(&b, "\n  fault %d: %s", f.Index, f)
	}
	return b.String()
}

// newPropScenario draws the scenario of seed.
func newPropScenario(seed uint64) *propScenario {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := &propScenario{Seed: seed}
	up := propUpgrades[rng.IntN(len(propUpgrades))]
	s.From, s.To = up.from, up.to

	// 1 to 7 servers, biased toward the small clusters where a single
	// lost server costs the quorum.
	servers := func() int {
		switch r := rng.IntN(10); {
		case r < 2:
			return 1
		case r < 4:
			return 2
		case r < 7:
			return 3
		}
		return 4 + rng.IntN(4)
	}
	s.DCs = []propDCShape{{Name: "dc1", Servers: servers(), Clients: rng.IntN(4)}}
	if rng.IntN(5) == 0 {
		s.DCs = append(s.DCs, propDCShape{Name: "dc2", Servers: servers(), Clients: rng.IntN(3)})
	}
	s.ViaClient = s.DCs[0].Clients > 0 && rng.IntN(5) == 0
	s.Rollback = rng.IntN(2) == 0
	s.Plan = rng.IntN(2) == 0
	if rng.IntN(3) == 0 {
		s.MaxSteps = 1 + rng.IntN(3)
	}
	s.NoSnapshot = rng.IntN(6) == 0
	two := false
	for _, d := range s.DCs {
		two = two || d.Servers == 2
	}
	s.WaiveSpare = two && rng.IntN(4) != 0
	s.Runs = 1 + rng.IntN(4)
	if s.MaxSteps > 0 {
		s.Runs += 4
	}

	n := 0
	switch r := rng.IntN(10); {
	case r == 0:
	case r < 5:
		n = 1
	case r < 8:
		n = 2
	default:
		n = 3 + rng.IntN(3)
	}
	for i := range n {
		f := s.drawFault(rng)
		f.Index = i
		s.Faults = append(s.Faults, f)
	}
	return s
}

// drawFault draws one fault: when and where, then what.
func (s *propScenario) drawFault(rng *rand.Rand) propFault {
	f := propFault{Run: rng.IntN(s.Runs), Pick: rng.Uint64()}
	if rng.IntN(4) == 0 {
		f.At = atBeforeRun
		kinds := []propFaultKind{fKill, fKill, fRemoveDead, fLeader, fMissingBinary, fReviveAll, fBroken}
		if s.Plan {
			kinds = append(kinds, fEditPlan, fEditPlan, fReplan)
		}
		f.Kind = kinds[rng.IntN(len(kinds))]
		return f
	}
	f.At = propPointsInRun[rng.IntN(len(propPointsInRun))]
	f.Step = rng.IntN(8)
	kinds := []propFaultKind{
		fKill, fKillBeforeStop, fKillBeforeStop, fRevive, fRemoveDead, fLeader, fLoseLock,
		fMissingBinary, fUnhealthy, fOld, fFailNext, fHang, fCancel,
	}
	if f.At == atBeforeStep {
		kinds = append(kinds, fKillBeforeStop, fSkip, fAbort)
	}
	f.Kind = kinds[rng.IntN(len(kinds))]
	if f.Kind == fKillBeforeStop && f.At != atBeforeStep && f.At != atStepStarted {
		f.At = atBeforeStep
	}
	return f
}
