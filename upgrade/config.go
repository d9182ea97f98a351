package upgrade

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// DefaultMaxSteps bounds a run when Config.MaxSteps is 0: far more than any
// real plan needs, small enough to stop a runaway loop.
const DefaultMaxSteps = 10000

// DefaultClientConcurrencyPercent is the share of a client wave swapped at
// once when Config.ClientConcurrency is 0.
const DefaultClientConcurrencyPercent = 10

// Config is what Run needs. Consul and Target (or Plan) are always
// required; Transport and (unless Policy.NoSnapshot) Snapshot are required
// unless DryRun.
type Config struct {
	// Consul answers the API calls (NewConsul over an *api.Client): an
	// agent of the run's own datacenter, which also holds the lock. It
	// must implement Locker and KVStore unless NoLock; to wrap it (for
	// metrics, say) use Intercept, which keeps its abilities.
	Consul Consul
	// Datacenters adds the other datacenters of a WAN federation to the
	// run: a Consul talking to an agent of each, keyed by the datacenter's
	// name (not Consul's own datacenter). Every step observes them all,
	// and each step is acted on and gated through its datacenter's Consul.
	// Empty: the run covers Consul's datacenter alone. See the package
	// doc's Datacenters section.
	Datacenters map[string]Consul
	// Transport swaps nodes. It must implement transport.Rollbacker when
	// Rollback is set, and transport.Provisioner when Policy.Strategy is
	// replace (then Consul should talk to an agent that is not retired: a
	// client agent, or an address that follows the servers).
	Transport transport.Transport
	// Target is the Consul version to reach, in its canonical spelling
	// ("1.13.9", "1.14.0-rc1", "1.13.9+ent"; not "v1.13.9" or "1.13.09"):
	// see planner.ParseVersion. It must be a Consul release
	// (planner.CheckRelease: 1.13.99 and pre-releases are refused unless
	// Policy.Releases lists them or Policy.Waive waives unknown-release). A "+ent" target, or agents on "+ent" builds,
	// make the run an Enterprise one (see planner.Policy.Enterprise).
	Target string
	// Policy is the operator's choice of strategy, order, waves, waivers.
	// With Plan set, the plan's policy is used instead (Policy.Rules
	// excepted: when set, they replace the plan's, whose When functions
	// JSON cannot carry).
	Policy planner.Policy
	// Plan, when set, is the approved plan (planner.Plan's, as reviewed,
	// e.g. read back from its JSON) and the run carries out only its
	// steps: before each step, the step decided from the cluster observed
	// just then must be the plan's next step that is not yet done in the
	// cluster (steps done already, by an earlier run or by hand, are
	// passed over, so a stopped run resumes). Anything else halts the run
	// before the step touches anything, with a *PlanDivergedError; so
	// does, at the start, an agent on a version the plan's path does not
	// contain. Before that, and before every step, the plan's basis (what
	// it was reviewed on) is checked against the cluster observed then
	// (planner.UpgradePlan.CheckBasis): a cluster that changed beyond what
	// the plan's done steps explain (a server missing or new, a version
	// moved out of band, the leader moved without the plan, the failure
	// tolerance lower) refuses the plan with a *planner.StalePlanError
	// carrying the differences, before anything of the step is touched; so
	// does a plan that records no basis (saved before plans recorded
	// one). Target may be "" (the plan's is used) or must be the plan's. A
	// dry run takes only the plan's target and policy from it.
	Plan *planner.UpgradePlan
	// BeforeStep, when set, is asked before each step (after the step was
	// decided and checked against Plan, before anything of it is touched):
	// Approve carries it out, StopHere ends the run cleanly before it
	// (Result.Stopped), Abort or an error ends the run with an
	// *AbortedError. The cluster is observed again after an approval that
	// took a while, and a step that changed meanwhile is asked about again.
	BeforeStep func(ctx context.Context, s StepInfo) (StepDecision, error)
	// Snapshot opens the sink of each pre-hop backup, one per observed
	// datacenter (see SnapshotSink, SnapshotDir). Required unless
	// Policy.NoSnapshot or DryRun.
	Snapshot SnapshotFunc
	// BackupMaxAge is how old a backup recorded by an earlier run (see
	// BackupRecord) may be and still count for the hop it was taken
	// before (0: DefaultBackupMaxAge, 24h).
	BackupMaxAge time.Duration
	// OnEvent receives every event synchronously, in order.
	OnEvent func(Event)
	// Logger, if set, logs every event.
	Logger *slog.Logger
	// Rollback puts a node whose swap or gate failed back on its old binary
	// (through transport.Rollbacker) and waits until the cluster is healthy
	// again before Run returns. A transport that says it cannot roll back
	// (transport.RollbackChecker) is refused by Validate, and the
	// pre-flight check also checks each node's current binary. A server whose rollback would stop it while
	// the other voters up make no quorum is left running
	// (*QuorumError in HaltError.RollbackErr).
	Rollback bool
	// RollbackTimeout bounds a rollback (0: twice the gate timeout, 10m
	// by default): the quorum check, the transport's Rollback (or Retire
	// of a new server) and the gate that waits for health after it. A
	// rollback runs under a context of its own, so a run whose context is
	// cancelled while a node is swapped or gated still puts that node
	// back; HaltError (RolledBack, RolledBackNodes, RollbackErr) and a
	// rolled-back event say how it ended.
	RollbackTimeout time.Duration
	// DryRun returns the plan of the discovered cluster in Result.Plan and
	// touches nothing. With a Transport that can check binaries, it also
	// makes the pre-flight check and reports it as EventPreflight events
	// (a missing binary is reported, not refused: a run would refuse it).
	DryRun bool
	// GateTimeout bounds each gate (0: DefaultGateTimeout).
	GateTimeout time.Duration
	// GateMaxInterval caps the wait between gate attempts (0:
	// DefaultGateMaxInterval).
	GateMaxInterval time.Duration
	// ServerAPI reaches each server's own HTTP API, which the gates need
	// in the eras without autopilot health (before 0.8, and 0.8+ on raft
	// protocol 2): a server's commit index and last contact are only in
	// its own /v1/agent/self. E.g. upgrade.ServerHTTP(8500). Nil: a gate
	// that needs another server's raft stats fails naming this field.
	// With it, a swapped server's gate also polls that server's own API
	// every AliveInterval and counts stability again from each refused
	// connection, which is how a server that a supervisor restarts in a
	// crash loop is seen: autopilot keeps calling it healthy.
	ServerAPI ServerAPIFunc
	// StabilizationTime, when positive, is how long a swapped server must
	// be seen healthy before the next step, instead of autopilot's
	// ServerStabilizationTime (or DefaultStabilizationTime in the eras
	// without an autopilot configuration). Without autopilot it is counted
	// from the gate's own observations.
	StabilizationTime time.Duration
	// MaxSteps bounds the number of steps of a run (0: DefaultMaxSteps).
	// A run that reaches it ends cleanly, as BeforeStep's StopHere does
	// (Result.Stopped, a nil error): MaxSteps 1 does one step at a time,
	// and each run resumes where the last one stopped.
	MaxSteps int
	// ClientConcurrency bounds the swaps in flight within a client wave
	// (0: DefaultClientConcurrencyPercent of the wave, rounded up, at
	// least 1: 20 at a time in a wave of 200). The wave's size itself is
	// the policy's (planner.ClientPolicy).
	ClientConcurrency int
	// NoLock runs without the cluster-wide upgrade lock and the swap
	// record (see SwapRecord). By default a run takes the lock before its
	// first action and gives it back when it ends, so two runs never act
	// on one cluster at once; Consul must then implement Locker and
	// KVStore (NewConsul's and Failover's do, and so does a wrapper made
	// with Intercept), and Validate refuses one that does not.
	NoLock bool
	// LockKey is the KV key of the lock ("": DefaultLockKey).
	LockKey string
	// LockHolder names this run in the lock ("": "consul-upgrade on
	// <hostname>, pid <pid>").
	LockHolder string
	// Features declares what the run cannot observe (or corrects what it
	// observes): each declared field wins over observation. ZoneKey names
	// the node-meta key of zones. See FeatureConfig.
	Features FeatureConfig
}

