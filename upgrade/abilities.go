package upgrade

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// abilityNames names the optional interfaces in messages.
var abilityNames = []struct {
	a    ability
	name string
}{
	{abilityEra, "upgrade.EraReader"},
	{abilityFeatures, "upgrade.FeatureReader"},
	{abilityLock, "upgrade.Locker"},
	{abilityKV, "upgrade.KVStore"},
}

// missingAbilities names the optional interfaces of want that c does not
// implement ("" when it has them all).
func missingAbilities(c Consul, want ability) string {
	have := abilitiesOf(c)
	var out []string
	for _, n := range abilityNames {
		if want&n.a != 0 && have&n.a == 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, " and ")
}

// noteAbilities reports, at the start of a run, each optional interface a
// Consul of the run lacks that the run would use, and what it does without
// it (EventAbilityMissing). Validate has refused a Consul without Locker
// and KVStore unless NoLock; EraReader is only needed before 0.7.1, where
// the first observation (or the backup of 0.7.0) fails with
// ErrNoEraReader before anything is touched.
func (r *runner) noteAbilities(ctx context.Context) {
	fix := "wrap a Consul with upgrade.Intercept, which keeps every ability of the Consul it wraps"
	if missing := missingAbilities(r.cfg.Consul, abilityKV); missing != "" {
		r.emit(ctx, Event{Kind: EventAbilityMissing, Detail: fmt.Sprintf("Config.Consul (%T) does not implement %s: with NoLock the run takes no lock, and it neither reads nor writes a backup record, so it takes a backup before each hop even when an earlier run recorded one; %s", r.cfg.Consul, missing, fix)})
	}
	consuls := []Consul{r.cfg.Consul}
	fields := []string{"Config.Consul"}
	for _, dc := range slices.Sorted(maps.Keys(r.cfg.Datacenters)) {
		consuls = append(consuls, r.cfg.Datacenters[dc])
		fields = append(fields, fmt.Sprintf("Config.Datacenters[%q]", dc))
	}
	for i, c := range consuls {
		field := fields[i]
		if missing := missingAbilities(c, abilityFeatures); missing != "" {
			r.emit(ctx, Event{Kind: EventAbilityMissing, Detail: fmt.Sprintf("%s (%T) does not implement %s: ACL tokens and replication, config entries, intentions and zones are not observed (listed in Features.Unobserved, which the planner reports as features-not-observed); declare them in Config.Features or %s", field, c, missing, fix)})
		}
	}
}
