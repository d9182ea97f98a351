// Package consulupgrade is the root of consul-upgrade, a Go SDK that plans and
// executes safe upgrades of HashiCorp Consul clusters. The root package holds
// no code; the work is split so that the part that decides never does IO and
// the part that acts never decides.
//
//   - planner: pure functions. A cluster snapshot, a target version and a
//     policy go in; every finding (with a stable rule ID, a severity, the node
//     and value concerned, what to do and the source of the rule), the
//     stepping-stone path, the next step and the whole plan come out. No IO,
//     no clock, no logging.
//   - upgrade: the IO around it. Discover reads a live cluster through
//     consul/api into a planner.Cluster; a Session (upgrade.Open) carries
//     out the loop below one step at a time, and Run is that loop with
//     approvals; each step's gate waits until the cluster is provably
//     healthy again.
//   - transport: the node-swap contract (one small interface and optional
//     ones), with transport/transporttest (an in-memory fake with fault
//     injection and the conformance suite every transport passes),
//     transport/local (agents as processes on this host), transport/ssh and
//     transport/exec (real hosts).
//
// # The caller's loop
//
// upgrade.Run does this for you; an embedder that drives the upgrade itself
// runs it with a Session:
//
//	s, err := upgrade.Open(ctx, cfg) // validate, take the lock, finish a swap a dead run left
//	if err != nil {
//		return err // refused: nothing was touched
//	}
//	defer s.Close(ctx) // give the lock back
//	for {
//		step, err := s.Next(ctx) // observe, then decide
//		if err != nil || step.Kind == planner.StepDone {
//			return err
//		}
//		if _, err := s.Execute(ctx, step); err != nil { // act, then gate
//			return err // a *upgrade.HaltError when the step acted and failed
//		}
//	}
//
// Each turn does the duties of the loop:
//
//  1. Observe: the cluster as it is now, the current leader included,
//     re-read before every step: leadership moves, and a crashed run resumes
//     from reality, not from a log.
//  2. Decide: planner.Next(cluster, target, policy), a pure function. A
//     refusal (*planner.RefusedError) means nothing may be touched.
//     StepDone ends the loop.
//  3. Act: perform the step (a backup, a swap through a
//     transport.Transport, a leadership transfer), under the lock held from
//     Open to Close.
//  4. Gate: wait until every condition in step.Gate holds (each a
//     planner.GateCheck, the one list of them) before the next observation. A gate that does not hold halts
//     the run; nothing else is touched.
//
// planner.Plan runs the same decision against a simulated cluster until done,
// so the plan a person reviews and the steps that run cannot disagree.
//
// # Layers and tests
//
// planner → transport → upgrade → cmd/consul-upgrade and examples; internal/
// holds production helpers that import none of them. deps_test.go is the
// table of what each package may import, checked on every test run. go test
// ./... in this module needs no Consul binary and no sshd; every test
// against real agents or a real sshd is in tests/, a Go module of its own,
// whose README is the track record.
package consulupgrade
