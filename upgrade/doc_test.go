package upgrade

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strings"
	"testing"
)

// packageDoc parses this package's source (tests excepted).
func packageDoc(t *testing.T) (*doc.Package, map[string]bool) {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			f, err := parser.ParseFile(fset, n, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	unexported := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && !d.Name.IsExported() {
					unexported[d.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							unexported[s.Name.Name] = true
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if !n.IsExported() {
								unexported[n.Name] = true
							}
						}
					}
				}
			}
		}
	}
	p, err := doc.NewFromFiles(fset, files, "github.com/seed-e5e14ead/consul-upgrade/upgrade")
	if err != nil {
		t.Fatal(err)
	}
	return p, unexported
}

// The package doc's table (# Errors) names every error type and sentinel
// of the package, so a program knows what to do with each.
func TestTheErrorTableNamesEveryErrorOfThePackage(t *testing.T) {
	d, _ := packageDoc(t)
	i := strings.Index(d.Doc, "# Errors")
	if i < 0 {
		t.Fatal("the package doc has no # Errors section")
	}
	table := d.Doc[i:]
	if j := strings.Index(table[1:], "\n# "); j >= 0 {
		table = table[:j+1]
	}
	for _, ty := range d.Types {
		if strings.HasSuffix(ty.Name, "Error") && !strings.Contains(table, "*"+ty.Name+" ") && !strings.Contains(table, "*"+ty.Name+",") && !strings.Contains(table, "*"+ty.Name+")") {
			t.Errorf("the error table does not name *%s", ty.Name)
		}
	}
	for _, v := range d.Vars {
		for _, name := range v.Names {
			if strings.HasPrefix(name, "Err") && !regexp.MustCompile(`\b`+name+`\b`).MatchString(table) {
				t.Errorf("the error table does not name %s", name)
			}
		}
	}
}

// The docs of what the package exports name only what a caller can use:
// no unexported identifier of the package (a camel-case one, which cannot
// be an English word) and no source file.
func TestExportedDocsNameNoUnexportedIdentifier(t *testing.T) {
	d, unexported := packageDoc(t)
	word := regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*(\.go\b)?`)
	check := func(where, text string) {
		for _, w := range word.FindAllString(text, -1) {
			if strings.HasSuffix(w, ".go") || unexported[w] && strings.ContainsAny(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Errorf("the doc of %s names %s", where, w)
			}
		}
	}
	fields := func(where string, spec ast.Spec) {
		ts, ok := spec.(*ast.TypeSpec)
		if !ok {
			return
		}
		var list *ast.FieldList
		switch tt := ts.Type.(type) {
		case *ast.StructType:
			list = tt.Fields
		case *ast.InterfaceType:
			list = tt.Methods
		default:
			return
		}
		for _, f := range list.List {
			if len(f.Names) > 0 && f.Names[0].IsExported() {
				check(where+"."+f.Names[0].Name, f.Doc.Text()+f.Comment.Text())
			}
		}
	}
	check("package upgrade", d.Doc)
	for _, f := range d.Funcs {
		check(f.Name, f.Doc)
	}
	for _, v := range append(d.Consts, d.Vars...) {
		check(strings.Join(v.Names, ", "), v.Doc)
	}
	for _, ty := range d.Types {
		check(ty.Name, ty.Doc)
		fields(ty.Name, ty.Decl.Specs[0])
		for _, f := range append(ty.Funcs, ty.Methods...) {
			check(ty.Name+"."+f.Name, f.Doc)
		}
		for _, v := range append(ty.Consts, ty.Vars...) {
			check(strings.Join(v.Names, ", "), v.Doc)
		}
	}
}
