package consultest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func client(t *testing.T, sim *consultest.Cluster) *api.Client {
	t.Helper()
	c, err := sim.Client()
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// get fetches path from the cluster in-process and decodes the JSON body
// into out; it returns the status code.
func get(t *testing.T, sim *consultest.Cluster, path string, out any) int {
	t.Helper()
	resp, err := (&http.Client{Transport: sim.RoundTripper()}).Get("http://" + consultest.Address + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}

func TestAutopilotAnswers429WhileASwappedServerIsDownAnd200OnceItIsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 0, "1.12.9", consultest.WithRestartDelay(5*time.Second))
		var h api.OperatorHealthReply
		if code := get(t, sim, "/v1/operator/autopilot/health", &h); code != http.StatusOK || !h.Healthy || h.FailureTolerance != 1 {
			t.Fatalf("before the swap: %d, healthy %v, tolerance %d; want 200, healthy, tolerance 1", code, h.Healthy, h.FailureTolerance)
		}
		swapped := time.Now()
		must(t, sim.Swap("s2", "1.13.9", true))

		time.Sleep(4 * time.Second)
		if code := get(t, sim, "/v1/operator/autopilot/health", &h); code != http.StatusTooManyRequests || h.Healthy || h.FailureTolerance != 0 {
			t.Errorf("4s into a 5s restart: %d, healthy %v, tolerance %d; want 429, unhealthy, tolerance 0", code, h.Healthy, h.FailureTolerance)
		}
		if s2 := h.Servers[1]; s2.Name != "s2" || s2.Healthy || s2.SerfStatus != "failed" {
			t.Errorf("s2 while down: %+v, want unhealthy and failed in serf", s2)
		}
		var members []api.AgentMember
		get(t, sim, "/v1/agent/members", &members)
		if members[1].Name != "s2" || members[1].Status != 4 {
			t.Errorf("serf member %s status %d while down, want 4 (failed)", members[1].Name, members[1].Status)
		}

		time.Sleep(time.Second)
		h = api.OperatorHealthReply{}
		if code := get(t, sim, "/v1/operator/autopilot/health", &h); code != http.StatusOK || !h.Healthy || h.FailureTolerance != 1 {
			t.Errorf("once back: %d, healthy %v, tolerance %d; want 200, healthy, tolerance 1", code, h.Healthy, h.FailureTolerance)
		}
		s2 := h.Servers[1]
		if s2.Version != "1.13.9" || !s2.StableSince.Equal(swapped.Add(5*time.Second)) {
			t.Errorf("s2 once back: version %s, stable since %s; want 1.13.9, stable since it came back (%s)", s2.Version, s2.StableSince, swapped.Add(5*time.Second))
		}
		var ac api.AutopilotConfiguration
		get(t, sim, "/v1/operator/autopilot/configuration", &ac)
		if ac.ServerStabilizationTime.Duration() != consultest.DefaultStabilizationTime {
			t.Errorf("ServerStabilizationTime %s, want the default %s", ac.ServerStabilizationTime.Duration(), consultest.DefaultStabilizationTime)
		}
	})
}

func TestANeverHealthyServerKeepsAutopilotAt429AfterItIsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 0, "1.12.9")
		must(t, sim.SetNeverHealthy("s3", true))
		must(t, sim.Swap("s3", "1.13.9", true))
		time.Sleep(time.Minute)
		var h api.OperatorHealthReply
		if code := get(t, sim, "/v1/operator/autopilot/health", &h); code != http.StatusTooManyRequests || h.Healthy {
			t.Errorf("a never-healthy server a minute after its restart: %d, healthy %v; want 429", code, h.Healthy)
		}
		if n, _ := sim.Node("s3"); !n.Up || n.Healthy {
			t.Errorf("s3 %+v, want up but not healthy", n)
		}
	})
}

func TestTheLeaderMovesWhenTheLeaderIsSwapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 0, "1.12.9")
		c := client(t, sim)
		if l := sim.Leader(); l != "s1" {
			t.Fatalf("a new cluster is led by %q, want s1", l)
		}
		must(t, sim.Swap("s1", "1.13.9", true))
		if l := sim.Leader(); l != "s2" {
			t.Errorf("after the leader s1 was swapped, %q leads; want s2, the first other healthy voter", l)
		}
		addr, err := c.Status().Leader()
		if err != nil || addr != "10.0.0.2:8300" {
			t.Errorf("/v1/status/leader = %q, %v; want s2's 10.0.0.2:8300", addr, err)
		}
		rc, err := c.Operator().RaftGetConfiguration(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rc.Servers {
			if s.Leader != (s.Node == "s2") {
				t.Errorf("raft configuration marks %s leader=%v; only s2 should lead", s.Node, s.Leader)
			}
		}
	})
}

