package planner

// This file is the one strict parser of Consul version strings that the
// planner, the upgrade runner and the transports share (ParseVersion,
// SameVersion and transport.ValidateVersion all call it), so that a version
// one of them accepts is never refused by another halfway through a run. It
// uses only the standard library.
//
// The only accepted spelling is the canonical one, the way Consul's release
// pages, serf build tags and download URLs write a version:
//
//	X.Y.Z[-PRE][+BUILD]   e.g. 1.13.9, 1.14.0-rc1, 1.10.12+ent, 1.15.2+ent.fips1402
//
// X, Y and Z are decimal numbers without leading zeros; PRE and BUILD are
// dot-separated identifiers of letters, digits and '-' (a numeric PRE
// identifier without leading zeros). Everything else is refused, with the
// canonical spelling as the fix when one is evident: a "v" prefix
// (v1.13.9), surrounding spaces (a trailing newline read from a file),
// leading zeros (1.13.09). Nothing is canonicalised silently: a version is
// also a file name, a URL path element and an argv element to a transport,
// and two spellings of one release would name two artifacts.

import (
	"strconv"
	"strings"
)

// MaxVersionLen is the longest version string ParseVersion accepts.
const MaxVersionLen = 64

// consulVersion is a parsed Consul version. Its String is the canonical spelling.
type consulVersion struct {
	Major, Minor, Patch int
	Pre                 string // pre-release without the '-' ("rc1"), "" for a release
	Build               string // build metadata without the '+' ("ent"), "" for none
}

// String returns the canonical spelling, e.g. "1.14.0-rc1+ent".
func (v consulVersion) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(v.Major))
	b.WriteByte('.')
	b.WriteString(strconv.Itoa(v.Minor))
	b.WriteByte('.')
	b.WriteString(strconv.Itoa(v.Patch))
	if v.Pre != "" {
		b.WriteByte('-')
		b.WriteString(v.Pre)
	}
	if v.Build != "" {
		b.WriteByte('+')
		b.WriteString(v.Build)
	}
	return b.String()
}

// Enterprise reports whether the build metadata marks a Consul Enterprise
// build: its first identifier is "ent" (1.10.12+ent, 1.15.2+ent.fips1402).
func (v consulVersion) Enterprise() bool {
	first, _, _ := strings.Cut(v.Build, ".")
	return first == "ent"
}

// SameRelease reports whether v and o are the same release, ignoring build
// metadata: 1.10.12+ent and 1.10.12 are the same release, 1.14.0-rc1 and
// 1.14.0 are not.
func (v consulVersion) SameRelease(o consulVersion) bool {
	return v.Major == o.Major && v.Minor == o.Minor && v.Patch == o.Patch && v.Pre == o.Pre
}

// spellingError is why a string is not a version. Its text names the problem and the
// fix but not the value: every caller wraps it in an error of its own that
// names the value (and the node or field it came from).
type spellingError struct {
	Problem string // what is wrong, e.g. `part "09" has a leading zero`
	Fix     string // what to write instead, e.g. "write it as 1.13.9"
}

func (e *spellingError) Error() string { return e.Problem + "; " + e.Fix }

// parseSpelling parses a version in its canonical spelling, or returns a
// *spellingError.
func parseSpelling(s string) (consulVersion, error) {
	v, p := spellingProblem(s)
	if p == "" {
		return v, nil
	}
	return consulVersion{}, &spellingError{Problem: p, Fix: spellingFix(s, p)}
}

