// Package plannertest holds the planner's shared test tables: the version
// spellings that every part of the module must judge alike. The planner's
// parser (ParseVersion, SameVersion, Check), the upgrade runner
// (Config.Validate) and the transports (ValidateVersion, ValidateRequest)
// all run it, and a transport written elsewhere can run it too. A case
// accepted here is accepted by all of them, a case refused here is refused
// by all of them, and with the same fix. It imports only the standard
// library.
package plannertest

import "strings"

// Case is one spelling and its verdict.
type Case struct {
	Name string // the policy, as a sentence
	In   string // the spelling as given
	// Canonical is what the version prints as when accepted; "" when In is
	// refused.
	Canonical string
	// Fix is a fragment every refusal's text must hold (the fix it names);
	// "" when In is accepted.
	Fix string
	// Enterprise is true for an accepted Consul Enterprise build (+ent).
	Enterprise bool
}

// Accepted reports whether the case is accepted.
func (c Case) Accepted() bool { return c.Canonical != "" }

// Cases is the shared table.
var Cases = []Case{
	{Name: "a release is accepted as written", In: "1.13.9", Canonical: "1.13.9"},
	{Name: "a 0.x release is accepted", In: "0.5.2", Canonical: "0.5.2"},
	{Name: "zero parts are numbers, not leading zeros", In: "1.0.0", Canonical: "1.0.0"},
	{Name: "a pre-release is accepted", In: "1.14.0-rc1", Canonical: "1.14.0-rc1"},
	{Name: "a dev pre-release is accepted", In: "1.17.0-dev", Canonical: "1.17.0-dev"},
	{Name: "Enterprise build metadata is accepted and marks Enterprise", In: "1.10.12+ent", Canonical: "1.10.12+ent", Enterprise: true},
	{Name: "an Enterprise FIPS build marks Enterprise", In: "1.15.2+ent.fips1402", Canonical: "1.15.2+ent.fips1402", Enterprise: true},
	{Name: "a pre-release with build metadata is accepted", In: "1.14.0-rc1+ent", Canonical: "1.14.0-rc1+ent", Enterprise: true},
	{Name: "other build metadata is accepted but is not Enterprise", In: "1.13.9+custom.build-7", Canonical: "1.13.9+custom.build-7"},

	{Name: "a leading zero in the patch is refused with the canonical spelling", In: "1.13.09", Fix: "write it as 1.13.9"},
	{Name: "a leading zero in the minor is refused with the canonical spelling", In: "1.013.9", Fix: "write it as 1.13.9"},
	{Name: "a leading zero in the major is refused with the canonical spelling", In: "01.13.9", Fix: "write it as 1.13.9"},
	{Name: "a leading zero in a numeric pre-release is refused", In: "1.14.0-01", Fix: "write it as 1.14.0-1"},
	{Name: "a v prefix is refused with the canonical spelling", In: "v1.13.9", Fix: "write it as 1.13.9"},
	{Name: "a capital V prefix is refused with the canonical spelling", In: "V1.13.9+ent", Fix: "write it as 1.13.9+ent"},
	{Name: "a leading space is refused with the canonical spelling", In: " 1.13.9", Fix: "write it as 1.13.9"},
	{Name: "a trailing newline is refused with the canonical spelling", In: "1.13.9\n", Fix: "write it as 1.13.9"},
	{Name: "a space inside is refused", In: "1.13. 9", Fix: "name the exact release"},
	{Name: "a missing patch is refused", In: "1.13", Fix: "three parts X.Y.Z"},
	{Name: "a lone major is refused", In: "1", Fix: "three parts X.Y.Z"},
	{Name: "a wildcard is refused", In: "1.13.x", Fix: "name the exact release"},
	{Name: "four parts are refused", In: "1.13.9.1", Fix: "three parts X.Y.Z"},
	{Name: "an empty version is refused", In: "", Fix: "name the exact release"},
	{Name: "latest is refused", In: "latest", Fix: "name the exact release"},
	{Name: "a command separator is refused", In: "1.13.9;reboot", Fix: "name the exact release"},
	{Name: "command substitution is refused", In: "1.13.9$(reboot)", Fix: "name the exact release"},
	{Name: "backquotes are refused", In: "1.13.9`id`", Fix: "name the exact release"},
	{Name: "a path is refused", In: "../1.13.9", Fix: "name the exact release"},
	{Name: "a tilde is refused", In: "1.13.9~rc1", Fix: "name the exact release"},
	{Name: "an empty pre-release is refused", In: "1.13.9-", Fix: "name the exact release"},
	{Name: "empty build metadata is refused", In: "1.13.9+", Fix: "name the exact release"},
	{Name: "an empty build identifier is refused", In: "1.13.9+ent..x", Fix: "name the exact release"},
	{Name: "a second plus is refused", In: "1.13.9+ent+ent", Fix: "name the exact release"},
	{Name: "a part beyond 32 bits is refused", In: "1.99999999999.0", Fix: "name the exact release"},
	{Name: "a version longer than 64 bytes is refused", In: "1.13.9+" + strings.Repeat("a", 58), Fix: "name the exact release"},
}

// Pairs are version pairs and whether they are the same release (build
// metadata ignored). Every comparison in the module (the planner's ranks,
// the upgrade gate, the transports' checks) must agree with it.
var Pairs = []struct {
	A, B string
	Same bool
}{
	{"1.10.12+ent", "1.10.12", true},
	{"1.10.12", "1.10.12+ent", true},
	{"1.15.2+ent.fips1402", "1.15.2+ent", true},
	{"1.14.0-rc1+ent", "1.14.0-rc1", true},
	{"1.13.9", "1.13.9", true},
	{"1.14.0-rc1", "1.14.0", false},
	{"1.10.12+ent", "1.10.11+ent", false},
	{"1.13.9", "1.13.10", false},
}
