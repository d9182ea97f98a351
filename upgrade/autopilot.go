package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// RuleAutopilotPinned names what a run does to autopilot's dead-server
// cleanup: before it stops the first server of a datacenter whose Consul
// has an autopilot configuration (0.8 and later), it sets
// CleanupDeadServers to false with a compare-and-set, and it puts the
// operator's value back when it ends (done, stopped, halted, aborted, or
// Session.Close), under a context of its own, so a cancelled run restores
// it too. Autopilot removes a server that is down for a while, and a
// server down for its swap is one: the voters, and the quorum, shrink in
// the middle of the upgrade (hashicorp/consul#5922; MinQuorum, 1.6+, only
// bounds that pruning, and with cleanup off there is none to bound). A
// configuration someone else changed while the run held it is not
// overwritten: the run says so (EventAutopilotRestored with
// ErrAutopilotChanged) and leaves it as it found it. While it holds the
// pin, the operator's value is recorded next to the lock
// (consul-upgrade/autopilot for the default lock key), so that the next
// run restores it when this one dies first.
const RuleAutopilotPinned planner.RuleID = "autopilot-cleanup-pinned"

// URLAutopilotPinned is the source of RuleAutopilotPinned.
const URLAutopilotPinned = "https://github.com/hashicorp/consul/issues/5922"

// Events of RuleAutopilotPinned.
const (
	// EventAutopilotPinned: before a datacenter's first server stop, the
	// run turned autopilot's CleanupDeadServers off (Detail says what it
	// was and the ModifyIndex of the run's write), or found nothing to pin
	// (off already, no autopilot configuration before 0.8, a Consul that
	// cannot write it).
	EventAutopilotPinned EventKind = "autopilot-pinned"
	// EventAutopilotRestored: the run put the operator's CleanupDeadServers
	// back as it ended, or (Err set) could not: the configuration was
	// changed by someone else meanwhile (ErrAutopilotChanged: left as it
	// is), or the write failed (Detail says the command that restores it).
	EventAutopilotRestored EventKind = "autopilot-restored"
)

// AutopilotWriter is the optional part of Consul that pins autopilot's
// dead-server cleanup for a run (RuleAutopilotPinned). NewConsul's Consul
// implements it, and so do those of Intercept and Failover (a call fails
// with ErrNoAutopilotWriter when the Consul they reach does not). A Consul
// without it is reported (EventAutopilotPinned) and the run goes on with
// the operator's settings.
type AutopilotWriter interface {
	// AutopilotCASConfiguration writes conf when the configuration's
	// ModifyIndex is still conf.ModifyIndex (PUT
	// /v1/operator/autopilot/configuration?cas=, 0.8 and later; it needs
	// operator:write), and reports whether it did.
	AutopilotCASConfiguration(ctx context.Context, conf *api.AutopilotConfiguration) (bool, error)
}

// ErrNoAutopilotWriter is the error of a Consul that cannot write the
// autopilot configuration.
var ErrNoAutopilotWriter = errors.New("this Consul does not implement upgrade.AutopilotWriter (upgrade.NewConsul's does; wrap with upgrade.Intercept to keep it)")

// RuleUpgradeMigrationPinned names the same pin on Consul Enterprise: for
// an in-place upgrade the run also sets DisableUpgradeMigration to true
// (and puts the operator's value back at the end), since Enterprise's
// upgrade migration may otherwise elect a server on the new version
// before the old leader's turn, and the docs say to turn it off for an
// in-place upgrade (planner's disable-upgrade-migration names the same
// fact). The replace strategy leaves it alone.
const RuleUpgradeMigrationPinned planner.RuleID = "upgrade-migration-pinned"

// ErrAutopilotChanged is wrapped by the EventAutopilotRestored of a
// configuration changed by someone else while the run had
// CleanupDeadServers pinned: the run leaves it as it is.
var ErrAutopilotChanged = errors.New("the autopilot configuration was changed by someone else while the run had it pinned")

func (a *apiConsul) AutopilotCASConfiguration(ctx context.Context, conf *api.AutopilotConfiguration) (bool, error) {
	ok, err := a.c.Operator().AutopilotCASConfiguration(conf, (&api.WriteOptions{}).WithContext(ctx))
	if err = missing(err, "/v1/operator/autopilot/configuration", "0.8.0 and later"); err != nil {
		return false, fmt.Errorf("write autopilot configuration: %w", err)
	}
	return ok, nil
}