// spellingProblem returns the version or the problem ("" when there is
// none).
func spellingProblem(s string) (consulVersion, string) {
	var v consulVersion
	switch {
	case s == "":
		return v, "is empty"
	case len(s) > MaxVersionLen:
		return v, "is " + strconv.Itoa(len(s)) + " bytes long (limit " + strconv.Itoa(MaxVersionLen) + ")"
	}
	if t := strings.TrimSpace(s); t != s && t != "" {
		return v, "has whitespace around it"
	}
	if (s[0] == 'v' || s[0] == 'V') && len(s) > 1 && s[1] >= '0' && s[1] <= '9' {
		return v, "has a " + strconv.Quote(s[:1]) + " prefix"
	}
	for i := 0; i < len(s); i++ {
		if !spellingAllowed(s[i]) {
			r := s[i:]
			if len(r) > 1 {
				r = r[:1]
			}
			return v, "holds " + strconv.Quote(r) + " at byte " + strconv.Itoa(i) + " (a version holds only digits, letters, '.', '-' and '+')"
		}
	}
	core, build, hasBuild := strings.Cut(s, "+")
	core, pre, hasPre := strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if strings.Trim(core, "0123456789") == core {
		return v, "is not a version number"
	}
	if len(parts) != 3 {
		return v, "has " + strconv.Itoa(len(parts)) + " numeric part(s) " + strconv.Quote(core) + ", want 3 (X.Y.Z)"
	}
	var nums [3]int
	for i, p := range parts {
		switch {
		case p == "" || strings.Trim(p, "0123456789") != "":
			return v, "part " + strconv.Quote(p) + " is not a number"
		case len(p) > 1 && p[0] == '0':
			return v, "part " + strconv.Quote(p) + " has a leading zero"
		}
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			return v, "part " + strconv.Quote(p) + " is out of range"
		}
		nums[i] = int(n)
	}
	if hasPre {
		if p := spellingIdentifiers("pre-release", pre, true); p != "" {
			return v, p
		}
	}
	if hasBuild {
		if p := spellingIdentifiers("build metadata", build, false); p != "" {
			return v, p
		}
	}
	return consulVersion{Major: nums[0], Minor: nums[1], Patch: nums[2], Pre: pre, Build: build}, ""
}

// spellingIdentifiers checks the dot-separated identifiers of a pre-release or build
// suffix (s without its '-' or '+'); '+' is already split off, so a second
// '+' shows up here.
func spellingIdentifiers(what, s string, numericNoZero bool) string {
	for _, id := range strings.Split(s, ".") {
		switch {
		case id == "":
			return "has an empty " + what + " identifier in " + strconv.Quote(s)
		case strings.Contains(id, "+"):
			return "has a second '+' in its " + what + " " + strconv.Quote(s)
		case numericNoZero && len(id) > 1 && id[0] == '0' && strings.Trim(id, "0123456789") == "":
			return "has a leading zero in the numeric " + what + " identifier " + strconv.Quote(id)
		}
	}
	return ""
}

func spellingAllowed(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-' || c == '+'
}

// spellingFix says what to write instead of s: its canonical spelling when removing
// surrounding spaces, a "v" prefix and leading zeros yields one, else a
// pointer to the form.
func spellingFix(s, problem string) string {
	if c, ok := spellingGuess(s); ok && c != s {
		return "write it as " + c
	}
	if strings.HasPrefix(problem, "has ") && strings.Contains(problem, "numeric part(s)") {
		return "name the exact release with three parts X.Y.Z, e.g. 1.13.9 (not 1.13 or 1.13.x)"
	}
	return "name the exact release as X.Y.Z, optionally -pre or +build (e.g. 1.13.9, 1.14.0-rc1, 1.10.12+ent)"
}

// spellingGuess canonicalises the spellings whose intent is evident. It is used only
// to word the fix: parseSpelling never accepts them.
func spellingGuess(s string) (string, bool) {
	t := strings.TrimSpace(s)
	if len(t) > 1 && (t[0] == 'v' || t[0] == 'V') && t[1] >= '0' && t[1] <= '9' {
		t = t[1:]
	}
	core, rest := t, ""
	if i := strings.IndexAny(t, "-+"); i >= 0 {
		core, rest = t[:i], t[i:]
	}
	parts := strings.Split(core, ".")
	for i, p := range parts {
		if len(p) > 1 && strings.Trim(p, "0123456789") == "" {
			parts[i] = strings.TrimLeft(p, "0")
			if parts[i] == "" {
				parts[i] = "0"
			}
		}
	}
	if strings.HasPrefix(rest, "-") {
		pre, build, hasBuild := strings.Cut(rest[1:], "+")
		ids := strings.Split(pre, ".")
		for i, id := range ids {
			if len(id) > 1 && strings.Trim(id, "0123456789") == "" {
				ids[i] = strings.TrimLeft(id, "0")
				if ids[i] == "" {
					ids[i] = "0"
				}
			}
		}
		rest = "-" + strings.Join(ids, ".")
		if hasBuild {
			rest += "+" + build
		}
	}
	c := strings.Join(parts, ".") + rest
	if _, p := spellingProblem(c); p != "" {
		return "", false
	}
	return c, true
}