// Validate reports every problem with the config, each as a *ConfigError
// (joined with errors.Join), or nil. It does not change cfg.
func (cfg Config) Validate() error {
	var errs []error
	add := func(field, value, problem string) {
		errs = append(errs, &ConfigError{Field: field, Value: value, Problem: problem})
	}
	if cfg.Consul == nil {
		add("Consul", "", "is nil; pass upgrade.NewConsul(client) for an *api.Client")
	} else if missing := missingAbilities(cfg.Consul, abilityLock|abilityKV); missing != "" && !cfg.NoLock {
		add("Consul", fmt.Sprintf("%T", cfg.Consul), fmt.Sprintf("does not implement %s, so the run would hold no upgrade lock and keep no backup or swap record; wrap a Consul with upgrade.Intercept, which keeps every ability of the Consul it wraps, or set NoLock to run without the lock and the records", missing))
	}
	if cfg.Plan != nil {
		if err := cfg.Plan.Findings.Err(); err != nil {
			add("Plan", "", fmt.Sprintf("was refused when it was made (%v); fix the findings and plan again", err))
		}
		if cfg.Target != "" && !planner.SameVersion(cfg.Target, cfg.Plan.Target) {
			add("Target", strconv.Quote(cfg.Target), fmt.Sprintf("differs from the plan's target %s; leave Target empty or set it to the plan's", cfg.Plan.Target))
		}
	}
	cfg = cfg.withPlan()
	if _, err := planner.ParseVersion(cfg.Target); err != nil {
		// The planner, this package and the transports share one parser,
		// so a target refused anywhere is refused here, before the lock.
		errs = append(errs, &ConfigError{Field: "Target", Value: strconv.Quote(cfg.Target),
			Problem: versionProblem(err), Err: err})
	}
	if err := checkRelease(cfg.Target, cfg.Policy); err != nil {
		errs = append(errs, &ConfigError{Field: "Target", Value: strconv.Quote(cfg.Target), Problem: err.Error(), Err: err})
	}
	if err := planner.CheckWaivers(cfg.Policy); err != nil {
		errs = append(errs, &ConfigError{Field: "Policy.Waive", Value: strconv.Quote(joinRuleIDs(cfg.Policy.Waive)), Problem: err.Error(), Err: err})
	}
	if !cfg.DryRun {
		if cfg.Transport == nil {
			add("Transport", "", "is nil; a run that is not a dry run needs a transport to swap nodes")
		}
		if cfg.Snapshot == nil && !cfg.Policy.NoSnapshot {
			add("Snapshot", "", "is nil while Policy.NoSnapshot is false; set Snapshot (e.g. upgrade.SnapshotDir(dir)) or opt out with Policy.NoSnapshot")
		}
		if cfg.Policy.Strategy == planner.Replace && cfg.Transport != nil {
			if _, ok := cfg.Transport.(transport.Provisioner); !ok {
				add("Policy.Strategy", strconv.Quote(string(planner.Replace)), fmt.Sprintf("needs a transport that implements transport.Provisioner (to add and retire servers), and %T does not; use strategy %q or a transport that can provision", cfg.Transport, planner.InPlace))
			}
			if len(cfg.Datacenters) > 0 {
				add("Policy.Strategy", strconv.Quote(string(planner.Replace)), "is not supported with Datacenters: transport.Provisioner cannot say which datacenter a new server joins; run the replace strategy one datacenter at a time")
			}
		}
		if cfg.Rollback && cfg.Transport != nil {
			if _, ok := cfg.Transport.(transport.Rollbacker); !ok {
				add("Rollback", "true", fmt.Sprintf("needs a transport that implements transport.Rollbacker, and %T does not; unset Rollback or use a transport that can roll back", cfg.Transport))
			} else if rc, ok := cfg.Transport.(transport.RollbackChecker); ok {
				if err := rc.CanRollback(); err != nil {
					errs = append(errs, &ConfigError{Field: "Rollback", Value: "true", Err: err,
						Problem: fmt.Sprintf("cannot be carried out: %v; or unset Rollback (the run was refused before anything was touched)", err)})
				}
			}
		}
	}
	for _, dc := range slices.Sorted(maps.Keys(cfg.Datacenters)) {
		switch {
		case dc == "":
			add("Datacenters", `""`, "has an empty datacenter name; key each Consul by the name of its datacenter")
		case cfg.Datacenters[dc] == nil:
			add("Datacenters", strconv.Quote(dc), "maps to a nil Consul; pass upgrade.NewConsul(client) for an agent of that datacenter")
		}
	}
	if cfg.GateTimeout < 0 {
		add("GateTimeout", cfg.GateTimeout.String(), "is negative; use 0 for the default (5m0s) or a positive duration")
	}
	if cfg.GateMaxInterval < 0 {
		add("GateMaxInterval", cfg.GateMaxInterval.String(), "is negative; use 0 for the default (2s) or a positive duration")
	}
	if cfg.RollbackTimeout < 0 {
		add("RollbackTimeout", cfg.RollbackTimeout.String(), "is negative; use 0 for the default (twice the gate timeout) or a positive duration")
	}
	if cfg.StabilizationTime < 0 {
		add("StabilizationTime", cfg.StabilizationTime.String(), "is negative; use 0 for autopilot's (or the default 10s) or a positive duration")
	}
	if cfg.BackupMaxAge < 0 {
		add("BackupMaxAge", cfg.BackupMaxAge.String(), "is negative; use 0 for the default (24h0m0s) or a positive duration")
	}
	if cfg.MaxSteps < 0 {
		add("MaxSteps", fmt.Sprint(cfg.MaxSteps), fmt.Sprintf("is negative; use 0 for the default (%d) or a positive bound", DefaultMaxSteps))
	}
	if cfg.ClientConcurrency < 0 {
		add("ClientConcurrency", fmt.Sprint(cfg.ClientConcurrency), "is negative; use 0 for the default (10% of each wave, at least 1) or a positive bound")
	}
	errs = append(errs, cfg.Features.validate()...)
	return errors.Join(errs...)
}