func (w *routed) AutopilotCASConfiguration(ctx context.Context, conf *api.AutopilotConfiguration) (bool, error) {
	return via(ctx, w, "AutopilotCASConfiguration", func(ctx context.Context, c Consul) (bool, error) {
		aw, ok := c.(AutopilotWriter)
		if !ok {
			return false, ErrNoAutopilotWriter
		}
		return aw.AutopilotCASConfiguration(ctx, conf)
	})
}

// autopilotPin is what the run did to one datacenter's autopilot
// configuration.
type autopilotPin struct {
	dc string // the step's Datacenter ("" for the run's own)
	// set: the run wrote CleanupDeadServers false (and, with migration,
	// DisableUpgradeMigration true), at index; was is the operator's
	// CleanupDeadServers before, migWas its DisableUpgradeMigration.
	// Unset: nothing to restore.
	set       bool
	was       bool
	migration bool
	migWas    bool
	index     uint64
	// missing: the agent had no autopilot configuration (before 0.8); the
	// next server stop looks again, since a hop may have brought it.
	missing bool
}

// pinRecord is what a run keeps next to the lock (consul-upgrade/autopilot
// for the default lock key) while it has a datacenter's autopilot
// configuration pinned: the operator's values and the index of the run's
// write. A run that dies before it restores them leaves the record, and
// the next run that finds the configuration still at that index takes the
// pin over and restores the operator's values when it ends, instead of
// taking the run's "off" for the operator's.
type pinRecord struct {
	CleanupDeadServers      bool   `json:"cleanup_dead_servers"`
	Migration               bool   `json:"migration,omitempty"`
	DisableUpgradeMigration bool   `json:"disable_upgrade_migration,omitempty"`
	ModifyIndex             uint64 `json:"modify_index"`
}

func autopilotKey(lockKey string) string { return recordKey(lockKey, "autopilot") }

// readPins reads the pin records (nil when there are none, or no record
// can be kept).
func (r *runner) readPins(ctx context.Context) map[string]pinRecord {
	kv, ok := r.swapRecords()
	if !ok {
		return nil
	}
	b, found, err := kv.KVGet(ctx, autopilotKey(r.cfg.LockKey))
	if err != nil || !found {
		return nil
	}
	var recs map[string]pinRecord
	if json.Unmarshal(b, &recs) != nil {
		return nil
	}
	return recs
}

// savePins writes the records of the pins this run holds, or deletes the
// record when it holds none.
func (r *runner) savePins(ctx context.Context) error {
	kv, ok := r.swapRecords()
	if !ok {
		return nil
	}
	recs := map[string]pinRecord{}
	for name, p := range r.pins {
		if p.set {
			recs[name] = pinRecord{CleanupDeadServers: p.was, Migration: p.migration, DisableUpgradeMigration: p.migWas, ModifyIndex: p.index}
		}
	}
	key := autopilotKey(r.cfg.LockKey)
	if len(recs) == 0 {
		return kv.KVDelete(ctx, key)
	}
	b, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	return kv.KVPut(ctx, key, b)
}

// pinTries bounds the compare-and-set attempts of a pin: each failed one
// means someone else wrote the configuration between the read and the
// write.
const pinTries = 3

