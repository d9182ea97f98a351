package upgrade

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func TestRunTakesTheLockAndGivesItBackWhenDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.LockHolder = "operator-a"
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		// One for the lock, and one when the lock moves off s1 (the
		// simulated agent makes sessions on s1) before s1 is swapped.
		if n := r.sim.Calls("/v1/session/create"); n != 2 {
			t.Errorf("sessions created = %d, want 2", n)
		}
		if locks, sessions := r.sim.HeldLocks(), r.sim.Sessions(); len(locks) != 0 || len(sessions) != 0 {
			t.Errorf("after the run: locks %v, sessions %v; want both gone", locks, sessions)
		}
	})
}

func TestASecondRunIsRefusedWhileAnotherHoldsTheLockAndTouchesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		other, err := r.cfg.Consul.(Locker).Lock(t.Context(), DefaultLockKey, LockHolder{Holder: "operator-b", Target: "1.13.9", Since: time.Now()})
		if err != nil {
			t.Fatalf("the other run's lock: %v", err)
		}
		defer other.Release(context.Background())

		_, err = Run(t.Context(), r.cfg)
		var locked *LockedError
		if !errors.As(err, &locked) {
			t.Fatalf("err = %v, want *LockedError", err)
		}
		if locked.Holder.Holder != "operator-b" || !strings.Contains(err.Error(), `"operator-b"`) {
			t.Errorf("error %q does not name the holder operator-b", err)
		}
		if n := len(r.tr.swapped()); n != 0 {
			t.Errorf("a locked-out run swapped %d node(s)", n)
		}
		if len(r.snapshots) != 0 {
			t.Errorf("a locked-out run took %d snapshot(s)", len(r.snapshots))
		}
	})
}

func TestRunHaltsBeforeTheNextStepWhenItsLockIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0, consultest.WithRestartDelay(10*time.Second)) // each server gate outlasts a renewal
		on := r.cfg.OnEvent
		r.cfg.OnEvent = func(e Event) {
			on(e)
			if e.Kind == EventStepDone && e.Step.Node == "" { // the snapshot: someone deletes the session
				for _, id := range r.sim.Sessions() {
					r.sim.InvalidateSession(id)
				}
			}
		}
		_, err := Run(t.Context(), r.cfg)
		if !errors.Is(err, ErrLockLost) {
			t.Fatalf("err = %v, want ErrLockLost", err)
		}
		// Before the first swap the run reads the lock's session (to keep
		// it off the node it stops) and finds it gone: nothing is swapped.
		if n := len(r.tr.swapped()); n != 0 {
			t.Errorf("swapped %v after the lock was lost; want none", r.tr.swapped())
		}
	})
}

func TestRunWithNoLockCreatesNoSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.NoLock = true
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if n := r.sim.Calls("/v1/session/create"); n != 0 {
			t.Errorf("NoLock run created %d session(s)", n)
		}
	})
}

func TestARefusedPlanTakesNoLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.Target = "1.11.0" // a downgrade: refused
		if _, err := Run(t.Context(), r.cfg); err == nil {
			t.Fatal("a downgrade was not refused")
		}
		if n := r.sim.Calls("/v1/session/create"); n != 0 {
			t.Errorf("a refused run created %d session(s)", n)
		}
	})
}
