package consultest_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// at is a client of the simulated agent named node.
func at(t *testing.T, sim *consultest.Cluster, node string) *api.Client {
	t.Helper()
	n, ok := sim.Node(node)
	if !ok {
		t.Fatalf("no node %s", node)
	}
	c, err := sim.ClientAt(n.Address)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sessionChecks creates a session through c with body and returns its node
// and node checks.
func sessionChecks(t *testing.T, c *api.Client, body map[string]any) (id, node string, checks []string) {
	t.Helper()
	id = lockSession(t, c, body)
	e, _, err := c.Session().Info(id, nil)
	if err != nil || e == nil {
		t.Fatalf("session info of %s: %+v, %v", id, e, err)
	}
	return id, e.Node, e.NodeChecks
}

// Measured on real agents (tests/e2e/lock/move_test.go): an agent before
// 1.0 keeps its default check, serfHealth, when a session asks for none,
// and it is the agent the session is made through that decides; a session
// is on that agent's node unless it names another.
func TestAnAgentBefore_1_0_BindsASessionToSerfHealthWhenItAsksForNone(t *testing.T) {
	cases := []struct {
		version string
		want    []string
	}{
		{"0.6.4", []string{"serfHealth"}},
		{"0.9.3", []string{"serfHealth"}},
		{"1.0.8", []string{}},
		{"1.12.9", []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.version, func(t *testing.T) {
			sim := consultest.NewCluster(3, 1, "1.12.9", consultest.WithRestartDelay(0))
			must(t, sim.Swap("c1", tc.version, true))
			c := at(t, sim, "c1")
			id, node, checks := sessionChecks(t, c, nil) // TTL, delete, "Checks": []
			if node != "c1" || !slices.Equal(checks, tc.want) {
				t.Errorf("a check-less session through c1 on %s: node %s, checks %v; want c1, %v", tc.version, node, checks, tc.want)
			}
			_, node, checks = sessionChecks(t, c, map[string]any{"TTL": "30s", "Checks": []string{}, "Node": "s2"})
			if node != "s2" || !slices.Equal(checks, tc.want) {
				t.Errorf("the same naming node s2: node %s, checks %v; want s2, %v", node, checks, tc.want)
			}
			must(t, sim.Swap("c1", tc.version, true))
			if alive := slices.Contains(sim.Sessions(), id); alive != (len(tc.want) == 0) {
				t.Errorf("after c1's swap its session is alive: %v, want %v", alive, len(tc.want) == 0)
			}
		})
	}
}

// Transactions came with 0.7.0: an agent before it has no /v1/txn (404),
// a leader before it has no Txn service (500), and a transaction that
// commits while another server runs 0.6 crashes that server (Consul's FSM
// panics on a Raft entry it does not know).
func TestTransactionsFollowTheVersionsOfTheAgentAndTheServers(t *testing.T) {
	// txn puts a one-operation transaction to the agent of node and
	// returns the status code.
	txn := func(sim *consultest.Cluster, node string) int {
		t.Helper()
		n, _ := sim.Node(node)
		body := strings.NewReader(`[{"KV": {"Verb": "check-session", "Key": "k", "Session": ""}}]`)
		req, err := http.NewRequest(http.MethodPut, "http://"+n.Address+":8500/v1/txn", body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := sim.RoundTripper().RoundTrip(req)
		if err != nil {
			t.Fatalf("PUT /v1/txn to %s: %v", node, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sim := consultest.NewCluster(3, 1, "0.7.5", consultest.WithEra(consultest.Era07), consultest.WithRestartDelay(0))
	must(t, sim.Swap("c1", "0.6.4", true))
	if got := txn(sim, "c1"); got != http.StatusNotFound {
		t.Errorf("/v1/txn through a 0.6.4 client: %d, want 404", got)
	}
	if got := txn(sim, "s2"); got != http.StatusOK {
		t.Errorf("/v1/txn through a 0.7.5 server with every server on 0.7.5: %d, want 200", got)
	}
	must(t, sim.Swap("s1", "0.6.4", true)) // s2 leads now
	must(t, sim.SetLeader("s1"))
	if got := txn(sim, "s2"); got != http.StatusInternalServerError {
		t.Errorf("/v1/txn through 0.7.5 with a 0.6.4 leader: %d, want 500", got)
	}
	if got := sim.TxnCrashed(); len(got) != 0 {
		t.Errorf("a refused transaction crashed %v", got)
	}
	must(t, sim.SetLeader("s2"))
	if got := txn(sim, "s3"); got != http.StatusOK {
		t.Errorf("/v1/txn with a 0.7.5 leader: %d, want it committed (200)", got)
	}
	if got := sim.TxnCrashed(); !slices.Equal(got, []string{"s1"}) {
		t.Errorf("TxnCrashed = %v, want [s1], the 0.6.4 follower", got)
	}
	if n, _ := sim.Node("s1"); n.Up {
		t.Errorf("s1 is up after a transaction it cannot apply; want it down until its next swap")
	}
}
