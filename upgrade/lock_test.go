package upgrade

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestRunTakesTheLockAndGivesItBackWhenDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunRig(t, 3, 0)
		r.cfg.LockHolder = "operator-a"
		if _, err := Run(t.Context(), r.cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if n := r.sim.callCount("/v1/session/create"); n != 1 {
			t.Errorf("sessions created = %d, want 1", n)
		}
		r.sim.mu.Lock()
		defer r.sim.mu.Unlock()
		if len(r.sim.locks) != 0 || len(r.sim.sessions) != 0 {
			t.Errorf("after the run: locks %v, sessions %v; want both gone", r.sim.locks, r.sim.sessions)
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
		r := newRunRig(t, 3, 0)
		r.sim.restartDelay = 10 * time.Second // each server gate outlasts a renewal
		on := r.cfg.OnEvent
		r.cfg.OnEvent = func(e Event) {
			on(e)
			if e.Kind == EventStepDone && e.Step.Node == "" { // the snapshot: someone deletes the session
				r.sim.mu.Lock()
				clear(r.sim.sessions)
				r.sim.mu.Unlock()
			}
		}
		_, err := Run(t.Context(), r.cfg)
		if !errors.Is(err, ErrLockLost) {
			t.Fatalf("err = %v, want ErrLockLost", err)
		}
		if n := len(r.tr.swapped()); n != 1 {
			t.Errorf("swapped %v after the lock was lost; want only the swap in flight when it went", r.tr.swapped())
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
		if n := r.sim.callCount("/v1/session/create"); n != 0 {
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
		if n := r.sim.callCount("/v1/session/create"); n != 0 {
			t.Errorf("a refused run created %d session(s)", n)
		}
	})
}
