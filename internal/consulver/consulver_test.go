package consulver_test

import (
	"errors"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/internal/consulver"
	"github.com/seed-e5e14ead/consul-upgrade/internal/consulver/consulvertest"
)

func TestParseSharedTable(t *testing.T) {
	for _, tc := range consulvertest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			v, err := consulver.Parse(tc.In)
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
			var ve *consulver.Error
			if !errors.As(err, &ve) {
				t.Fatalf("Parse(%q) = %v, %v; want a *consulver.Error", tc.In, v, err)
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

func TestSamePairs(t *testing.T) {
	for _, p := range consulvertest.Pairs {
		if got := consulver.Same(p.A, p.B); got != p.Same {
			t.Errorf("Same(%q, %q) = %v, want %v", p.A, p.B, got, p.Same)
		}
	}
	if consulver.Same("1.13.09", "1.13.9") {
		t.Error("Same accepted a refused spelling")
	}
}

// FuzzParse checks the invariants: what is accepted prints back exactly as
// given (there is one spelling per version), holds nothing a shell or a path
// would interpret, and a suggested fix is itself accepted.
func FuzzParse(f *testing.F) {
	for _, tc := range consulvertest.Cases {
		f.Add(tc.In)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := consulver.Parse(s)
		if err == nil {
			if v.String() != s {
				t.Fatalf("Parse(%q) prints as %q: two spellings of one version", s, v.String())
			}
			if strings.ContainsAny(s, " \t\r\n;&|$`'\"\\/<>(){}*?![]~#%=") || strings.HasPrefix(s, "-") || strings.HasPrefix(s, ".") {
				t.Fatalf("accepted %q, which holds a shell or path metacharacter", s)
			}
			return
		}
		var ve *consulver.Error
		if !errors.As(err, &ve) {
			t.Fatalf("Parse(%q) error %T is not a *consulver.Error", s, err)
		}
		if c, ok := strings.CutPrefix(ve.Fix, "write it as "); ok {
			if _, err := consulver.Parse(c); err != nil {
				t.Fatalf("Parse(%q) suggests %q, which is refused: %v", s, c, err)
			}
		}
	})
}

// TestImportsOnlyStandardLibrary keeps the package importable by the pure
// planner and by the dependency-free transport contract.
func TestImportsOnlyStandardLibrary(t *testing.T) {
	for _, dir := range []string{".", "consulvertest"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		checked := 0
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				first := strings.SplitN(p, "/", 2)[0]
				if strings.Contains(first, ".") {
					t.Errorf("%s imports %s: only the standard library is allowed", name, p)
				}
				switch p {
				case "os", "os/exec", "net", "net/http", "log", "log/slog", "time", "io/fs", "syscall", "testing":
					t.Errorf("%s imports %s: the planner imports this package and must stay pure", name, p)
				}
			}
		}
		if checked == 0 {
			t.Fatalf("no source files in %s", dir)
		}
	}
}
