package planner

import (
	"errors"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner/plannertest"
)

func TestParseSpellingSharedTable(t *testing.T) {
	for _, tc := range plannertest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			v, err := parseSpelling(tc.In)
			if tc.Accepted() {
				if err != nil {
					t.Fatalf("Parse(%q) = %v, want %s", tc.In, err, tc.Canonical)
				}
				if got := v.String(); got != tc.Canonical {
					t.Errorf("Parse(%q).String() = %q, want %q", tc.In, got, tc.Canonical)
				}
				if v.Enterprise() != tc.Enterprise {
					t.Errorf("Parse(%q).Enterprise() = %v, want %v", tc.In, v.Enterprise(), tc.Enterprise)
				}
				return
			}
			var ve *spellingError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse(%q) = %v, %v; want a *spellingError", tc.In, v, err)
			}
			if !strings.Contains(err.Error(), tc.Fix) {
				t.Errorf("Parse(%q) error %q does not name the fix %q", tc.In, err, tc.Fix)
			}
			if ve.Problem == "" || ve.Fix == "" {
				t.Errorf("Parse(%q) error has an empty problem or fix: %+v", tc.In, ve)
			}
		})
	}
}

func TestSameVersionPairsOfTheSharedTable(t *testing.T) {
	for _, p := range plannertest.Pairs {
		if got := SameVersion(p.A, p.B); got != p.Same {
			t.Errorf("SameVersion(%q, %q) = %v, want %v", p.A, p.B, got, p.Same)
		}
	}
	if SameVersion("1.13.09", "1.13.9") {
		t.Error("SameVersion accepted a refused spelling")
	}
}

// FuzzParseSpelling checks the invariants: what is accepted prints back exactly as
// given (there is one spelling per version), holds nothing a shell or a path
// would interpret, and a suggested fix is itself accepted.
func FuzzParseSpelling(f *testing.F) {
	for _, tc := range plannertest.Cases {
		f.Add(tc.In)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseSpelling(s)
		if err == nil {
			if v.String() != s {
				t.Fatalf("Parse(%q) prints as %q: two spellings of one version", s, v.String())
			}
			if strings.ContainsAny(s, " \t\r\n;&|$`'\"\\/<>(){}*?![]~#%=") || strings.HasPrefix(s, "-") || strings.HasPrefix(s, ".") {
				t.Fatalf("accepted %q, which holds a shell or path metacharacter", s)
			}
			return
		}
		var ve *spellingError
		if !errors.As(err, &ve) {
			t.Fatalf("Parse(%q) error %T is not a *spellingError", s, err)
		}
		if c, ok := strings.CutPrefix(ve.Fix, "write it as "); ok {
			if _, err := parseSpelling(c); err != nil {
				t.Fatalf("Parse(%q) suggests %q, which is refused: %v", s, c, err)
			}
		}
	})
}
