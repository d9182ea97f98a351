package planner

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forbiddenStd are standard packages the pure planner must not import: no
// IO, no clock, no logging, no processes.
var forbiddenStd = map[string]bool{
	"os": true, "os/exec": true, "net": true, "net/http": true, "log": true,
	"log/slog": true, "time": true, "io/fs": true, "syscall": true,
}

// allowedModules are the only non-standard imports: go-version.
var allowedModules = map[string]bool{
	"github.com/hashicorp/go-version": true,
}

// importProblem says why the planner may not import path ("" if it may).
// Standard packages are those whose first path element has no dot.
func importProblem(path string) string {
	std := !strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
	switch {
	case std && forbiddenStd[path]:
		return "the planner must stay pure (no IO, clock, logging or processes)"
	case !std && !allowedModules[path]:
		return "only the standard library and github.com/hashicorp/go-version are allowed"
	}
	return ""
}

// TestPlannerImportsOnlyPureDependencies reads the imports of every
// non-test file of this package (go/parser, no go list) and fails on an
// import that would let the planner do IO, read the clock or log.
func TestPlannerImportsOnlyPureDependencies(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checked++
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatalf("%s: bad import %s", name, imp.Path.Value)
			}
			if problem := importProblem(path); problem != "" {
				t.Errorf("%s imports %q: %s", name, path, problem)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source files found: run the test from the package directory")
	}
}

// TestForbiddenImportIsCaught proves the check can fail: a source text
// importing os/exec is flagged by the same classification.
func TestForbiddenImportIsCaught(t *testing.T) {
	src := "package x\nimport (\n\t\"os/exec\"\n\t\"github.com/hashicorp/consul/api\"\n)\n"
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if importProblem(path) != "" {
			bad++
		}
	}
	if bad != 2 {
		t.Fatalf("flagged %d of 2 forbidden imports", bad)
	}
}