func TestASingleServerHasNoLeaderUntilItIsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(1, 0, "1.12.9", consultest.WithRestartDelay(3*time.Second))
		must(t, sim.Swap("s1", "1.13.9", true))
		if code := get(t, sim, "/v1/operator/raft/configuration", nil); code != http.StatusInternalServerError {
			t.Errorf("raft configuration without a leader answered %d, want 500", code)
		}
		if l := sim.Leader(); l != "" {
			t.Errorf("while the only server restarts, %q leads; want none", l)
		}
		time.Sleep(3 * time.Second)
		if l := sim.Leader(); l != "s1" {
			t.Errorf("once back, %q leads; want s1", l)
		}
	})
}

func TestAnElectionHeldOpenBySetLeaderLastsUntilTheNextSetLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 0, "1.12.9")
		must(t, sim.SetLeader(""))
		time.Sleep(time.Hour)
		var h api.OperatorHealthReply
		if code := get(t, sim, "/v1/operator/autopilot/health", &h); sim.Leader() != "" || code != http.StatusTooManyRequests {
			t.Errorf("an hour into an open election: leader %q, health %d; want none and 429", sim.Leader(), code)
		}
		must(t, sim.SetLeader("s3"))
		if sim.Leader() != "s3" {
			t.Errorf("leader %q, want s3", sim.Leader())
		}
		if err := sim.SetLeader("c1"); err == nil {
			t.Errorf("SetLeader of a node that does not exist succeeded")
		}
	})
}

func TestTransferLeaderMovesLeadershipOnlyToAHealthyVoter(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.12.9")
	must(t, sim.SetVoter("s2", false))
	c := client(t, sim)
	r, err := c.Operator().RaftLeaderTransfer("id-s2", nil)
	if err != nil || r.Success {
		t.Errorf("transfer to the non-voter s2: %+v, %v; want success=false", r, err)
	}
	r, err = c.Operator().RaftLeaderTransfer("id-s3", nil)
	if err != nil || !r.Success || sim.Leader() != "s3" {
		t.Errorf("transfer to s3: %+v, %v, leader %s; want success and s3 leading", r, err, sim.Leader())
	}
	if got := sim.Transfers(); len(got) != 2 || got[0] != "id-s2" || got[1] != "id-s3" {
		t.Errorf("Transfers() = %v, want [id-s2 id-s3]", got)
	}
}

// A transfer whose election the target loses: success is answered, the
// cluster has no leader for the election, then the old leader leads again.
func TestATransferWhoseElectionIsLostGivesTheSeatBackToTheOldLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 0, "1.15.4")
		if err := sim.SetTransferLostElection(0); err == nil {
			t.Error("a lost election lasting 0s was accepted")
		}
		must(t, sim.SetTransferLostElection(6*time.Second))
		c := client(t, sim)
		r, err := c.Operator().RaftLeaderTransfer("id-s3", nil)
		if err != nil || !r.Success {
			t.Fatalf("transfer to s3: %+v, %v; want success (Raft answers once the target campaigns)", r, err)
		}
		var addr string
		if get(t, sim, "/v1/status/leader", &addr); addr != "" || sim.Leader() != "" {
			t.Errorf("during the election: leader %q (%q), want none", sim.Leader(), addr)
		}
		time.Sleep(5 * time.Second)
		if get(t, sim, "/v1/status/leader", &addr); addr != "" {
			t.Errorf("5s into a 6s election: leader %q, want none", addr)
		}
		time.Sleep(time.Second)
		if get(t, sim, "/v1/status/leader", &addr); sim.Leader() != "s1" || addr == "" {
			t.Errorf("after the election: leader %q (%q), want s1 again", sim.Leader(), addr)
		}
		r, err = c.Operator().RaftLeaderTransfer("id-s3", nil)
		if err != nil || !r.Success || sim.Leader() != "s3" {
			t.Errorf("the next transfer: %+v, %v, leader %s; want s3 leading", r, err, sim.Leader())
		}
	})
}

// lockSession creates a session as the upgrade lock does (TTL, no checks,
// behavior delete) unless body says otherwise.
func lockSession(t *testing.T, c *api.Client, body map[string]any) string {
	t.Helper()
	if body == nil {
		body = map[string]any{"TTL": "30s", "Behavior": "delete", "Checks": []string{}}
	}
	var out struct{ ID string }
	if _, err := c.Raw().Write("/v1/session/create", body, &out, nil); err != nil {
		t.Fatalf("session create: %v", err)
	}
	return out.ID
}

