package planner

import (
	"errors"
	"testing"
)

// Next's doc names the error of a version that does not parse: the
// bad-version refusal, and the parser's *VersionError only once that
// finding is waived (the doc used to promise a *VersionError).
func TestNextRefusesAVersionThatDoesNotParseAndNamesTheParserOnlyWhenWaived(t *testing.T) {
	c := baseCluster("1.12.9")
	c.Servers[1].Version = "v1.12.9"
	_, err := Next(c, "1.13.9", Policy{})
	var re *RefusedError
	var ve *VersionError
	if !errors.As(err, &re) || errors.As(err, &ve) || len(re.Findings) != 1 || re.Findings[0].Rule != PrecheckBadVersion {
		t.Fatalf("Next = %v (%T), want a *RefusedError by bad-version alone", err, err)
	}
	_, err = Next(c, "1.13.9", Policy{Waive: []RuleID{PrecheckBadVersion}})
	if !errors.As(err, &ve) || ve.Node != c.Servers[1].Name {
		t.Fatalf("Next with bad-version waived = %v (%T), want a *VersionError naming %s", err, err, c.Servers[1].Name)
	}
	c.Servers[1].Version = "1.12.9"
	if _, err := Next(c, "latest", Policy{}); !errors.As(err, &re) || errors.As(err, &ve) {
		t.Fatalf("Next to target latest = %v (%T), want a *RefusedError", err, err)
	}
}
