package upgrade

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// legacyGate is the planner's server gate for targets below 0.8.
var legacyGate = []planner.GateCheck{
	planner.GateLeaderKnown, planner.GateVersion, planner.GateSerfAlive, planner.GateVoter,
	planner.GateCommitIndex, planner.GateLastContact, planner.GateStable, planner.GateFailureTolerance,
}

// simServers reaches each simulated server's own HTTP API (its
// /v1/agent/self answers as that server).
func simServers(t *testing.T, s *consultest.Cluster) ServerAPIFunc {
	t.Helper()
	return func(node, addr string) (Consul, error) {
		c, err := s.ClientAt(addr)
		if err != nil {
			return nil, err
		}
		return NewConsul(c), nil
	}
}

// eraCase is a simulated era and a version its agents run.
type eraCase struct {
	name    string
	era     consultest.Era
	version string
	want    Era
}

var eraCases = []eraCase{
	{"a 0.4/0.5 cluster has neither raft configuration nor autopilot", consultest.Era04, "0.4.1", EraPeers},
	{"a 0.6 cluster has neither either", consultest.Era06, "0.6.4", EraPeers},
	{"a 0.7 cluster has the raft configuration but no autopilot", consultest.Era07, "0.7.5", EraRaftConfig},
	{"a 0.8 cluster on raft protocol 2 cannot use autopilot health", consultest.Era08Raft2, "0.8.5", EraRaftProtocol2},
	{"a current cluster has autopilot", consultest.EraCurrent, "1.12.9", EraAutopilot},
}

func TestDiscoverReadsEachEraWithWhatItHas(t *testing.T) {
	for _, tc := range eraCases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := consultest.NewCluster(3, 2, tc.version, consultest.WithEra(tc.era))
				c := inProcessConsul(t, s)
				era, err := observeEra(t.Context(), c)
				if err != nil {
					t.Fatalf("observeEra: %v", err)
				}
				if era != tc.want {
					t.Errorf("era = %s, want %s", era, tc.want)
				}
				cl, err := Discover(t.Context(), c)
				if err != nil {
					t.Fatalf("Discover: %v", err)
				}
				if len(cl.Servers) != 3 || len(cl.Clients) != 2 {
					t.Fatalf("discovered %d servers and %d clients, want 3 and 2", len(cl.Servers), len(cl.Clients))
				}
				for _, sv := range cl.Servers {
					if !sv.Voter || !sv.Healthy || sv.Version != tc.version || sv.Leader != (sv.Name == "s1") {
						t.Errorf("server %+v: want a healthy voter on %s, s1 the leader", sv, tc.version)
					}
				}
				// An era's missing endpoints are not even asked for: the
				// members' tags say what the cluster has.
				if !tc.want.RaftConfig() && s.Calls("/v1/operator/raft/configuration") != 0 {
					t.Errorf("the %s era was asked for its raft configuration", tc.want)
				}
				if !tc.want.Autopilot() && s.Calls("/v1/operator/autopilot/health") != 0 {
					t.Errorf("the %s era was asked for autopilot health", tc.want)
				}
				if !tc.want.RaftConfig() && s.Calls("/v1/status/peers") == 0 {
					t.Errorf("the %s era's peers were not read from /v1/status/peers", tc.want)
				}
			})
		})
	}
}

func TestAnEndpointAnOldAgentLacksIsTypedAsMissingNotAnOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "0.6.4", consultest.WithEra(consultest.Era06))
		c := inProcessConsul(t, s)
		_, err := c.RaftConfiguration(t.Context())
		var me *MissingEndpointError
		if !errors.As(err, &me) || !errors.Is(err, ErrEndpointMissing) || me.Path != "/v1/operator/raft/configuration" {
			t.Fatalf("err = %v, want a *MissingEndpointError for the raft configuration", err)
		}
		if !strings.Contains(err.Error(), "0.7.0 and later") {
			t.Errorf("error %q does not say which versions have the endpoint", err)
		}
		if _, err := c.SnapshotSave(t.Context()); !errors.Is(err, ErrEndpointMissing) {
			t.Errorf("snapshot on 0.6: err = %v, want ErrEndpointMissing", err)
		}
		// An outage is not a missing endpoint.
		s.SetDown(true)
		if _, err := c.RaftConfiguration(t.Context()); err == nil || errors.Is(err, ErrEndpointMissing) {
			t.Errorf("a cluster answering 500: err = %v, want an error that is not ErrEndpointMissing", err)
		}
	})
}