// pinAutopilot turns autopilot's dead-server cleanup off in step's
// datacenter before its first server stop (RuleAutopilotPinned), once per
// datacenter and run (before 0.8, where there is no autopilot
// configuration, again before each server stop: a hop may bring it). An
// error refuses the step before it stops anything.
func (r *runner) pinAutopilot(ctx context.Context, step planner.Step) error {
	name := r.dcName(step.Datacenter)
	prev, done := r.pins[name]
	if done && !prev.missing {
		return nil
	}
	if r.pins == nil {
		r.pins = map[string]*autopilotPin{}
	}
	c := r.consul(step.Datacenter)
	note := func(detail string) {
		r.pins[name] = &autopilotPin{dc: step.Datacenter}
		r.emit(ctx, Event{Kind: EventAutopilotPinned, Step: step, Detail: fmt.Sprintf("%s (%s): %s", string(RuleAutopilotPinned), name, detail)})
	}
	aw, ok := c.(AutopilotWriter)
	if !ok {
		note(fmt.Sprintf("not pinned: %T cannot write the autopilot configuration (%v); autopilot may remove a server that is down for its swap (%s)", c, ErrNoAutopilotWriter, URLAutopilotPinned))
		return nil
	}
	for range pinTries {
		conf, err := c.AutopilotConfiguration(ctx)
		var me *MissingEndpointError
		switch {
		case errors.As(err, &me):
			if !done { // reported once; each later server stop looks again
				note("nothing to pin yet: the agent has no autopilot configuration (0.8.0 and later), so no dead-server cleanup; looked for again before each server stop")
			}
			r.pins[name].missing = true
			return nil
		case err != nil:
			return fmt.Errorf("%s: before the first server stop in %s the run turns autopilot's CleanupDeadServers off, and could not read its configuration: %w; fix the read, or set it off yourself (consul operator autopilot set-config -cleanup-dead-servers=false: the run then leaves it as it is)", RuleAutopilotPinned, name, err)
		case conf == nil:
			note("nothing to pin: the agent answered no autopilot configuration")
			return nil
		}
		if rec, ok := r.readPins(ctx)[name]; ok && rec.ModifyIndex == conf.ModifyIndex {
			// An earlier run pinned it and ended without restoring: its
			// values are the operator's; this run restores them.
			r.pins[name] = &autopilotPin{dc: step.Datacenter, set: true, was: rec.CleanupDeadServers, migration: rec.Migration, migWas: rec.DisableUpgradeMigration, index: rec.ModifyIndex}
			r.emit(ctx, Event{Kind: EventAutopilotPinned, Step: step, Detail: fmt.Sprintf("%s (%s): an earlier run turned CleanupDeadServers off (ModifyIndex %d) and ended without restoring it: this run keeps it so and restores the operator's value (%s) when it ends", RuleAutopilotPinned, name, rec.ModifyIndex, onOff(rec.CleanupDeadServers))})
			return nil
		}
		migrate := r.pinsMigration(step) && !conf.DisableUpgradeMigration
		if !conf.CleanupDeadServers && !migrate {
			note("nothing to pin: CleanupDeadServers is off already, and the run leaves it so")
			return nil
		}
		want := *conf
		want.CleanupDeadServers = false
		if migrate {
			want.DisableUpgradeMigration = true
		}
		done, err := aw.AutopilotCASConfiguration(ctx, &want)
		if err != nil {
			return fmt.Errorf("%s: turning autopilot's CleanupDeadServers off in %s before the first server stop failed: %w; give the run's token operator:write, or set it off yourself (consul operator autopilot set-config -cleanup-dead-servers=false: the run then leaves it as it is)", RuleAutopilotPinned, name, err)
		}
		if !done {
			continue // written by someone else between the read and the write
		}
		after, err := c.AutopilotConfiguration(ctx)
		if err != nil {
			return fmt.Errorf("%s: autopilot's CleanupDeadServers was turned off in %s, and reading it back failed: %w; it is restored when the run ends", RuleAutopilotPinned, name, err)
		}
		r.pins[name] = &autopilotPin{dc: step.Datacenter, set: true, was: conf.CleanupDeadServers, migration: migrate, migWas: conf.DisableUpgradeMigration, index: after.ModifyIndex}
		if err := r.savePins(ctx); err != nil {
			return fmt.Errorf("%s: autopilot's CleanupDeadServers was turned off in %s, and the record of the operator's value could not be kept next to the lock: %w; it is restored when the run ends", RuleAutopilotPinned, name, err)
		}
		if after.CleanupDeadServers || migrate && !after.DisableUpgradeMigration {
			return fmt.Errorf("%s: autopilot's CleanupDeadServers in %s reads true again right after the run turned it off (ModifyIndex %d): someone else is writing the configuration; stop them, or set it off yourself", RuleAutopilotPinned, name, after.ModifyIndex)
		}
		mig := ""
		if migrate {
			mig = fmt.Sprintf("; and, on Consul Enterprise in place, DisableUpgradeMigration turned on (was off), so that upgrade migration does not elect a new-version server before the old leader's turn (%s)", RuleUpgradeMigrationPinned)
		}
		r.emit(ctx, Event{Kind: EventAutopilotPinned, Step: step, Detail: fmt.Sprintf("%s (%s): autopilot's CleanupDeadServers turned off for the run (was %s; ModifyIndex %d -> %d), so that a server down for its swap is not removed from the raft configuration%s; restored when the run ends (%s)", RuleAutopilotPinned, name, onOff(conf.CleanupDeadServers), conf.ModifyIndex, after.ModifyIndex, mig, URLAutopilotPinned)})
		return nil
	}
	return fmt.Errorf("%s: autopilot's configuration in %s changed %d times between the run's read and its compare-and-set: someone else is writing it; try again when it is quiet, or set CleanupDeadServers off yourself", RuleAutopilotPinned, name, pinTries)
}