func TestLocksAreAcquiredByOneSessionAtATimeAndGoWithTheirSession(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.12.9")
	c := client(t, sim)
	a, b := lockSession(t, c, nil), lockSession(t, c, nil)
	kv := c.KV()
	acquire := func(session, value string) bool {
		t.Helper()
		ok, _, err := kv.Acquire(&api.KVPair{Key: "lock", Value: []byte(value), Session: session}, nil)
		if err != nil {
			t.Fatalf("acquire by %s: %v", session, err)
		}
		return ok
	}
	if !acquire(a, "held by a") {
		t.Fatal("the first session could not acquire a free lock")
	}
	if acquire(b, "held by b") {
		t.Error("a second session acquired a held lock")
	}
	if v, held := sim.LockHolder("lock"); !held || string(v) != "held by a" {
		t.Errorf("LockHolder = %q, %v; want a's value, held", v, held)
	}
	if p, _, err := kv.Get("lock", nil); err != nil || p.Session != a || string(p.Value) != "held by a" {
		t.Errorf("GET the lock key: %+v, %v", p, err)
	}
	if ok, _, _ := kv.Release(&api.KVPair{Key: "lock", Session: b}, nil); ok {
		t.Error("a session released a lock it does not hold")
	}
	if ok, _, _ := kv.Release(&api.KVPair{Key: "lock", Value: []byte("free"), Session: a}, nil); !ok {
		t.Error("the holder could not release its lock")
	}
	if v, held := sim.LockHolder("lock"); held || string(v) != "free" {
		t.Errorf("after release: LockHolder = %q, %v; want the key kept, not held", v, held)
	}
	if !acquire(b, "held by b") {
		t.Fatal("a released lock could not be acquired")
	}
	if _, err := c.Session().Destroy(b, nil); err != nil {
		t.Fatal(err)
	}
	if _, held := sim.LockHolder("lock"); held || len(sim.HeldLocks()) != 0 {
		t.Errorf("the key of a destroyed delete-behavior session is still there (held locks %v)", sim.HeldLocks())
	}
	if p, _, err := kv.Get("lock", nil); err != nil || p != nil {
		t.Errorf("GET after destroy: %+v, %v; want no key", p, err)
	}
	if got := sim.Sessions(); len(got) != 1 || got[0] != a {
		t.Errorf("Sessions() = %v, want only %s", got, a)
	}
	if ok, _, err := kv.Acquire(&api.KVPair{Key: "lock", Session: "no-such-session"}, nil); err == nil || ok {
		t.Errorf("acquire with an unknown session: %v, %v; want an error", ok, err)
	}
}

func TestARenewalAfterTheSessionIsInvalidatedFindsItGone(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.12.9")
	c := client(t, sim)
	id := lockSession(t, c, nil)
	if e, _, err := c.Session().Renew(id, nil); err != nil || e == nil {
		t.Fatalf("renewal of a live session: %+v, %v", e, err)
	}
	sim.InvalidateSession(id)
	if e, _, err := c.Session().Renew(id, nil); err != nil || e != nil {
		t.Errorf("renewal of an invalidated session: %+v, %v; want none (404)", e, err)
	}
}

func TestASessionExpiresWhenNotRenewedForTwiceItsTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 0, "1.12.9")
		c := client(t, sim)
		id := lockSession(t, c, nil) // TTL 30s
		time.Sleep(59 * time.Second)
		if _, _, err := c.Session().Renew(id, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Second)
		if len(sim.Sessions()) != 1 {
			t.Errorf("a session renewed 59s ago expired; want it kept for twice its 30s TTL")
		}
		time.Sleep(2 * time.Second)
		if got := sim.Sessions(); len(got) != 0 {
			t.Errorf("sessions %v 61s after the last renewal, want none", got)
		}
	})
}

func TestASessionOnSerfHealthIsLostWhenItsAgentIsSwapped(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.12.9")
	c := client(t, sim)
	checked := lockSession(t, c, map[string]any{"TTL": "30s"}) // Consul's default: serfHealth of the agent's node s1
	checkless := lockSession(t, c, nil)
	if e, _, err := c.Session().Info(checked, nil); err != nil || e == nil || e.Node != "s1" || len(e.NodeChecks) != 1 {
		t.Fatalf("session info %+v, %v; want bound to s1 with serfHealth", e, err)
	}
	must(t, sim.Swap("s1", "1.13.9", true))
	if got := sim.Sessions(); len(got) != 1 || got[0] != checkless {
		t.Errorf("sessions after s1 restarted: %v, want only the check-less %s", got, checkless)
	}
}