// olderAgent is a Consul whose agent is older than its servers' tags say: it
// answers 404 for the raft configuration and autopilot.
type olderAgent struct {
	consulEra
	raftCalls, peerCalls int
}

// consulEra is a Consul with the optional EraReader, as NewConsul returns.
type consulEra interface {
	Consul
	EraReader
}

func (o *olderAgent) RaftConfiguration(ctx context.Context) (*api.RaftConfiguration, error) {
	o.raftCalls++
	return nil, &MissingEndpointError{Path: "/v1/operator/raft/configuration", Versions: "0.7.0 and later"}
}

func (o *olderAgent) AutopilotHealth(ctx context.Context) (*api.OperatorHealthReply, error) {
	return nil, &MissingEndpointError{Path: "/v1/operator/autopilot/health", Versions: "0.8.0 and later"}
}

func (o *olderAgent) Peers(ctx context.Context) ([]string, error) {
	o.peerCalls++
	return o.consulEra.Peers(ctx)
}

func TestAnAgentOlderThanItsServersLowersTheEraInsteadOfFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "1.12.9")
		c := &olderAgent{consulEra: inProcessConsul(t, s).(consulEra)}
		era, err := observeEra(t.Context(), c)
		if err != nil || era != EraPeers {
			t.Fatalf("observeEra = %s, %v; want %s, nil", era, err, EraPeers)
		}
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s1", To: "1.12.9",
			Gate: []planner.GateCheck{planner.GateLeaderKnown, planner.GateVoter, planner.GateFailureTolerance}}
		var eras []Era
		err = awaitGate(t.Context(), c, step, base3, gateOptions{OnEra: func(e Era) { eras = append(eras, e) }})
		if err != nil {
			t.Fatalf("Gate: %v", err)
		}
		if !slices.Equal(eras, []Era{EraPeers}) {
			t.Errorf("eras reported = %v, want [%s]", eras, EraPeers)
		}
		// One attempt: the 404 was not retried as an outage.
		if c.raftCalls != 2 || c.peerCalls != 2 {
			t.Errorf("raft configuration asked %d times, peers %d times; want 2 each (observeEra, then the one gate attempt)", c.raftCalls, c.peerCalls)
		}
	})
}

func TestGatePassesAfterASwapInEveryEraAndSaysWhichChecksItApplied(t *testing.T) {
	for _, tc := range eraCases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := consultest.NewCluster(3, 0, tc.version, consultest.WithEra(tc.era),
					consultest.WithStableSince(time.Now().Add(-time.Hour)))
				c := inProcessConsul(t, s)
				base, err := MeasureBaseline(t.Context(), c)
				if err != nil {
					t.Fatalf("MeasureBaseline: %v", err)
				}
				if base.Era != tc.want || base.FailureTolerance != 1 || !base.Healthy {
					t.Fatalf("baseline %+v: want era %s, failure tolerance 1, healthy", base, tc.want)
				}
				gate := legacyGate
				if tc.era == consultest.EraCurrent || tc.era == consultest.Era08Raft2 {
					gate = serverGate // the planner's list for 0.8+; raft protocol 2 answers it without autopilot
				}
				// The same version: the simulator restarts the agent, which is
				// down for DefaultRestartDelay.
				step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", From: tc.version, To: tc.version, Gate: gate}
				mustDo(t, s.Swap("s2", tc.version, true))
				start := time.Now()
				var eras []Era
				var waited []planner.GateCheck
				err = awaitGate(t.Context(), c, step, base, gateOptions{
					ServerAPI: simServers(t, s), Since: start,
					OnEra:     func(e Era) { eras = append(eras, e) },
					OnWaiting: func(cond planner.GateCheck, node, detail string) { waited = append(waited, cond) },
				})
				if err != nil {
					t.Fatalf("Gate: %v", err)
				}
				if !slices.Equal(eras, []Era{tc.want}) {
					t.Errorf("eras = %v, want [%s]", eras, tc.want)
				}
				// The restart takes DefaultRestartDelay; stability then
				// needs the baseline's stabilization time on top.
				if took := time.Since(start); took < consultest.DefaultRestartDelay {
					t.Errorf("gate passed after %s, before the server was even back (%s)", took, consultest.DefaultRestartDelay)
				}
				if len(waited) == 0 {
					t.Error("the gate never waited, though s2 was down")
				}
				if !tc.want.Autopilot() && s.Calls("/v1/operator/autopilot/health") != 0 {
					t.Errorf("autopilot health was asked %d times in the %s era", s.Calls("/v1/operator/autopilot/health"), tc.want)
				}
			})
		})
	}
}