// pinsMigration reports whether the run also disables Enterprise's upgrade
// migration before step (RuleUpgradeMigrationPinned): an in-place swap of
// a Consul Enterprise server (by its version, or Policy.Enterprise).
func (r *runner) pinsMigration(step planner.Step) bool {
	ent := r.cfg.Policy.Enterprise || planner.IsEnterprise(step.From) || planner.IsEnterprise(step.To)
	return ent && r.cfg.Policy.Strategy != planner.Replace
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// restoreAutopilot puts the operator's CleanupDeadServers back in every
// datacenter where the run turned it off, under a context of its own
// (RollbackTimeout), once. A configuration changed by someone else since
// the run's write is left as it is. It returns what could not be restored.
func (r *runner) restoreAutopilot(ctx context.Context) error {
	if len(r.pins) == 0 {
		return nil
	}
	pins := r.pins
	r.pins = nil
	rctx, cancel := r.rollbackContext(ctx)
	defer cancel()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(pins)) {
		p := pins[name]
		if !p.set {
			continue
		}
		if err := r.restorePin(ctx, rctx, name, p); err != nil {
			errs = append(errs, err)
		}
	}
	// Restored, or left as someone else set it: either way no later run
	// is to restore it.
	if err := r.savePins(rctx); err != nil {
		errs = append(errs, fmt.Errorf("%s: delete the pin record next to the lock: %w", RuleAutopilotPinned, err))
	}
	return errors.Join(errs...)
}

func (r *runner) restorePin(ctx, rctx context.Context, name string, p *autopilotPin) error {
	fix := fmt.Sprintf("consul operator autopilot set-config -cleanup-dead-servers=%t", p.was)
	if p.migration {
		fix += fmt.Sprintf(" -disable-upgrade-migration=%t", p.migWas)
	}
	report := func(err error, detail string) error {
		r.emit(ctx, Event{Kind: EventAutopilotRestored, Err: err, Detail: fmt.Sprintf("%s (%s): %s", RuleAutopilotPinned, name, detail)})
		return err
	}
	c := r.consul(p.dc)
	aw, _ := c.(AutopilotWriter)
	conf, err := c.AutopilotConfiguration(rctx)
	if err != nil {
		err = fmt.Errorf("%s: restore autopilot's CleanupDeadServers=%t in %s: read the configuration: %w; restore it yourself: %s", RuleAutopilotPinned, p.was, name, err, fix)
		return report(err, fmt.Sprintf("CleanupDeadServers not restored: %v", err))
	}
	changed := func(now *api.AutopilotConfiguration) error {
		err := fmt.Errorf("%s: %w (ModifyIndex %d, the run's write was %d; CleanupDeadServers is now %t, the operator's value before the run was %t): left as it is; check it (consul operator autopilot get-config), and if needed: %s",
			RuleAutopilotPinned, ErrAutopilotChanged, now.ModifyIndex, p.index, now.CleanupDeadServers, p.was, fix)
		return report(err, "not restored: "+err.Error())
	}
	if conf.ModifyIndex != p.index {
		return changed(conf)
	}
	want := *conf
	want.CleanupDeadServers = p.was
	if p.migration {
		want.DisableUpgradeMigration = p.migWas
	}
	done, err := aw.AutopilotCASConfiguration(rctx, &want)
	switch {
	case err != nil:
		err = fmt.Errorf("%s: restore autopilot's CleanupDeadServers=%t in %s: %w; restore it yourself: %s", RuleAutopilotPinned, p.was, name, err, fix)
		return report(err, fmt.Sprintf("CleanupDeadServers not restored: %v", err))
	case !done:
		now, rerr := c.AutopilotConfiguration(rctx)
		if rerr != nil {
			now = conf
		}
		return changed(now)
	}
	mig := ""
	if p.migration {
		mig = fmt.Sprintf(" and DisableUpgradeMigration to %t", p.migWas)
	}
	report(nil, fmt.Sprintf("autopilot's CleanupDeadServers restored to %t%s, the operator's values before the run", p.was, mig))
	return nil
}
