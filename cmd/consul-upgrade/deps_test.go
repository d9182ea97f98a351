package main

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The command is built on the public API: its non-test files import no
// internal package of this module and not consul/api (upgrade is the only
// place for it).
func TestTheCommandUsesOnlyThePublicAPI(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(path, "/internal/") || strings.HasPrefix(path, "github.com/hashicorp/consul/") {
				t.Errorf("%s imports %s; the command may use only the module's public packages", f, path)
			}
		}
	}
	if checked < 5 {
		t.Errorf("checked %d files; the glob found too few", checked)
	}
}