func TestWithoutAutopilotStabilityIsCountedFromTheGatesOwnObservations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "0.6.4", consultest.WithEra(consultest.Era06), consultest.WithRestartDelay(0))
		c := inProcessConsul(t, s)
		base := Baseline{FailureTolerance: 1, MaxTrailingLogs: 250, ServerStabilizationTime: 30 * time.Second, Taken: time.Now()}
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", To: "0.6.4", Gate: legacyGate}
		start := time.Now()
		var last string
		err := awaitGate(t.Context(), c, step, base, gateOptions{ServerAPI: simServers(t, s), MaxInterval: time.Second,
			OnWaiting: func(cond planner.GateCheck, node, detail string) { last = detail }})
		if err != nil {
			t.Fatalf("Gate: %v", err)
		}
		if took := time.Since(start); took < 30*time.Second || took > 32*time.Second {
			t.Errorf("gate passed after %s, want the 30s stabilization time (and not much more)", took)
		}
		if !strings.Contains(last, "counted from this gate's observations") {
			t.Errorf("last wait %q does not say how stability is counted", last)
		}
	})
}

func TestWithoutAutopilotACommitIndexThatTrailsFailsTheGateNamingBothIndexes(t *testing.T) {
	cases := []struct {
		name    string
		era     consultest.Era
		version string
		want    Era
		says    string
	}{
		{"0.4 has no raft stats over HTTP: the catalog index of a stale read each server answers", consultest.Era04, "0.4.1", EraPeers, "s2's catalog index (X-Consul-Index of a stale read"},
		{"0.7 reads commit_index from each server's agent/self", consultest.Era07, "0.7.5", EraRaftConfig, "s2's commit_index is 4000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := consultest.NewCluster(3, 0, tc.version, consultest.WithEra(tc.era))
				mustDo(t, s.SetLastIndex("s1", 5000))
				mustDo(t, s.SetLastIndex("s2", 4000))
				c := inProcessConsul(t, s)
				step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", To: tc.version, Gate: legacyGate}
				err := awaitGate(t.Context(), c, step, base3, gateOptions{ServerAPI: simServers(t, s), Timeout: time.Minute})
				var ge *GateError
				if !errors.As(err, &ge) || !errors.Is(err, ErrGateTimeout) {
					t.Fatalf("err = %v, want a *GateError that timed out", err)
				}
				if ge.Condition != planner.GateCommitIndex || ge.Node != "s2" || ge.Era != tc.want {
					t.Errorf("gate error on %s / %s in era %s, want commit-index / s2 / %s", ge.Condition, ge.Node, ge.Era, tc.want)
				}
				for _, want := range []string{tc.says, "4000", "s1's 5000", "1000 behind", "at most 250", tc.want.Checks()} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
			})
		})
	}
}

func TestWithoutAutopilotAServerThatLostTheLeaderFailsLastContact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "0.7.5", consultest.WithEra(consultest.Era07))
		mustDo(t, s.SetNeverHealthy("s3", true)) // its raft stats say last_contact: never
		c := inProcessConsul(t, s)
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s3", To: "0.7.5", Gate: legacyGate}
		err := awaitGate(t.Context(), c, step, base3, gateOptions{ServerAPI: simServers(t, s), Timeout: time.Minute})
		var ge *GateError
		if !errors.As(err, &ge) || ge.Condition != planner.GateLastContact || ge.Era != EraRaftConfig {
			t.Fatalf("err = %v, want a last-contact gate error in the 0.7 era", err)
		}
		if !strings.Contains(ge.Detail, "never heard from a leader") {
			t.Errorf("detail %q does not say the server never heard from a leader", ge.Detail)
		}
	})
}

