// Package upgrade runs a planned Consul upgrade against a live cluster. It is
// the IO shell around the pure planner: it observes the cluster (Discover),
// asks the planner for the next step (planner.Next), acts (a snapshot, a
// transport swap or a Consul leadership transfer) and then gates: it waits
// until the cluster is provably healthy again before anything else is
// touched.
//
// # The loop
//
// Run carries out a whole upgrade. An embedder that drives the upgrade
// itself (another orchestrator's loop, a controller's reconcile) opens a
// Session and runs the same loop; Run is this loop plus approvals
// (Config.BeforeStep), Config.MaxSteps and its last event:
//
//	s, err := upgrade.Open(ctx, cfg) // validate, lock, finish a dead run's swap, baseline
//	if err != nil {
//		return err
//	}
//	defer s.Close(ctx) // gives the lock back, even after ctx ended
//	for {
//		step, err := s.Next(ctx) // observe and decide
//		if err != nil || step.Kind == planner.StepDone {
//			return err
//		}
//		if _, err := s.Execute(ctx, step); err != nil { // act and gate
//			return err
//		}
//	}
//
// Each turn:
//
//  1. Next observes the cluster, every time (the leader is re-read before
//     every step, so a leader change mid-run is simply observed), with the
//     backup the run took or an earlier run recorded and the declared
//     features, and asks planner.Next for the next step; a refused plan
//     touches nothing.
//  2. Execute acts on the step: save and verify a backup, swap a server or a
//     wave of clients through the transport, transfer leadership, or add
//     or retire a server. Before a server is stopped, the current Raft
//     configuration must keep a quorum without it (*QuorumError
//     otherwise), unless the stop is the datacenter's planned outage (a
//     single server; EventPlannedOutage). A voter counts as up when serf
//     says alive, autopilot healthy (where it tells) and, where the
//     transport reports running versions, its host runs its agent: serf
//     and autopilot see a server killed a moment ago alive for seconds.
//  3. Execute then gates on the step's conditions (step.Gate; each is a
//     planner.GateCheck, the one list of them) with exponential backoff,
//     bound by a timeout and the context.
//  4. On any failure, halt: never cascade (the Session ends; a new one
//     observes afresh). Optionally roll the failed node back and wait until
//     the cluster is healthy again.
//
// The lock is held from Open to Close, with no gap between steps; a backup
// is taken once per hop; the approved plan (Config.Plan) and the lock are
// checked before every step, and once more before StepDone is reported.
//
// What a run touched is recorded as it acts (Result.Touched, Session.Result,
// and the same record in the Touched of a *HaltError, a *StepRefusedError
// and an *AbortedError): each node stopped, started, gated or rolled back,
// from the transport's own report (transport.SwapRequest.Progress,
// EventNodeStopped and EventNodeStarted) and its *transport.SwapError's
// Phase. A run refused before it acted has an empty record.
//
// # Errors
//
// Every error of Run, Open, Next and Execute says whether the cluster was
// touched: a refusal before acting leaves the step (and, at Open, the
// cluster) as it was; a *HaltError is a step that acted and failed. What a
// program does, by type (errors.As; the causes are wrapped):
//
//	error                    touched        what to do
//	*ConfigError             nothing        fix the config (Field, Value, Problem); a person or the code
//	*LockedError             nothing        another run holds the lock (Holder): retry later
//	*planner.RefusedError    nothing        fix the cluster or the policy (each finding names its fix), re-plan
//	*planner.StalePlanError  nothing        the cluster changed since review: re-plan and review
//	*PlanDivergedError       not the step   Run with a plan: re-plan and review; from Execute: ask Next again
//	*SwapRecordError         nothing        a dead run's swap cannot be finished safely: a person checks the node
//	*PreflightError          nothing        a binary is missing on a host (Problems): stage it, retry
//	*AgentConfigError        nothing        an agent sets an option a release on the path removed (Problems):
//	                                        change its configuration, or waive the rule by its ID, retry
//	*AbortedError            not the step   BeforeStep said abort: run again when ready
//	*StepRefusedError        not the step   nothing of Step was touched; act on its Err, below
//	*HaltError               the step       Touched says which nodes and how far; RolledBack says whether
//	                                        they were put back: if not (RollbackErr, Touched.Down), a person
//	                                        looks first; the next run finishes a recorded server swap
//
// The causes a *StepRefusedError or a *HaltError wraps:
//
//	*QuorumError             the voters left up would lose the quorum: bring the missing server back, retry;
//	                         in HaltError.RollbackErr (Rollback set) the swapped server was left running: a person
//	*LockMoveError           the lock cannot leave the node the step stops: make a server reachable
//	                         (Config.ServerAPI), retry
//	ErrLockLost              another run may act now: a person checks (consul-upgrade status) first
//	*StuckError              the step did not change the cluster: check the transport and the build tag
//	*GateError               not healthy in time (ErrGateTimeout) or cannot be checked: a person looks at Node
//	                         (ErrElectionStorm: raft-term, the term rose by more than MaxTermRise elections
//	                         during the step: a person reads the servers' logs before anything restarts;
//	                         ErrAgentGone: the transport, a transport.VersionReporter, says the swapped agent
//	                         is not running; it exited after answering its swap: read its log)
//	*transport.SwapError     the transport failed in Phase (validate and stage touch nothing): fix, retry
//	*TransferError           leadership did not move (ErrTransferNotReady, ErrTransferElectionLost): retry
//	*AgentUnreachableError   no agent answered: retry when one does
//	ErrSnapshotInvalid       the backup did not verify, nothing committed: fix the destination, retry
//	ErrNoEraReader, ErrNoServerAPI, ErrNoRaftStats, ErrEndpointMissing (*MissingEndpointError)
//	                         an ability or endpoint the era needs is missing: fix the Consul (see below)
//	ErrNoAutopilotWriter     (refusal, autopilot-cleanup-pinned) dead-server cleanup could not be turned off
//	                         before a server stop: give the token operator:write, or turn it off yourself
//
// ErrAutopilotChanged is no error of a run: an EventAutopilotRestored carries
// it when the autopilot configuration was changed by someone else while the
// run had CleanupDeadServers pinned, and the run left it as it found it.
// ErrNoMetricsReader is no error of a run either: the pre-flight's
// leader-log-covers-restart event carries it when the leader's metrics
// cannot be read, and the run goes on.
//
// A cancelled context ends the run with an error wrapping
// context.Canceled: a *HaltError when the step under way had touched a node
// (after the rollback Config.Rollback asks for, which runs anyway), else a
// refusal. TouchedBy returns the record any of these errors carries.
//
// # Approved plans, step by step
//
// Config.Plan ties a run to a reviewed plan (planner.Plan's UpgradePlan,
// e.g. read back from the JSON that was reviewed; a dry run's Result.Plan
// is the plan of the live cluster): before each step, the step decided from
// the cluster observed just then must be the plan's next step that is not
// yet done in the cluster, or the run halts before touching that step with
// a *PlanDivergedError naming the step, the node, what the plan says and
// what the cluster needs (the steps before it may have touched nodes: see
// Result.Touched); the fix is to plan again and review. Before that,
// at the start and before every step, the plan's basis (the servers,
// voters, versions, leader, failure tolerance and members it was reviewed
// on) must still hold, moved along only by the plan's own done steps, or
// the run is refused with a *planner.StalePlanError listing each
// difference, recorded against observed (as `terraform apply` refuses a
// saved plan whose state changed). Steps already done (by an earlier run,
// or by hand) are passed over, so a stopped run resumes. Config.BeforeStep is asked before each step with its StepInfo
// (index and total) and approves, stops the run there (StopHere: it ends cleanly,
// Result.Stopped and Result.Remaining, a nil error) or aborts
// (*AbortedError). Config.MaxSteps ends a run cleanly the same way:
// MaxSteps 1 goes one step per run.
//
// The backup taken before a hop is recorded in the KV store next to the
// lock (BackupRecord, through the optional KVStore that
// NewConsul's Consul implements), so a stepped or restarted run does not
// take it again for the same hop (within Config.BackupMaxAge); a run that
// reaches the target deletes the record. Each server swap is recorded
// there too while it lasts (SwapRecord): a run that died
// between stopping a server and starting it leaves the record, and the
// next run, holding the lock, finishes that swap before it plans
// (EventSwapRecord) instead of refusing a cluster with a server down.
//
// # Progress
//
// Every event about a step carries its Index and Total; a client wave
// reports each client's swap (EventNodeSwapped, Event.Node). With
// Config.Logger every event is also an slog record logged with the
// caller's context, its detail as message and the attributes event, step,
// step_index, step_total, node, condition, era and err.
//
// # One run at a time
//
// Before its first action a run takes the cluster-wide upgrade lock (the KV
// key DefaultLockKey, held by a TTL session without health checks, so
// swapping the agent the run talks to does not drop it). A second run is
// refused with a *LockedError naming the holder, and touches nothing. Before
// a step stops the node the lock's session is on, the run moves the lock to
// a session on a server that stays up (event lock-moved, saying how; see
// Locker): an agent before 1.0 binds every session to its node's
// serfHealth, so the stop would lose it. A lock the stop would lose and
// that cannot be moved refuses the step with a *LockMoveError, touching
// nothing. A run whose lock is lost halts before its next step
// (ErrLockLost). The lock is
// given back when the run ends, however it ends; Config.NoLock opts out.
// A run that dies (its process killed) leaves the lock to expire with its
// session: Consul invalidates a session not renewed within twice its TTL
// (about a minute) and deletes the key; a second run retried until then
// takes the lock and continues from what it observes.
//
// # The agent the run talks to
//
// Config.Consul may be a FailoverConsul (Failover, ConnectAddrs): when the
// agent in use gives no answer (it died, or is being swapped), each call
// goes to the next configured agent of the same datacenter; when none
// answers, the call fails with an *AgentUnreachableError naming every
// address tried, and the gate or observation waiting on it halts the run
// at its timeout. Nothing is acted on without an answer.
//
// # Consul and its abilities
//
// Consul is the nine calls every run makes; what only some runs need is an
// optional interface, probed by type assertion (as io/fs probes ReadFileFS):
// EraReader (clusters before 0.7.1), FeatureReader (the features the
// version rules read), Locker and KVStore (the lock and the records). A
// test fake implements Consul alone; the Consuls of NewConsul, ConnectAddr
// and Failover implement them all. One interface of twenty-two methods
// would make every fake and every wrapper write them all.
//
// To wrap Config.Consul (for metrics, tracing, logging), use Intercept: the
// wrapper it returns implements each optional interface exactly when the
// wrapped Consul does. A wrapper made the usual Go way (a struct embedding
// Consul) keeps only Consul's nine methods, and no ability is lost
// silently, nor after anything was touched: Config.Validate refuses a
// Consul without Locker and KVStore unless Config.NoLock; a Consul without
// FeatureReader is reported (EventAbilityMissing) and what it cannot
// observe is listed in Features.Unobserved, which the planner reports
// (features-not-observed); a cluster before 0.7.1 is refused with
// ErrNoEraReader when it is observed, and a Config.ServerAPI whose Consul
// lacks EraReader before the first server swap that needs it.
//
// # Datacenters
//
// Discover reads the LAN of the agent it talks to: the servers and clients of
// one datacenter (the other datacenters are listed). Run drives a whole WAN
// federation when Config.Datacenters gives it a Consul for each other
// datacenter, keyed by the datacenter's name (Config.Consul stays the agent
// of the run's own datacenter; a key naming that datacenter, or a Consul
// whose agent belongs to another datacenter than its key, is refused with a
// *ConfigError before anything is touched):
//
//   - Observe: every step, each datacenter is discovered and the results are
//     merged into one planner.Cluster (every agent with its datacenter, the
//     primary as Config.Consul's agent names it), so planner.Next orders the
//     datacenters: primary first, or last on the 1.2.4 and 1.6.10 hops with
//     ACL replication. Node names must be unique across the federation. A
//     datacenter the catalog lists but that has no Consul in the map is not
//     observed: Check warns with datacenter-not-observed and the plan leaves
//     it as it is.
//   - Act and gate: each step is carried out and gated through its
//     datacenter's Consul, against that datacenter's baseline (failure
//     tolerance, stabilization time and trailing logs are measured per
//     datacenter; Result.Baselines).
//   - Snapshot: the snapshot step saves and verifies one snapshot per
//     observed datacenter (each has its own Raft), the run's own first; the
//     step fails if any does. Config.Snapshot receives the datacenter's
//     name, and SnapshotDir names each file with it
//     (consul-dc2-1.12.9-<time>.snap). StepRecord.Snapshots holds every
//     archive's description.
//   - Lock: the upgrade lock is taken in the run's own datacenter only (KV is
//     per datacenter); run every federated upgrade through an agent of the
//     same datacenter, ideally the primary, so two runs meet at one lock.
//
// DiscoverDatacenters makes the same observation without a run, so the plan
// a person reviews (planner.Plan of it) is the one a Run with the same
// Datacenters carries out.
//
// Without Config.Datacenters, a federation can still be upgraded with one Run
// per datacenter, each through an agent of that datacenter, in the order
// planner.Plan shows for a snapshot that holds every datacenter.
//
// # API eras
//
// Consul's HTTP API grew with its versions, and Discover, MeasureBaseline,
// the gates and the backup read each era with what it has (see Era; the era
// is that of the oldest server's serf tags):
//
//   - before 0.7 (EraPeers): the peer set from /v1/status/peers; no raft
//     stats in /v1/agent/self, so each server's progress and contact with
//     the leader come from a stale read it answers itself (X-Consul-Index,
//     X-Consul-LastContact, X-Consul-KnownLeader);
//   - 0.7 (EraRaftConfig): the Raft configuration, raft stats in each
//     server's /v1/agent/self, no autopilot;
//   - 0.8 and later with a server on raft protocol 2, the default of 0.8
//     and 0.9 (EraRaftProtocol2): autopilot health refuses to answer, so
//     the checks are those of 0.7;
//   - every server on raft protocol 3 (EraAutopilot): autopilot.
//
// Without autopilot the gates are those of Consul's own upgrade guide: a
// known leader, the server in the peer set, its commit index within
// MaxTrailingLogs of the leader's, its last contact within
// LastContactThreshold, stable for the stabilization time counted from the
// gate's own observations (never by comparing clocks), and the failure
// tolerance counted from the voters alive in serf. Reading a server's own
// state needs its own HTTP API: set Config.ServerAPI (ServerHTTP(8500) when
// every agent serves HTTP on its address); a run without it is refused
// before the first step that would need it. The gate names the era whose
// checks it applied (Event.Era, GateError).
//
// An endpoint an agent does not have answers 404 and is a
// *MissingEndpointError (ErrEndpointMissing): it lowers the era, is never
// taken for an outage and never retried as one.
//
// Before 0.7.1 there is no snapshot API: the snapshot step takes a logical
// backup instead (the KV tree, the ACL tokens when ACLs
// are on, SHA-256 checksums, read back and verified), which cannot restore
// sessions, catalog registrations, prepared queries or the raft state
// (planner.LogicalBackupOmits).
//
// # Replace (blue/green)
//
// With Policy.Strategy planner.Replace the servers are not swapped but
// replaced, which needs a transport that implements transport.Provisioner
// (Config.Validate refuses one that does not, and refuses Datacenters: a
// Provisioner cannot be told which datacenter a new server joins). An
// add-server step calls Provision for a new server on the hop's version and
// gates it like a swapped server (the step's Node is then the new server's
// name, in the record and the events from EventProvisioned on); a
// retire-server step calls Retire (a graceful leave) on an old server and
// gates on leader-known, removed (out of the raft configuration, not alive
// in serf) and failure tolerance. Config.Consul must then talk to an agent
// that is not retired, such as a client agent.
//
// A failed Provision leaves the cluster as it was (the transport takes its
// half-started host down). A new server that fails its gate stays without
// Config.Rollback (a later run counts it and retires an old server next); with
// Rollback it is retired again and the run waits until it has left. A
// retired server is never brought back.
//
// # Features
//
// Discover also observes the planner.Features that version rules read:
// the raft protocol and gRPC ports from the servers' serf tags, the ACL,
// TLS, connect and zone settings from /v1/agent/self (whose shape differs
// before 1.0, from 1.0 and from 1.12), ACL replication per datacenter,
// legacy tokens (1.4-1.10), intentions, terminating gateways and node meta
// (through the optional FeatureReader, which NewConsul's Consul implements).
// What the API does not show (whether Envoy runs, whether servers feed
// agentless proxies) or the token may not read is listed in
// Features.Unobserved, which the planner reports as the features-not-observed
// finding; Config.Features declares such features and wins over observation,
// and Config.Features.ZoneKey names the node-meta key of zones.
//
// consul/api is used only in this package, behind the small Consul interface
// that NewConsul implements over an *api.Client.
package upgrade