// withPlan returns cfg with the approved plan's target (when Target is
// empty) and policy (Rules excepted when cfg.Policy has some).
func (cfg Config) withPlan() Config {
	if cfg.Plan == nil {
		return cfg
	}
	if cfg.Target == "" {
		cfg.Target = cfg.Plan.Target
	}
	rules := cfg.Policy.Rules
	cfg.Policy = cfg.Plan.Policy
	if len(rules) > 0 {
		cfg.Policy.Rules = rules
	}
	return cfg
}

// versionProblem is the parser's reason and fix, without the value (the
// ConfigError names it).
func versionProblem(err error) string {
	var ve *planner.VersionError
	if errors.As(err, &ve) && ve.Err != nil {
		return ve.Err.Error()
	}
	return err.Error()
}

// checkRelease is planner.CheckRelease for a target that parses, judged as
// the planner will judge it on any cluster: an Enterprise-only patch
// passes here (whether the cluster is Enterprise is only known once it is
// observed; the planner then decides), and a version >= 2.0.0 is left to
// the planner's own refusal.
func checkRelease(target string, pol planner.Policy) error {
	if _, err := planner.ParseVersion(target); err != nil {
		return nil // refused above as a version
	}
	err := planner.CheckRelease(target, pol)
	var ue *planner.UnknownReleaseError
	if !errors.As(err, &ue) {
		return nil
	}
	pol.Enterprise = true
	if planner.CheckRelease(target, pol) == nil {
		return nil
	}
	return err
}

// joinRuleIDs joins rule IDs with commas, as a policy file lists them.
func joinRuleIDs(ids []planner.RuleID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = string(id)
	}
	return strings.Join(s, ",")
}