func TestWithoutServerAPIAGateThatNeedsAnotherServersStatsStopsAtOnceNamingTheFix(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := consultest.NewCluster(3, 0, "0.5.2", consultest.WithEra(consultest.Era04))
		c := inProcessConsul(t, s) // the agent asked is s1
		step := planner.Step{Kind: planner.StepSwapServer, Node: "s2", To: "0.5.2", Gate: legacyGate}
		start := time.Now()
		err := awaitGate(t.Context(), c, step, base3, gateOptions{})
		if !errors.Is(err, ErrNoServerAPI) {
			t.Fatalf("err = %v, want ErrNoServerAPI", err)
		}
		if errors.Is(err, ErrGateTimeout) || time.Since(start) > time.Second {
			t.Errorf("err = %v after %s: a gate that can never be checked must not wait for its timeout", err, time.Since(start))
		}
		if !strings.Contains(err.Error(), "ServerAPI") {
			t.Errorf("error %q does not name the fix", err)
		}
		// The agent asked is the leader s1: its own stats need no ServerAPI.
		lead := planner.Step{Kind: planner.StepSwapServer, Node: "s1", To: "0.5.2", Gate: legacyGate}
		if err := awaitGate(t.Context(), c, lead, base3, gateOptions{}); err != nil {
			t.Errorf("gate on the agent asked: %v", err)
		}
	})
}