func TestSessionCreateRefusesWhatConsulRefuses(t *testing.T) {
	sim := consultest.NewCluster(1, 0, "1.12.9")
	c := client(t, sim)
	for name, body := range map[string]map[string]any{
		"a TTL below 10s":         {"TTL": "5s"},
		"a behavior that is none": {"Behavior": "explode"},
		"an unknown check":        {"Checks": []string{"service:web"}},
		"an unknown node":         {"Node": "s9"},
	} {
		if _, err := c.Raw().Write("/v1/session/create", body, &struct{ ID string }{}, nil); err == nil {
			t.Errorf("%s was accepted", name)
		}
	}
}

func TestSnapshotBuildsAnArchiveThatVerifySnapshotAccepts(t *testing.T) {
	state := bytes.Repeat([]byte("kv "), 1000)
	info, err := upgrade.VerifySnapshot(bytes.NewReader(consultest.Snapshot(4321, 7, state)))
	if err != nil {
		t.Fatalf("VerifySnapshot: %v", err)
	}
	if info.Index != 4321 || info.Term != 7 || info.StateSize != int64(len(state)) || len(info.Files) != 2 {
		t.Errorf("info = %+v, want index 4321, term 7, %d bytes of state, 2 verified files", info, len(state))
	}
}

func TestTheDefaultSnapshotEndpointServesAVerifiableArchive(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.12.9")
	rc, _, err := client(t, sim).Snapshot().Save(nil)
	if err != nil {
		t.Fatalf("snapshot save: %v", err)
	}
	defer rc.Close()
	if _, err := upgrade.VerifySnapshot(rc); err != nil {
		t.Errorf("VerifySnapshot of /v1/snapshot: %v", err)
	}
}

func TestArchiveOfTamperedFilesIsRefusedByVerifySnapshot(t *testing.T) {
	files := consultest.SnapshotFiles(10, 1, []byte("state"))
	files[1].Data = []byte("tampered state")
	b, err := consultest.Archive(files...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := upgrade.VerifySnapshot(bytes.NewReader(b)); !errors.Is(err, upgrade.ErrSnapshotInvalid) || !strings.Contains(err.Error(), "state.bin") {
		t.Errorf("err = %v, want ErrSnapshotInvalid about state.bin", err)
	}
}

func TestAClusterThatIsDownAnswers500AndAnUnreachableOneRefusesConnections(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.12.9")
	c := client(t, sim)
	sim.SetDown(true)
	if _, err := c.Status().Leader(); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("leader while down: %v, want a 500", err)
	}
	sim.SetDown(false)
	sim.SetUnreachable(true)
	before := sim.Calls("/v1/status/leader")
	if _, err := c.Status().Leader(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("leader while unreachable: %v, want a refused connection", err)
	}
	if sim.Calls("/v1/status/leader") != before {
		t.Errorf("a refused request was counted as a call")
	}
	sim.SetUnreachable(false)
	if l, err := c.Status().Leader(); err != nil || l == "" {
		t.Errorf("leader once reachable again: %q, %v", l, err)
	}
}

func TestTheFakeAdapterMirrorsWhatEachSwapDidToTheNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := consultest.NewCluster(3, 1, "1.12.9")
		fake := sim.NewFake()
		swap := func(node string, role transport.Role) error {
			return fake.Swap(t.Context(), transport.SwapRequest{Node: node, Role: role, From: "1.12.9", To: "1.13.9", StopMode: transport.StopTerminate})
		}
		fake.ComeBackOld("s2")
		must(t, swap("s2", transport.RoleServer))
		fake.FailNext("s3", errors.New("disk full"))
		if err := swap("s3", transport.RoleServer); err == nil {
			t.Fatal("FailNext did not fail the swap")
		}
		fake.ComeBackUnhealthy("c1")
		must(t, swap("c1", transport.RoleClient))
		fake.Broken("1.13.9")
		if err := swap("s1", transport.RoleServer); err == nil {
			t.Fatal("a swap to a broken version succeeded")
		}
		time.Sleep(time.Minute)
		want := map[string]struct {
			version string
			up      bool
		}{
			"s1": {"1.12.9", false}, // broken: down, still reporting its old version
			"s2": {"1.12.9", true},  // restarted on the old binary
			"s3": {"1.12.9", true},  // the failed swap touched nothing
			"c1": {"1.13.9", true},  // restarted on the new version
		}
		for name, w := range want {
			n, _ := sim.Node(name)
			if n.Version != w.version || n.Up != w.up {
				t.Errorf("%s: version %s, up %v; want %s, up %v", name, n.Version, n.Up, w.version, w.up)
			}
		}
		if l := sim.Leader(); l != "s3" {
			t.Errorf("leader %q after s1 went down, want s3 (s2 was still restarting)", l)
		}
		if err := fake.Rollback(t.Context(), "s1"); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		time.Sleep(time.Minute)
		if n, _ := sim.Node("s1"); n.Version != "1.12.9" || !n.Healthy {
			t.Errorf("s1 after rollback: %+v, want healthy on 1.12.9", n)
		}
	})
}

