package upgrade

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// The tests of this file keep the upgrade lock through the eras before 1.0,
// where a session is bound to the serfHealth check of its node whatever
// the lock asks (the simulator makes sessions as those agents do), by the
// way each state of the cluster offers: a transaction through the run's
// agent, a transaction through a server's own API, or a release and an
// acquire.

// clientConsul is a Consul talking to the simulated agent at addr, as a
// run through a local client agent does.
func clientConsul(t *testing.T, sim *consultest.Cluster, addr string) Consul {
	t.Helper()
	c, err := sim.ClientAt(addr)
	if err != nil {
		t.Fatal(err)
	}
	return NewConsul(c)
}

func nodeAddr(t *testing.T, sim *consultest.Cluster, name string) string {
	t.Helper()
	n, ok := sim.Node(name)
	if !ok {
		t.Fatalf("no node %s", name)
	}
	return n.Address
}

// lockedNode is the node of the session holding the lock, "" when none.
func lockedNode(t *testing.T, sim *consultest.Cluster) string {
	t.Helper()
	c, err := sim.Client()
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := c.KV().Get(DefaultLockKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil || p.Session == "" {
		return ""
	}
	s, _, err := c.Session().Info(p.Session, nil)
	if err != nil || s == nil {
		t.Fatalf("session %s of the lock: %+v, %v", p.Session, s, err)
	}
	return s.Node
}

// The case of the issue: 3 servers and a client on 0.6.4 taken to 0.9.3
// in one run through the client's agent. The lock's session is made
// through the client, on its node, bound to its serfHealth; the client is
// stopped at the first hop's client wave, when the servers run 0.7.5 but
// the client has no /v1/txn: the lock moves in a transaction through a
// server's own API. At the second hop the leader's swap moves it again,
// through the run's agent, which has /v1/txn by then. Before, the lock
// stayed on the client, was lost at its swap, and the run halted with
// ErrLockLost.
func TestOneRunThroughAClientFrom_0_6_4_to_0_9_3_KeepsItsLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1, consultest.WithEra(consultest.Era06))
		for _, n := range r.sim.Nodes() {
			if err := r.sim.Swap(n.Name, "0.6.4", true); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(consultest.DefaultRestartDelay)
		r.cfg.Consul = clientConsul(t, r.sim, nodeAddr(t, r.sim, "c1"))
		r.cfg.ServerAPI = simServers(t, r.sim)
		r.cfg.Target = "0.9.3"
		lockedOn := []string{}
		r.cfg.OnEvent = func(e Event) {
			r.events = append(r.events, e)
			if e.Kind == EventStepStarted {
				lockedOn = append(lockedOn, lockedNode(t, r.sim))
				if e.Step.Kind == planner.StepSnapshot && e.Step.From == "0.7.5" {
					r.sim.SetEra(consultest.Era07) // every agent runs 0.7.5
				}
			}
		}
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		for _, n := range r.sim.Nodes() {
			if n.Version != "0.9.3" || !n.Up {
				t.Errorf("%s on %s (up %v), want every agent up on 0.9.3", n.Name, n.Version, n.Up)
			}
		}
		if slices.Contains(lockedOn, "") {
			t.Errorf("the lock was held on %v at the start of each step; want it held at every one", lockedOn)
		}
		var moves []Event
		for _, e := range r.events {
			if e.Kind == EventLockMoved {
				moves = append(moves, e)
			}
		}
		if len(moves) != 2 {
			t.Fatalf("lock moves %+v, want two: off c1 at the first client wave, off the leader at the second hop", moves)
		}
		first, second := moves[0], moves[1]
		if first.Err != nil || first.Step.Kind != planner.StepSwapClients || first.Step.To != "0.7.5" ||
			!strings.Contains(first.Detail, "own HTTP API (the run's agent has no /v1/txn)") || !strings.Contains(first.Detail, "its session was on c1") {
			t.Errorf("first move %+v, want c1's session moved at the 0.7.5 client wave through a server's own API", first)
		}
		if second.Err != nil || second.Step.Kind != planner.StepSwapServer || second.Step.To != "0.9.3" || second.Step.Node != first.Node ||
			!strings.Contains(second.Detail, "in one transaction through the run's agent") {
			t.Errorf("second move %+v, want the lock moved off %s (where the first move put it) before its 0.9.3 swap, through the run's agent", second, first.Node)
		}
		if got := r.sim.TxnCrashed(); len(got) != 0 {
			t.Errorf("a transaction crashed %v, which ran 0.6", got)
		}
		if got := r.sim.Sessions(); len(got) != 0 {
			t.Errorf("sessions left after the run: %v", got)
		}
	})
}

