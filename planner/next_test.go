package planner

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-version"
)

// with returns c after edit, leaving c unchanged.
func with(c Cluster, edit func(*Cluster)) Cluster {
	c = cloneCluster(c)
	edit(&c)
	return c
}

// setServers sets the version of the named servers.
func setServers(ver string, names ...string) func(*Cluster) {
	return func(c *Cluster) {
		for i := range c.Servers {
			for _, n := range names {
				if c.Servers[i].Name == n {
					c.Servers[i].Version = ver
				}
			}
		}
	}
}

// allServers sets every server's version (and the snapshot version, when
// snap is not "").
func allServers(ver string) func(*Cluster) {
	return func(c *Cluster) {
		for i := range c.Servers {
			c.Servers[i].Version = ver
		}
	}
}

func firstClients(ver string, n int) func(*Cluster) {
	return func(c *Cluster) {
		for i := 0; i < n && i < len(c.Clients); i++ {
			c.Clients[i].Version = ver
		}
	}
}

func chain(edits ...func(*Cluster)) func(*Cluster) {
	return func(c *Cluster) {
		for _, e := range edits {
			e(c)
		}
	}
}

func snapshotOn(ver string) func(*Cluster) {
	return func(c *Cluster) { c.SnapshotVersion = ver }
}

var leaveBehind = Policy{Clients: ClientPolicy{Mode: ClientLeaveBehind}}