func TestLogicalBackupOfA04ClusterHoldsTheKVTreeAndACLTokensAndIsReadBack(t *testing.T) {
	s := consultest.NewCluster(3, 0, "0.4.1", consultest.WithEra(consultest.Era04), consultest.WithACLs(consultest.ACLsLegacy))
	cl, err := s.Client()
	mustDo(t, err)
	for _, k := range []string{"service/web/config", "service/db/primary", "locks/deploy"} {
		if _, err := cl.KV().Put(&api.KVPair{Key: k, Value: []byte("value of " + k)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	info, err := saveLogicalBackup(t.Context(), inProcessConsul(t, s), SnapshotDir(dir), "dc1", "0.4.1")
	if err != nil {
		t.Fatalf("saveLogicalBackup: %v", err)
	}
	if info.Kind != planner.BackupLogical || info.Keys != 3 || info.ACLTokens != 2 || !info.Reread || len(info.SHA256) != 64 {
		t.Errorf("info %+v: want a logical backup of 3 keys and 2 ACL tokens, read back, with its SHA-256", info)
	}
	if s.Calls("/v1/snapshot") != 0 {
		t.Error("the snapshot API was asked on 0.4.1")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 {
		t.Fatalf("files in the snapshot dir: %v, want one", files)
	}
	f, err := os.Open(files[0])
	mustDo(t, err)
	defer f.Close()
	back, meta, err := verifyLogicalBackup(f)
	if err != nil {
		t.Fatalf("verifyLogicalBackup of the written file: %v", err)
	}
	if back.Keys != 3 || !meta.ACLs || meta.Version != "0.4.1" || !strings.Contains(meta.NotRestorable, "sessions") {
		t.Errorf("meta %+v: want 3 keys, ACLs, version 0.4.1 and what it cannot restore", meta)
	}
}

func TestALogicalBackupThatCannotReadTheACLsFailsTyped(t *testing.T) {
	s := consultest.NewCluster(3, 0, "0.6.4", consultest.WithEra(consultest.Era06), consultest.WithACLs(consultest.ACLsLegacy))
	c := &noACLs{consulEra: inProcessConsul(t, s).(consulEra)}
	w := &memSink{}
	_, err := saveLogicalBackup(t.Context(), c, w.open, "dc1", "0.6.4")
	var be *backupError
	if !errors.As(err, &be) || be.Part != "read acls" {
		t.Fatalf("err = %v, want a *backupError in part read acls", err)
	}
	if w.Len() != 0 {
		t.Errorf("%d bytes were written for a failed backup", w.Len())
	}
	if !strings.Contains(err.Error(), "management token") {
		t.Errorf("error %q does not say what the backup needs", err)
	}
}

type noACLs struct{ consulEra }

func (noACLs) ACLList(context.Context) ([]*api.ACLEntry, error) {
	return nil, errors.New("Permission denied")
}

func TestATamperedLogicalBackupIsRefused(t *testing.T) {
	s := consultest.NewCluster(3, 0, "0.4.1", consultest.WithEra(consultest.Era04))
	archive, _, err := buildLogicalBackup(t.Context(), inProcessConsul(t, s), "dc1", "0.4.1")
	mustDo(t, err)
	if _, _, err := verifyLogicalBackup(bytes.NewReader(archive)); err != nil {
		t.Fatalf("the untouched archive: %v", err)
	}
	cut := archive[:len(archive)/2]
	if _, _, err := verifyLogicalBackup(bytes.NewReader(cut)); !errors.Is(err, ErrSnapshotInvalid) {
		t.Errorf("a truncated archive: err = %v, want ErrSnapshotInvalid", err)
	}
	// A kv.json changed after its checksum was taken.
	meta := []byte(`{"format":"` + logicalBackupFormat + `","version":"0.4.1","keys":1}`)
	kv := []byte(`[{"Key":"a","Value":"b2s="}]`)
	files := []consultest.SnapshotFile{{Name: "meta.json", Data: meta}, {Name: "kv.json", Data: kv}}
	sums := consultest.SnapshotSums(files...)
	files[1].Data = []byte(`[{"Key":"a","Value":"bm8="}]`)
	tampered, err := consultest.Archive(append(files, consultest.SnapshotFile{Name: "SHA256SUMS", Data: sums})...)
	mustDo(t, err)
	if _, _, err := verifyLogicalBackup(bytes.NewReader(tampered)); !errors.Is(err, ErrSnapshotInvalid) || !strings.Contains(err.Error(), "kv.json has SHA-256") {
		t.Errorf("a tampered kv.json: err = %v, want ErrSnapshotInvalid naming kv.json", err)
	}
	// A snapshot archive is not a logical backup.
	if _, _, err := verifyLogicalBackup(bytes.NewReader(makeSnapshot(t, snapshotFiles{}))); !errors.Is(err, ErrSnapshotInvalid) {
		t.Errorf("a snapshot archive: err = %v, want ErrSnapshotInvalid", err)
	}
}

// onlyConsul hides every optional interface of the Consul it wraps.
type onlyConsul struct{ Consul }

// A Consul without the optional EraReader still works with clusters that
// have the Raft configuration endpoint, and says what it lacks before 0.7.
func TestAConsulWithoutEraReaderNamesWhatItLacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		modern := consultest.NewCluster(3, 0, "1.12.9")
		if _, err := Discover(t.Context(), onlyConsul{inProcessConsul(t, modern)}); err != nil {
			t.Fatalf("Discover of 1.12.9 without EraReader: %v", err)
		}
		old := consultest.NewCluster(3, 0, "0.6.4", consultest.WithEra(consultest.Era06))
		_, err := Discover(t.Context(), onlyConsul{inProcessConsul(t, old)})
		if !errors.Is(err, ErrNoEraReader) {
			t.Fatalf("Discover of 0.6.4 without EraReader = %v, want ErrNoEraReader", err)
		}
	})
}

// observeEra returns the API era of the cluster behind c, as Discover,
// MeasureBaseline and the gates observe it: the era of its
// oldest server's serf tags (build, raft_vsn), lowered when the agent asked
// answers 404 for the era's endpoints (*MissingEndpointError: an agent older
// than the servers). It never mistakes a missing endpoint for an outage;
// any other error is returned.
func observeEra(ctx context.Context, c Consul) (Era, error) {
	members, err := c.Members(ctx)
	if err != nil {
		return "", fmt.Errorf("observe the API era: %w", err)
	}
	v, err := observeViews(ctx, c, members)
	if err != nil {
		return "", fmt.Errorf("observe the API era: %w", err)
	}
	return v.era, nil
}