// A run through a server while another server runs 0.6 cannot send a
// transaction (it would crash that server): at the leader's swap, last of
// the 0.6.4 -> 0.7.5 hop, the lock's session is on the leader, whose agent
// (0.6.4) bound it to serfHealth, and the lock moves by a release and an
// acquire. Before, it stayed on the leader and was lost at its swap.
func TestARunThroughAServerOn_0_6_MovesItsLockWithoutATransaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0, consultest.WithEra(consultest.Era06))
		for _, n := range r.sim.Nodes() {
			if err := r.sim.Swap(n.Name, "0.6.4", true); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(consultest.DefaultRestartDelay)
		r.cfg.ServerAPI = simServers(t, r.sim)
		r.cfg.Target = "0.7.5"
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		var moves []Event
		for _, e := range r.events {
			if e.Kind == EventLockMoved {
				moves = append(moves, e)
			}
		}
		if len(moves) != 1 || moves[0].Err != nil || moves[0].Step.Node != "s1" ||
			!strings.Contains(moves[0].Detail, "by a release and an acquire") || !strings.Contains(moves[0].Detail, "runs 0.6.4, and a server before 0.7.0 crashes on a transaction") {
			t.Errorf("lock moves %+v, want one off s1 before its swap, by a release and an acquire because s1 runs 0.6.4", moves)
		}
		if n := r.sim.Calls("/v1/txn"); n != 0 || len(r.sim.TxnCrashed()) != 0 {
			t.Errorf("%d transactions sent (crashed %v), want none while a server runs 0.6", n, r.sim.TxnCrashed())
		}
	})
}

// failMoves fails the session creations that name a node (those of a
// lock's move) with a 500, as a cluster that has just lost its leader does.
type failMoves struct{ sim *consultest.Cluster }

func (f failMoves) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/session/create" {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"Node"`)) {
			http.Error(w, "rpc error: No cluster leader", http.StatusInternalServerError)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	f.sim.ServeHTTP(w, r)
}

// When the lock cannot be moved off a node whose stop would lose it, the
// run halts before that stop with a *LockMoveError, and the node is not
// touched. Before, the run stopped it and halted afterwards on a lost lock.
func TestARunRefusesAStopThatWouldLoseALockThatCannotMove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 1, consultest.WithEra(consultest.Era07))
		for _, n := range r.sim.Nodes() {
			if err := r.sim.Swap(n.Name, "0.7.5", true); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(consultest.DefaultRestartDelay)
		c, err := api.NewClient(&api.Config{Address: nodeAddr(t, r.sim, "c1") + ":8500", HttpClient: &http.Client{Transport: consultest.HandlerTransport(failMoves{r.sim})}})
		if err != nil {
			t.Fatal(err)
		}
		r.cfg.Consul = NewConsul(c)
		r.cfg.ServerAPI = simServers(t, r.sim)
		r.cfg.Target = "0.8.5"
		_, err = Run(t.Context(), r.cfg)
		var he *StepRefusedError
		var lme *LockMoveError
		if !errors.As(err, &he) || !errors.As(err, &lme) || he.Step.Kind != planner.StepSwapClients || lme.Node != "c1" {
			t.Fatalf("Run = %v; want a *StepRefusedError of the client wave wrapping a *LockMoveError naming c1", err)
		}
		for _, sw := range r.tr.swaps {
			if sw.Node == "c1" {
				t.Errorf("c1 was swapped (%+v) although the lock on it could not move", sw)
			}
		}
		if n, _ := r.sim.Node("c1"); !n.Up || n.Version != "0.7.5" {
			t.Errorf("c1: %+v, want it untouched, up on 0.7.5", n)
		}
	})
}