func TestNext(t *testing.T) {
	base := cluster2015()
	cases := []struct {
		name   string
		c      Cluster
		target string
		pol    Policy
		want   Step // only the fields that are set are compared
		nNodes int  // for waves: how many clients
		check  func(*testing.T, Step)
	}{
		{
			name: "a snapshot is taken before the first server swap of each hop",
			c:    base, target: "0.5.2",
			want: Step{Kind: StepSnapshot, To: "0.5.2", From: "0.4.1"},
		},
		{
			name: "a snapshot is not asked for again once it was taken on the servers' version",
			c:    with(base, snapshotOn("0.4.1")), target: "0.5.2",
			want: Step{Kind: StepSwapServer, Node: "s2"},
		},
		{
			name: "no snapshot is asked for when the policy skips them",
			c:    base, target: "0.5.2", pol: Policy{NoSnapshot: true},
			want: Step{Kind: StepSwapServer, Node: "s2"},
		},
		{
			name: "a follower goes before the leader",
			c:    with(base, snapshotOn("0.4.1")), target: "0.5.2",
			want: Step{Kind: StepSwapServer, Node: "s2", From: "0.4.1", To: "0.5.2", Datacenter: "dc1"},
			check: func(t *testing.T, s Step) {
				if !strings.Contains(s.Reason, "the leader s1 goes last") {
					t.Errorf("reason %q does not say the leader goes last", s.Reason)
				}
				// 0.5.2 has no autopilot and no Raft configuration endpoint:
				// the gate runs the upgrade guide's checks on what such a
				// server can answer (peers, raft stats).
				want := []GateCheck{GateLeaderKnown, GateVersion, GateSerfAlive, GateVoter, GateCommitIndex, GateLastContact, GateStable, GateFailureTolerance}
				if !slices.Equal(s.Gate, want) {
					t.Errorf("server gate = %v, want %v (no autopilot before 0.8)", s.Gate, want)
				}
			},
		},
		{
			name: "a follower goes before the leader even when the leader is listed last",
			c: with(base, chain(snapshotOn("0.4.1"), func(c *Cluster) {
				c.Servers[0].Leader, c.Servers[2].Leader = false, true
			})), target: "0.5.2",
			want: Step{Kind: StepSwapServer, Node: "s1"},
		},
		{
			name: "a resumed run continues with the next server and does not swap one already on the target",
			c:    with(base, chain(snapshotOn("0.4.1"), setServers("0.5.2", "s2"))), target: "0.5.2",
			want: Step{Kind: StepSwapServer, Node: "s3", From: "0.4.1"},
		},
		{
			name: "the leader is swapped only when it is the last server on the old version",
			c:    with(base, chain(snapshotOn("0.4.1"), setServers("0.5.2", "s2", "s3"))), target: "0.5.2",
			want: Step{Kind: StepSwapServer, Node: "s1"},
			check: func(t *testing.T, s Step) {
				if !strings.Contains(s.Reason, "leader") {
					t.Errorf("reason %q does not say it is the leader", s.Reason)
				}
			},
		},
		{
			name: "a server swap that crosses the 0.5.1 Raft store migration is a point of no return",
			c:    with(base, snapshotOn("0.4.1")), target: "0.5.2",
			want: Step{Kind: StepSwapServer, NoReturn: RuleRaftBoltDB},
		},
		{
			name: "old servers are killed so they do not leave the cluster",
			c:    with(base, snapshotOn("0.4.1")), target: "0.5.2",
			want: Step{Kind: StepSwapServer, StopMode: StopKill},
		},
		{
			name: "the policy's stop mode wins over the default",
			c:    with(threeDC("1.12.9"), snapshotOn("1.12.9")), target: "1.13.9", pol: Policy{StopMode: StopKill},
			want: Step{Kind: StepSwapServer, StopMode: StopKill},
		},
		{
			name: "servers from 0.7 on are terminated: they stay members on SIGTERM",
			c:    with(threeDC("1.12.9"), snapshotOn("1.12.9")), target: "1.13.9",
			want: Step{Kind: StepSwapServer, StopMode: StopTerminate},
		},
		{
			name: "clients wait until every server of their datacenter is upgraded",
			c:    with(base, chain(snapshotOn("0.4.1"), setServers("0.5.2", "s2", "s3"))), target: "0.5.2",
			want: Step{Kind: StepSwapServer, Node: "s1"},
		},
		{
			name: "the first wave of a datacenter is the canary",
			c:    with(base, chain(snapshotOn("0.4.1"), allServers("0.5.2"))), target: "0.5.2",
			want:   Step{Kind: StepSwapClients, Wave: 0, To: "0.5.2", From: "0.4.1", StopMode: StopKill},
			nNodes: 1,
			check: func(t *testing.T, s Step) {
				if s.Nodes[0] != "c-0001" {
					t.Errorf("canary = %v, want the first client by name", s.Nodes)
				}
				if len(s.Gate) != 2 || s.Gate[1] != GateSerfAlive {
					t.Errorf("client gate = %v", s.Gate)
				}
			},
		},
		{
			name: "after the canary a wave is 10% of the datacenter's clients by default",
			c:    with(base, chain(allServers("0.5.2"), firstClients("0.5.2", 1))), target: "0.5.2",
			want:   Step{Kind: StepSwapClients, Wave: 1},
			nNodes: 70,
		},
		{
			name: "the wave is derived from how many clients already run the target",
			c:    with(base, chain(allServers("0.5.2"), firstClients("0.5.2", 141))), target: "0.5.2",
			want:   Step{Kind: StepSwapClients, Wave: 3},
			nNodes: 70,
			check: func(t *testing.T, s Step) {
				if s.Nodes[0] != "c-0142" {
					t.Errorf("wave starts at %s, want c-0142 (the first client not on the target)", s.Nodes[0])
				}
			},
		},
		{
			name: "a batch size overrides the percentage",
			c:    with(base, chain(allServers("0.5.2"), firstClients("0.5.2", 1))), target: "0.5.2",
			pol:    Policy{Clients: ClientPolicy{BatchSize: 25, BatchPercent: 50}},
			want:   Step{Kind: StepSwapClients, Wave: 1},
			nNodes: 25,
		},
		{
			name: "a batch percentage is rounded up",
			c:    with(base, chain(allServers("0.5.2"), firstClients("0.5.2", 1))), target: "0.5.2",
			pol:    Policy{Clients: ClientPolicy{BatchPercent: 3}},
			want:   Step{Kind: StepSwapClients, Wave: 1},
			nNodes: 21,
		},
		{
			name: "a wave never takes more than max-unavailable clients of one zone",
			c: with(base, chain(allServers("0.5.2"), func(c *Cluster) {
				c.Clients = clientsOf("c", "", "0.4.1", 700, "a", "b")
				c.Clients[0].Version = "0.5.2"
			})), target: "0.5.2",
			pol:    Policy{Clients: ClientPolicy{BatchSize: 50, MaxUnavailable: 5}},
			want:   Step{Kind: StepSwapClients, Wave: 1},
			nNodes: 10,
		},
		{
			name: "clients left behind on purpose are never swapped",
			c:    with(base, allServers("0.5.2")), target: "0.5.2", pol: leaveBehind,
			want: Step{Kind: StepDone},
			check: func(t *testing.T, s Step) {
				if !strings.Contains(s.Reason, "700 client(s) are left behind") {
					t.Errorf("done reason %q does not count the clients left behind", s.Reason)
				}
			},
		},
		{
			name: "a cluster on the target is done",
			c:    with(base, chain(allServers("0.5.2"), firstClients("0.5.2", 700))), target: "0.5.2",
			want: Step{Kind: StepDone},
		},
		{
			name: "by default the leader hands leadership to an upgraded voter first when both versions support it",
			c:    with(threeDC("1.15.2"), chain(snapshotOn("1.15.2"), setServers("1.16.2", "a1", "a3"))), target: "1.16.2",
			pol:  Policy{},
			want: Step{Kind: StepTransferLeader, Node: "a2", Target: "a1", Datacenter: "dc1"},
		},
		{
			name: "leadership moves to a healthy upgraded voter before an unhealthy one",
			c: with(threeDC("1.15.2"), chain(snapshotOn("1.15.2"), setServers("1.16.2", "a1", "a3"), func(c *Cluster) {
				c.Servers[0].Healthy = false
			})), target: "1.16.2",
			pol:  Policy{Waive: []RuleID{PrecheckServerUnhealthy}},
			want: Step{Kind: StepTransferLeader, Node: "a2", Target: "a3"},
		},
		{
			name: "with leadership transfer turned off the leader is swapped last",
			c:    with(threeDC("1.15.2"), chain(snapshotOn("1.15.2"), setServers("1.16.2", "a1", "a3"))), target: "1.16.2",
			pol:  Policy{NoTransferLeadership: true},
			want: Step{Kind: StepSwapServer, Node: "a2"},
		},
		{
			name: "leadership is not transferred below 1.15",
			c:    with(threeDC("1.13.9"), chain(snapshotOn("1.13.9"), setServers("1.14.10", "a1", "a3"))), target: "1.14.10",
			pol:  Policy{},
			want: Step{Kind: StepSwapServer, Node: "a2"},
		},
		{
			name: "after the transfer the old leader is swapped as a follower",
			c: with(threeDC("1.15.2"), chain(snapshotOn("1.15.2"), setServers("1.16.2", "a1", "a3"), func(c *Cluster) {
				c.Servers[1].Leader, c.Servers[0].Leader = false, true
			})), target: "1.16.2",
			pol:  Policy{},
			want: Step{Kind: StepSwapServer, Node: "a2"},
		},
		{
			name: "the primary datacenter goes first",
			c:    with(threeDC("1.12.9"), snapshotOn("1.12.9")), target: "1.13.9",
			want: Step{Kind: StepSwapServer, Node: "a1", Datacenter: "dc1"},
		},
		{
			name: "the primary's clients go before the next datacenter's servers",
			c:    with(threeDC("1.12.9"), chain(snapshotOn("1.12.9"), setServers("1.13.9", "a1", "a2", "a3"))), target: "1.13.9",
			want: Step{Kind: StepSwapClients, Datacenter: "dc1", Wave: 0},
		},
		{
			name: "secondaries follow the primary by name",
			c: with(threeDC("1.12.9"), chain(snapshotOn("1.12.9"), setServers("1.13.9", "a1", "a2", "a3"), func(c *Cluster) {
				for i := range c.Clients[:20] {
					c.Clients[i].Version = "1.13.9"
				}
			})), target: "1.13.9",
			want: Step{Kind: StepSwapServer, Node: "b1", Datacenter: "dc2"},
		},
		{
			name: "secondaries go first and the primary last on the 1.6.10 hop with ACL replication",
			c:    with(threeDC("1.5.2"), snapshotOn("1.5.2")), target: "1.6.10",
			want: Step{Kind: StepSwapServer, Node: "b1", Datacenter: "dc2"},
		},
		{
			name: "without ACL replication the primary goes first on the 1.6.10 hop too",
			c: with(threeDC("1.5.2"), chain(snapshotOn("1.5.2"), func(c *Cluster) {
				c.Features.ACLReplication = false
			})), target: "1.6.10",
			want: Step{Kind: StepSwapServer, Node: "a1", Datacenter: "dc1"},
		},
		{
			name: "listed order swaps servers as listed and carries the 15-minute tombstone deadline across 0.5.0",
			c:    with(base, snapshotOn("0.4.1")), target: "0.5.2", pol: Policy{ServerOrder: AsListed},
			want: Step{Kind: StepSwapServer, Node: "s1"},
			check: func(t *testing.T, s Step) {
				if s.Deadline == nil || s.Deadline.Rule != RuleTombstoneWindow || s.Deadline.Seconds != 900 || s.Deadline.First != -1 {
					t.Errorf("deadline = %+v, want tombstone-window-0.5, 900 s, indexes -1", s.Deadline)
				}
			},
		},
		{
			name: "listed order carries no deadline on hops that do not cross 0.5.0",
			c:    with(threeDC("1.12.9"), snapshotOn("1.12.9")), target: "1.13.9", pol: Policy{ServerOrder: AsListed},
			want: Step{Kind: StepSwapServer, Node: "a1"},
			check: func(t *testing.T, s Step) {
				if s.Deadline != nil {
					t.Errorf("deadline = %+v, want none", *s.Deadline)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Next(tc.c, tc.target, tc.pol)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			w := tc.want
			if got.Kind != w.Kind {
				t.Fatalf("kind = %s, want %s (step %+v)", got.Kind, w.Kind, got)
			}
			for _, f := range []struct{ name, got, want string }{
				{"node", got.Node, w.Node}, {"target", got.Target, w.Target}, {"datacenter", got.Datacenter, w.Datacenter},
				{"from", got.From, w.From}, {"to", got.To, w.To}, {"stop mode", string(got.StopMode), string(w.StopMode)},
				{"no return", string(got.NoReturn), string(w.NoReturn)},
			} {
				if f.want != "" && f.got != f.want {
					t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
				}
			}
			if got.Wave != w.Wave {
				t.Errorf("wave = %d, want %d", got.Wave, w.Wave)
			}
			if tc.nNodes > 0 && len(got.Nodes) != tc.nNodes {
				t.Errorf("wave of %d clients, want %d", len(got.Nodes), tc.nNodes)
			}
			if got.Reason == "" {
				t.Errorf("step has no reason")
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

func TestNextZoneBoundHoldsInEveryWave(t *testing.T) {
	c := with(cluster2015(), chain(allServers("0.5.2"), func(c *Cluster) {
		c.Clients = clientsOf("c", "", "0.4.1", 300, "a", "a", "a", "b", "c")
	}))
	pol := Policy{Clients: ClientPolicy{Canary: 4, BatchSize: 40, MaxUnavailable: 6}}
	zone := map[string]string{}
	for _, cl := range c.Clients {
		zone[cl.Name] = cl.Zone
	}
	steps := runNext(t, c, "0.5.2", pol)
	total := 0
	for i, s := range steps {
		per := map[string]int{}
		for _, n := range s.Nodes {
			per[zone[n]]++
		}
		for z, n := range per {
			if n > 6 {
				t.Errorf("wave %d (step %d) takes %d clients of zone %s, max 6", s.Wave, i, n, z)
			}
		}
		if s.Wave != i {
			t.Errorf("step %d is wave %d; waves should count up one by one", i, s.Wave)
		}
		total += len(s.Nodes)
	}
	if total != 300 {
		t.Fatalf("waves swapped %d clients, want 300", total)
	}
}

func TestNextErrors(t *testing.T) {
	cases := []struct {
		name  string
		c     Cluster
		pol   Policy
		check func(error) bool
	}{
		{"a blocking finding refuses the step and touches nothing", with(cluster2015(), func(c *Cluster) { c.Servers[0].Leader = false }), Policy{},
			func(err error) bool {
				var re *RefusedError
				return errors.As(err, &re) && len(re.Findings) > 0 && re.Findings[0].Rule == PrecheckNoLeader
			}},
		{"the replace strategy is refused as not supported", cluster2015(), Policy{Strategy: Replace},
			func(err error) bool { return errors.Is(err, ErrNotSupported) }},
		{"an unknown server order is a policy error", cluster2015(), Policy{ServerOrder: "random"},
			func(err error) bool {
				var pe *PolicyError
				return errors.As(err, &pe) && pe.Field == "server_order"
			}},
		{"a negative batch size is a policy error", cluster2015(), Policy{Clients: ClientPolicy{BatchSize: -1}},
			func(err error) bool {
				var pe *PolicyError
				return errors.As(err, &pe) && pe.Field == "clients.batch_size"
			}},
		{"a server version that does not parse names the server", with(cluster2015(), setServers("0.4.x", "s3")), Policy{},
			func(err error) bool {
				var ve *VersionError
				var re *RefusedError
				if errors.As(err, &re) {
					return strings.Contains(re.Error(), "s3")
				}
				return errors.As(err, &ve) && ve.Node == "s3" && ve.Value == "0.4.x"
			}},
		{"a cluster without servers cannot be planned", Cluster{Clients: clientsOf("c", "", "0.4.1", 3)}, Policy{},
			func(err error) bool { return err != nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Next(tc.c, "0.5.2", tc.pol)
			if !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
			if err != nil && (strings.HasSuffix(err.Error(), ".") || err.Error() != strings.ToLower(err.Error()[:1])+err.Error()[1:]) {
				t.Errorf("error text %q should start lower case and not end with a period", err)
			}
		})
	}
}

func TestServerGateAsksWhatTheTargetVersionCanAnswer(t *testing.T) {
	cases := []struct {
		name string
		to   string
		want []GateCheck
	}{
		{"a server bound for 0.5 gets the upgrade guide's checks: in the peer set, commit index caught up, recent contact, stable", "0.5.2", []GateCheck{GateLeaderKnown, GateVersion, GateSerfAlive, GateVoter, GateCommitIndex, GateLastContact, GateStable, GateFailureTolerance}},
		{"a server bound for 0.7 gets the same checks (0.7 has a raft configuration but no autopilot yet)", "0.7.5", []GateCheck{GateLeaderKnown, GateVersion, GateSerfAlive, GateVoter, GateCommitIndex, GateLastContact, GateStable, GateFailureTolerance}},
		{"a server bound for 0.8 or later is gated on autopilot health, stability, trailing logs and failure tolerance", "1.13.9", []GateCheck{GateLeaderKnown, GateVersion, GateVoter, GateAutopilotHealthy, GateStable, GateTrailingLogs, GateFailureTolerance}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := serverGateFor(version.Must(version.NewVersion(tc.to)))
			if !slices.Equal(got, tc.want) {
				t.Errorf("gate for %s = %v, want %v", tc.to, got, tc.want)
			}
		})
	}
}

func TestSnapshotStepSaysWhichBackupItTakes(t *testing.T) {
	cases := []struct {
		name, from, target string
		want               BackupKind
	}{
		{"servers on 0.4.1 have no snapshot API: a logical backup", "0.4.1", "0.5.2", BackupLogical},
		{"servers on 0.7.0 still have none (it came in 0.7.1)", "0.7.0", "0.7.5", BackupLogical},
		{"servers on 0.7.1 take a snapshot", "0.7.1", "0.7.5", BackupSnapshot},
		{"servers on 1.12.9 take a snapshot", "1.12.9", "1.13.9", BackupSnapshot},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := with(cluster2015(), chain(allServers(tc.from), func(c *Cluster) { c.Clients = nil }))
			s, err := Next(c, tc.target, Policy{})
			if err != nil {
				t.Fatal(err)
			}
			if s.Kind != StepSnapshot || s.Backup != tc.want {
				t.Fatalf("step = %s backup %q, want snapshot backup %q", s.Kind, s.Backup, tc.want)
			}
			says := strings.Contains(s.Reason, "logical backup") && strings.Contains(s.Reason, "cannot restore")
			if says != (tc.want == BackupLogical) {
				t.Errorf("reason %q: mentions a logical backup and what it cannot restore = %t, want %t", s.Reason, says, tc.want == BackupLogical)
			}
		})
	}
}
