package upgrade

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

// metricsConsul is a Consul wrapped the usual Go way, to count calls: it
// keeps only the methods of Consul.
type metricsConsul struct {
	Consul
	n int
}

func (m *metricsConsul) Members(ctx context.Context) ([]*api.AgentMember, error) {
	m.n++
	return m.Consul.Members(ctx)
}

// callLog records the calls an Intercept's around sees.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) around(ctx context.Context, call string, do func(context.Context) error) error {
	l.mu.Lock()
	l.calls = append(l.calls, call)
	l.mu.Unlock()
	return do(ctx)
}

func (l *callLog) saw(call string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		if c == call {
			n++
		}
	}
	return n
}

func TestValidateRefusesAConsulThatLostTheLockAndKVAbilitiesAndSaysHowToKeepThem(t *testing.T) {
	r := newRunRig(t, 3, 0)
	r.cfg.Consul = &metricsConsul{Consul: r.cfg.Consul}
	err := r.cfg.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "Consul" {
		t.Fatalf("Validate = %v, want a *ConfigError on Consul", err)
	}
	for _, want := range []string{"*upgrade.metricsConsul", "upgrade.Locker and upgrade.KVStore", "no upgrade lock", "no backup or swap record", "upgrade.Intercept", "set NoLock"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %q, does not say %q", err, want)
		}
	}
	r.cfg.NoLock = true
	if err := r.cfg.Validate(); err != nil {
		t.Errorf("with NoLock, Validate = %v, want nil: the operator accepted running without the lock and records", err)
	}
}

// Before this check, a wrapped Consul ran with no lock, no backup record and
// no swap record, and said nothing.
func TestARunThroughAConsulThatLostItsAbilitiesIsRefusedBeforeAnyCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		m := &metricsConsul{Consul: r.cfg.Consul}
		r.cfg.Consul = m
		res, err := Run(t.Context(), r.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "Consul" {
			t.Fatalf("Run = %v, want a *ConfigError on Consul", err)
		}
		if m.n != 0 || len(r.tr.swapped()) != 0 || len(res.Steps) != 0 || len(r.snapshots) != 0 {
			t.Errorf("a refused run made %d Members call(s), %d swap(s), %d step(s), %d snapshot(s); want none", m.n, len(r.tr.swapped()), len(res.Steps), len(r.snapshots))
		}
	})
}

func TestInterceptImplementsEachOptionalInterfaceExactlyWhenTheWrappedConsulDoes(t *testing.T) {
	sim := consultest.NewCluster(1, 0, "1.12.9")
	base := inProcessConsul(t, sim)
	direct := &routed{route: func(ctx context.Context, _ string, fn func(context.Context, Consul) error) error {
		return fn(ctx, base)
	}}
	for a := ability(0); a < 16; a++ {
		in := direct.view(a) // a Consul with exactly the abilities a
		if got := abilitiesOf(in); got != a {
			t.Fatalf("view(%04b) has abilities %04b", a, got)
		}
		out := Intercept(in, (&callLog{}).around)
		if got := abilitiesOf(out); got != a {
			t.Errorf("Intercept of a Consul with abilities %04b has %04b, want the same", a, got)
		}
		if again := Intercept(out, (&callLog{}).around); abilitiesOf(again) != a {
			t.Errorf("Intercept of Intercept, abilities %04b: has %04b", a, abilitiesOf(again))
		}
	}
	if got := abilitiesOf(Intercept(base, (&callLog{}).around)); got != abilityEra|abilityFeatures|abilityLock|abilityKV {
		t.Errorf("Intercept(NewConsul) has abilities %04b, want all four", got)
	}
	if got := abilitiesOf(Intercept(onlyConsul{base}, (&callLog{}).around)); got != 0 {
		t.Errorf("Intercept of a Consul with no optional interface has abilities %04b, want none", got)
	}
}

// The run through an intercepted NewConsul holds the lock, keeps its swap
// and backup records, and around sees every call, the lock's own included.
func TestARunThroughInterceptKeepsTheLockAndTheRecordsAndAroundSeesEveryCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		log := &callLog{}
		r.cfg.Consul = Intercept(r.cfg.Consul, log.around)
		var recorded, locked bool
		r.cfg.OnEvent = func(e Event) {
			r.events = append(r.events, e)
			if e.Kind == EventGateWaiting && e.Step.Kind == planner.StepSwapServer {
				_, recorded = r.sim.KV(swapKey)
				locked = slices.Contains(r.sim.HeldLocks(), DefaultLockKey)
			}
		}
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !locked || !recorded {
			t.Errorf("during a server's gate: lock held %v, swap record kept %v; want both", locked, recorded)
		}
		if slices.Contains(r.kinds(), EventAbilityMissing) {
			t.Errorf("events %v: an intercepted NewConsul lacks nothing", r.kinds())
		}
		for _, call := range []string{"Members", "AgentSelf", "RaftConfiguration", "AutopilotHealth", "SnapshotSave", "KVGet", "KVPut", "KVDelete", "Lock/create-session", "Lock/acquire", "Lock/move", "Lock/destroy-session"} {
			if log.saw(call) == 0 {
				t.Errorf("around never saw %s (saw %d calls)", call, len(log.calls))
			}
		}
		if n := r.sim.Calls("/v1/session/create"); n != 2 {
			t.Errorf("sessions created = %d, want 2 (the lock, and its move off s1), as without the wrapper", n)
		}
	})
}

func TestInterceptFailsACallThatAroundSkippedWithoutAnError(t *testing.T) {
	sim := consultest.NewCluster(1, 0, "1.12.9")
	c := Intercept(inProcessConsul(t, sim), func(ctx context.Context, call string, do func(context.Context) error) error { return nil })
	_, err := c.Leader(t.Context())
	if err == nil || !strings.Contains(err.Error(), "around returned nil without making call Leader") {
		t.Errorf("Leader = %v, want an error naming around and the call", err)
	}
}

