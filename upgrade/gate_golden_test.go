package upgrade

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

var updateGateGolden = flag.Bool("update", false, "rewrite testdata/gate/*/verdict.golden from the judges")

// goldenGateCase is testdata/gate/<case>/inputs.json: what one attempt of a
// gate judges.
type goldenGateCase struct {
	Step     planner.Step `json:"step"`
	Baseline Baseline     `json:"baseline"`
	Carry    gateCarry    `json:"carry"`
	Inputs   gateInputs   `json:"inputs"`
}

// goldenVerdict is testdata/gate/<case>/verdict.golden: the era of the
// inputs, each condition of the step judged alone from the case's carry (an
// outage in the inputs taken in), then the attempt as the gate judges it
// (in order, the stability count carried along).
type goldenVerdict struct {
	Era      Era       `json:"era,omitempty"`
	Verdicts []verdict `json:"verdicts"`
	Attempt  struct {
		Outcome attemptOutcome `json:"outcome"`
		Verdict *verdict       `json:"verdict,omitempty"`
		Carry   gateCarry      `json:"carry"`
	} `json:"attempt"`
}

func judgeGolden(gc goldenGateCase) goldenVerdict {
	var g goldenVerdict
	base := gc.Baseline.withDefaults()
	g.Era, _ = gc.Inputs.era()
	carry := gc.Carry.after(gc.Inputs.Outage)
	for _, cond := range gc.Step.Gate {
		g.Verdicts = append(g.Verdicts, judge(cond, judging{step: gc.Step, base: base, in: &gc.Inputs, carry: carry}))
	}
	a := judgeAttempt(gc.Step, base, &gc.Inputs, gc.Carry)
	g.Attempt.Outcome, g.Attempt.Carry = a.outcome, a.carry
	if a.outcome != attemptPassed {
		g.Attempt.Verdict = &a.v
	}
	return g
}

// The judges are pure: each case's inputs (captured from a simulated
// cluster of its era, some then edited: a read cut, a skewed clock, an
// outage) give the verdicts in its verdict.golden. Rewrite them with
// `go test ./upgrade -run GateGolden -update` and read the diff.
func TestGateGoldenInputsGiveTheirVerdicts(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join("testdata", "gate", "*", "inputs.json"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no testdata/gate/*/inputs.json (%v)", err)
	}
	for _, path := range cases {
		dir := filepath.Dir(path)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			gc := readGoldenCase(t, path)
			got, err := json.MarshalIndent(judgeGolden(gc), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join(dir, "verdict.golden")
			if *updateGateGolden {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run `go test ./upgrade -run GateGolden -update` to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the verdicts judged now; if the change is intended, run `go test ./upgrade -run GateGolden -update` and review the diff\n--- got ---\n%s", golden, got)
			}
		})
	}
}

func readGoldenCase(t *testing.T, path string) goldenGateCase {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var gc goldenGateCase
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&gc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return gc
}

// The golden cases cover every condition, holding and failing, in every
// era (cases whose members could not be read have no era).
func TestGateGoldenCasesCoverEveryConditionInEveryEra(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join("testdata", "gate", "*", "inputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		era  Era
		cond planner.GateCheck
		ok   bool
	}
	seen := map[key]bool{}
	for _, path := range cases {
		g := judgeGolden(readGoldenCase(t, path))
		for _, v := range g.Verdicts {
			seen[key{g.Era, v.Cond, v.OK}] = true
		}
	}
	for _, era := range []Era{EraPeers, EraRaftConfig, EraRaftProtocol2, EraAutopilot} {
		for _, cond := range everyCheck {
			for _, ok := range []bool{true, false} {
				if cond == planner.GateRaftTerm && era == EraPeers && !ok {
					continue // before 0.7 no server reports its raft term over HTTP: never judged failing
				}
				if !seen[key{era, cond, ok}] {
					t.Errorf("no golden case in the %s era where %s %s", era, cond, map[bool]string{true: "holds", false: "fails"}[ok])
				}
			}
		}
	}
}
