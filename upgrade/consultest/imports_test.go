package consultest

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestConsultestDoesNotImportUpgrade keeps the import graph acyclic: the
// upgrade package's own tests import consultest, so consultest may not import
// upgrade.
func TestConsultestDoesNotImportUpgrade(t *testing.T) {
	const forbidden = "github.com/seed-e5e14ead/consul-upgrade/upgrade"
	files, err := filepath.Glob("*.go")
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
			t.Fatalf("%s: %v", name, err)
		}
		checked++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == forbidden {
				t.Errorf("%s imports %s; the upgrade package's tests import consultest, so this would be a cycle", name, p)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no non-test Go files found")
	}
}