// ownLocker is a Consul with a Locker of its own (not NewConsul's).
type ownLocker struct {
	Consul
	KVStore
	locks int
}

func (o *ownLocker) Lock(ctx context.Context, key string, holder LockHolder) (*Lock, error) {
	o.locks++
	return &Lock{Key: key, Lost: make(chan struct{}), release: func(context.Context) error { return nil }}, nil
}

func TestInterceptTakesTheLockOfAConsulWithItsOwnLockerThroughThatLocker(t *testing.T) {
	sim := consultest.NewCluster(1, 0, "1.12.9")
	base := inProcessConsul(t, sim)
	own := &ownLocker{Consul: base, KVStore: base.(KVStore)}
	log := &callLog{}
	c := Intercept(own, log.around)
	l, err := c.(Locker).Lock(t.Context(), "k", LockHolder{Holder: "h"})
	if err != nil || l == nil || l.Key != "k" {
		t.Fatalf("Lock = %v, %v", l, err)
	}
	if own.locks != 1 || log.saw("Lock") != 1 || log.saw("Lock/create-session") != 0 {
		t.Errorf("own Lock called %d time(s), around saw Lock %d time(s) and %v; want the own Locker once, through around", own.locks, log.saw("Lock"), log.calls)
	}
	if len(sim.Sessions()) != 0 {
		t.Errorf("sessions %v made behind the own Locker's back", sim.Sessions())
	}
}

// A failover over intercepted endpoints still takes the lock through
// whichever agent answers: the lock's own calls pass through each wrapper.
func TestAFailoverOverInterceptedEndpointsTakesTheLockThroughThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 2)
		log := &callLog{}
		eps := agentEndpoints(t, r.sim, "c1", "c2")
		for i := range eps {
			eps[i].Consul = Intercept(eps[i].Consul, log.around)
		}
		fc, err := Failover(eps, nil)
		mustDo(t, err)
		l, err := fc.Lock(t.Context(), DefaultLockKey, LockHolder{Holder: "h", Since: time.Now()})
		if err != nil {
			t.Fatalf("Lock through a failover over intercepted endpoints: %v", err)
		}
		defer l.Release(context.Background())
		if !slices.Contains(r.sim.HeldLocks(), DefaultLockKey) || log.saw("Lock/create-session") != 1 || log.saw("Lock/acquire") != 1 {
			t.Errorf("held %v; around saw %v: want the lock taken through the wrapper", r.sim.HeldLocks(), log.calls)
		}
	})
}

// withoutFeatures is a Consul that keeps the lock and the KV store but not
// FeatureReader: a wrapper that embeds an interface listing what it keeps.
type withoutFeatures struct{ lockingConsul }

type lockingConsul interface {
	Consul
	Locker
	KVStore
}

func TestARunWhoseConsulLacksFeatureReaderSaysWhatItCannotObserve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Consul = withoutFeatures{r.cfg.Consul.(*apiConsul)}
		r.cfg.DryRun = true
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		var detail string
		for _, e := range r.events {
			if e.Kind == EventAbilityMissing {
				detail = e.Detail
			}
		}
		for _, want := range []string{"Config.Consul (upgrade.withoutFeatures)", "upgrade.FeatureReader", "not observed", "Config.Features", "upgrade.Intercept"} {
			if !strings.Contains(detail, want) {
				t.Errorf("ability-missing event %q does not say %q", detail, want)
			}
		}
	})
}

func TestARunWithNoLockThroughAConsulWithoutKVStoreSaysItKeepsNoBackupRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Consul = onlyConsul{r.cfg.Consul}
		r.cfg.NoLock = true
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		var details []string
		for _, e := range r.events {
			if e.Kind == EventAbilityMissing {
				details = append(details, e.Detail)
			}
		}
		if len(details) != 2 || !strings.Contains(details[0], "upgrade.KVStore") || !strings.Contains(details[0], "backup record") || !strings.Contains(details[1], "upgrade.FeatureReader") {
			t.Errorf("ability-missing events %q, want one for KVStore (no backup record) and one for FeatureReader", details)
		}
	})
}

// lockAndKV keeps the lock and the KV store but not EraReader.
type lockAndKV struct{ featuredConsul }

type featuredConsul interface {
	Consul
	Locker
	KVStore
	FeatureReader
}

// EraReader is only needed before 0.7.1: without it a run of an older
// cluster is refused by its first observation, before the lock is taken
// and before anything is touched, naming the Consul's type.
func TestARunOfA064ClusterThroughAConsulWithoutEraReaderIsRefusedBeforeTouchingAnything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.sim = consultest.NewCluster(3, 0, "0.6.4", consultest.WithEra(consultest.Era06), consultest.WithStableSince(time.Now().Add(-time.Hour)))
		r.cfg.Consul = lockAndKV{inProcessConsul(t, r.sim).(*apiConsul)}
		r.cfg.Target = "0.7.5"
		_, err := Run(t.Context(), r.cfg)
		if !errors.Is(err, ErrNoEraReader) || !strings.Contains(err.Error(), "upgrade.lockAndKV") || !strings.Contains(err.Error(), "upgrade.Intercept") {
			t.Fatalf("Run = %v, want ErrNoEraReader naming the Consul's type and the fix", err)
		}
		if len(r.tr.swapped()) != 0 || len(r.snapshots) != 0 || r.sim.Calls("/v1/session/create") != 0 {
			t.Errorf("swaps %v, snapshots %v, sessions %d: want nothing touched, no lock taken", r.tr.swapped(), r.snapshots, r.sim.Calls("/v1/session/create"))
		}
	})
}
