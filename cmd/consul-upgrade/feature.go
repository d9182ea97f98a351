package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// featureFlag collects every -feature NAME=VALUE: a feature of the cluster
// that discovery cannot observe (the features-not-observed finding lists
// them by NAME), declared by the operator. It becomes an
// upgrade.FeatureConfig, which wins over observation in plan, apply and
// status alike.
type featureFlag struct{ vals []string }

func (f *featureFlag) String() string {
	if f == nil {
		return ""
	}
	return strings.Join(f.vals, " ")
}

func (f *featureFlag) Set(v string) error {
	f.vals = append(f.vals, v)
	return nil
}

// addFeatureFlag adds -feature to fs.
func addFeatureFlag(fs *flag.FlagSet) *featureFlag {
	f := &featureFlag{}
	fs.Var(f, "feature", "declare a feature discovery cannot observe, as `NAME=VALUE`; repeat for each. NAME as the features-not-observed finding lists it ("+strings.Join(featureNames(), ", ")+"); VALUE yes or no (also true/false, enabled/disabled, on/off), allow or deny for ACLDefaultPolicy, 1-3 for RaftProtocol, boltdb or wal for RaftLogStore. Give plan and apply the same ones")
	return f
}

// featureSetter sets one field of a FeatureConfig from a value.
type featureSetter struct {
	name string // as planner.FeatureGap.Feature names it
	set  func(fc *upgrade.FeatureConfig, v string) error
}

func usageSetter(dst func(fc *upgrade.FeatureConfig) *planner.Usage) func(*upgrade.FeatureConfig, string) error {
	return func(fc *upgrade.FeatureConfig, v string) error {
		switch strings.ToLower(v) {
		case "yes", "true", "enabled", "on", "used":
			*dst(fc) = planner.Yes
		case "no", "false", "disabled", "off", "unused":
			*dst(fc) = planner.No
		default:
			return fmt.Errorf("%q is not yes or no", v)
		}
		return nil
	}
}

var featureSetters = []featureSetter{
	{"ACLs", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.ACLs })},
	{"ACLDefaultPolicy", func(fc *upgrade.FeatureConfig, v string) error {
		if v = strings.ToLower(v); v != "allow" && v != "deny" {
			return fmt.Errorf("%q is not allow or deny", v)
		}
		fc.ACLDefaultPolicy = v
		return nil
	}},
	{"LegacyACLs", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.LegacyACLs })},
	{"ACLReplication", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.ACLReplication })},
	{"Connect", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.Connect })},
	{"Envoy", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.Envoy })},
	{"AgentlessMesh", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.AgentlessMesh })},
	{"TerminatingGateways", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.TerminatingGateways })},
	{"RaftProtocol", func(fc *upgrade.FeatureConfig, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3 {
			return fmt.Errorf("%q is not 1, 2 or 3", v)
		}
		fc.RaftProtocol = n
		return nil
	}},
	{"RaftLogStore", func(fc *upgrade.FeatureConfig, v string) error {
		if v = strings.ToLower(v); v != "boltdb" && v != "wal" {
			return fmt.Errorf("%q is not boltdb or wal", v)
		}
		fc.RaftLogStore = v
		return nil
	}},
	{"TLS.CertMaterial", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.CertMaterial })},
	{"TLS.HTTPSPort", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.HTTPSPort })},
	{"TLS.GRPCTLS", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.GRPCTLS })},
	{"TLS.AutoEncrypt", usageSetter(func(fc *upgrade.FeatureConfig) *planner.Usage { return &fc.AutoEncrypt })},
}

func featureNames() []string {
	out := make([]string, len(featureSetters))
	for i, s := range featureSetters {
		out[i] = s.name
	}
	return out
}

// featureKey folds a feature name for matching: case, dots, dashes and
// underscores ignored, "TLS." optional ("Connect", "connect",
// "tls.grpctls" and "GRPCTLS" all match), and "acl" is "ACLs".
func featureKey(name string) string {
	k := strings.ToLower(strings.NewReplacer(".", "", "-", "", "_", "").Replace(strings.TrimSpace(name)))
	k = strings.TrimPrefix(k, "tls")
	if k == "acl" {
		k = "acls"
	}
	return k
}

// config parses every -feature value into a FeatureConfig. A value naming
// no known feature, a bad value or a feature given twice is a usage error
// naming it and what is accepted.
func (f *featureFlag) config() (upgrade.FeatureConfig, error) {
	var fc upgrade.FeatureConfig
	if f == nil {
		return fc, nil
	}
	given := map[string]string{}
	for _, v := range f.vals {
		name, value, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(name) == "" || strings.TrimSpace(value) == "" {
			return fc, usagef("-feature %q is not NAME=VALUE; write e.g. -feature Connect=no (names: %s)", v, strings.Join(featureNames(), ", "))
		}
		i := slices.IndexFunc(featureSetters, func(s featureSetter) bool { return featureKey(s.name) == featureKey(name) })
		if i < 0 {
			return fc, usagef("-feature %q: %q is not a feature that can be declared; the names are %s (as the features-not-observed finding lists them)", v, name, strings.Join(featureNames(), ", "))
		}
		s := featureSetters[i]
		if first, dup := given[s.name]; dup {
			return fc, usagef("-feature %s is given twice (%q and %q); give each feature once", s.name, first, v)
		}
		given[s.name] = v
		if err := s.set(&fc, strings.TrimSpace(value)); err != nil {
			return fc, usagef("-feature %q: %v for %s", v, err, s.name)
		}
	}
	return fc, nil
}