func TestSettersNameTheNodesThereAreWhenGivenAnUnknownOne(t *testing.T) {
	sim := consultest.NewCluster(2, 1, "1.12.9")
	for name, err := range map[string]error{
		"Swap":            sim.Swap("s9", "1.13.9", true),
		"SetNeverHealthy": sim.SetNeverHealthy("s9", true),
		"SetVoter":        sim.SetVoter("s9", false),
		"SetLastIndex":    sim.SetLastIndex("s9", 1),
		"SetLeader":       sim.SetLeader("s9"),
	} {
		if err == nil || !strings.Contains(err.Error(), `"s9"`) || !strings.Contains(err.Error(), "s1, s2, c1") {
			t.Errorf("%s of an unknown node: err = %v, want one naming s9 and the nodes s1, s2, c1", name, err)
		}
	}
	if err := sim.SetVoter("c1", true); err == nil {
		t.Errorf("SetVoter of a client succeeded")
	}
	if _, ok := sim.Node("s9"); ok || sim.Version("s9") != "" {
		t.Errorf("an unknown node was found")
	}
}

func TestAnUnsimulatedPathAnswers404(t *testing.T) {
	sim := consultest.NewCluster(1, 0, "1.12.9")
	if code := get(t, sim, "/v1/agent/host", nil); code != http.StatusNotFound {
		t.Errorf("an unsimulated path answered %d, want 404", code)
	}
}

func TestACLModeIsAdvertisedInTheServersSerfTags(t *testing.T) {
	sim := consultest.NewCluster(1, 1, "1.12.9", consultest.WithACLs(consultest.ACLsLegacy))
	members, err := client(t, sim).Agent().Members(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || members[0].Tags["acls"] != "2" || members[0].Tags["build"] != "1.12.9:deadbeef" || members[1].Tags["role"] != "node" {
		t.Errorf("members %+v, want s1 with acls=2 and build 1.12.9, and the client c1", members)
	}
}

func TestHandlerTransportHonoursAnEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://x/v1/status/leader", nil)
	if _, err := consultest.HandlerTransport(consultest.NewCluster(1, 0, "1.12.9")).RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// A transaction hands a lock from one session to another only while the
// first holds it; a failed check rolls the whole transaction back (409).
func TestATransactionMovesALockAtomically(t *testing.T) {
	sim := consultest.NewCluster(3, 0, "1.12.9")
	c := client(t, sim)
	a, b := lockSession(t, c, nil), lockSession(t, c, nil)
	if ok, _, err := c.KV().Acquire(&api.KVPair{Key: "lock", Value: []byte("v"), Session: a}, nil); err != nil || !ok {
		t.Fatalf("acquire by %s: %v %v", a, ok, err)
	}
	move := func(from, to string) (bool, *api.TxnResponse) {
		t.Helper()
		ok, resp, _, err := c.Txn().Txn(api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: "lock", Session: from}},
			{KV: &api.KVTxnOp{Verb: api.KVUnlock, Key: "lock", Value: []byte("v"), Session: from}},
			{KV: &api.KVTxnOp{Verb: api.KVLock, Key: "lock", Value: []byte("v"), Session: to}},
		}, nil)
		if err != nil {
			t.Fatalf("txn: %v", err)
		}
		return ok, resp
	}
	if ok, resp := move(b, a); ok || len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 0 {
		t.Fatalf("a move from a session that does not hold the lock: ok %v, errors %+v; want rolled back at op 0", ok, resp.Errors)
	}
	if p, _, _ := c.KV().Get("lock", nil); p == nil || p.Session != a {
		t.Fatalf("after the rollback the lock is %+v, want it still held by %s", p, a)
	}
	if ok, _ := move(a, b); !ok {
		t.Fatal("the move from the holder was rolled back")
	}
	if p, _, _ := c.KV().Get("lock", nil); p == nil || p.Session != b {
		t.Fatalf("after the move the lock is %+v, want it held by %s", p, b)
	}
}
