package consulupgrade

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The layers of the module, low to high: planner → transport → upgrade →
// cmd, examples. internal/ serves any of them and imports none of them;
// nothing in this module imports tests/ (a module of its own). planner is
// pure: no IO, no clock, no logging, no processes. consul/api appears only
// in upgrade (and its simulator). The command and the examples use only the
// public packages. The table below is the one place these rules are
// written; each row says what the non-test files of one package may
// import. A package that is not in the table fails the test until it is
// placed in a layer.
//
// Standard packages are open to every package except the pure ones, which
// may import only pureStd.
var layers = []layer{
	{pkg: ".", pure: true},
	{pkg: "planner", pure: true, deps: []string{goVersion}},
	{pkg: "planner/plannertest", pure: true},

	{pkg: "transport", module: []string{"planner"}},
	{pkg: "transport/internal/argv"},
	{pkg: "transport/exec", module: []string{"planner", "transport", "transport/internal/argv"}},
	{pkg: "transport/local", module: []string{"planner", "transport"}},
	{pkg: "transport/ssh", module: []string{"planner", "transport", "transport/internal/argv"}, deps: xcryptoSSH},
	{pkg: "transport/transporttest", module: []string{"planner", "transport"}},

	{pkg: "internal/proc"},
	{pkg: "internal/traffic", deps: []string{porcupine}},

	{pkg: "upgrade", module: []string{"planner", "transport"}, deps: []string{consulAPI, goVersion, backoff}},
	// Not upgrade: upgrade's own tests import the simulator.
	{pkg: "upgrade/consultest", module: []string{"transport", "transport/transporttest"}, deps: []string{consulAPI, goVersion}},
	{pkg: "upgrade/probe", deps: []string{consulAPI, goVersion}},
	{pkg: "upgrade/metrics", module: []string{"planner", "transport", "upgrade"}, deps: prometheus},
	{pkg: "upgrade/rehearsal", module: []string{"planner", "transport", "transport/local", "upgrade", "upgrade/probe", "internal/proc", "internal/traffic"}, deps: []string{porcupine, goVersion}},

	{pkg: "cmd/consul-upgrade", publicOnly: true},
	{pkg: "examples/local-upgrade", publicOnly: true},
	{pkg: "examples/plan", publicOnly: true},
	{pkg: "examples/ssh", publicOnly: true},
}

const (
	modulePath = "github.com/seed-e5e14ead/consul-upgrade"
	goVersion  = "github.com/hashicorp/go-version"
	consulAPI  = "github.com/hashicorp/consul/api"
	backoff    = "github.com/cenkalti/backoff/v4"
	porcupine  = "github.com/anishathalye/porcupine"
)

var prometheus = []string{"github.com/prometheus/client_golang/prometheus", "github.com/prometheus/client_golang/prometheus/collectors", "github.com/prometheus/client_golang/prometheus/promhttp"}

var xcryptoSSH = []string{"golang.org/x/crypto/ssh", "golang.org/x/crypto/ssh/agent", "golang.org/x/crypto/ssh/knownhosts"}

// pureStd is the standard library a pure package may use: values in,
// values out (no os, io/fs, net, os/exec, syscall, log, time: no IO, no
// processes, no logging, no clock).
var pureStd = []string{
	"bytes", "cmp", "encoding/json", "errors", "fmt", "hash/maphash", "iter", "maps", "math",
	"math/bits", "slices", "sort", "strconv", "strings", "text/tabwriter", "unicode", "unicode/utf8",
}

// layer is one row of the table.
type layer struct {
	pkg  string // the package's path in the module ("." is the root)
	pure bool   // only pureStd from the standard library
	// module are the packages of this module it may import; deps the
	// packages of other modules (exact import paths).
	module, deps []string
	// publicOnly: any public package of this module (none under an
	// internal/ directory, no command or example) and no other module.
	publicOnly bool
}

// listed is what go list says of one package.
type listed struct {
	ImportPath                         string
	Imports, TestImports, XTestImports []string
	Error                              *struct{ Err string }
}

// goList lists the packages of the module (go list -json ./..., run in the
// module's root, where this test runs).
func goList(t *testing.T) []listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports,Error", "./...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < len(layers) {
		t.Fatalf("go list found %d packages, fewer than the %d rows of the layer table: run the test from the module's root", len(pkgs), len(layers))
	}
	return pkgs
}

// rel is path relative to the module ("." for the root), and whether it is
// in the module at all.
func rel(path string) (string, bool) {
	if path == modulePath {
		return ".", true
	}
	r, ok := strings.CutPrefix(path, modulePath+"/")
	return r, ok
}

func isStd(path string) bool { return !strings.Contains(strings.SplitN(path, "/", 2)[0], ".") }

// public reports whether a package of this module is part of its public
// API: not under an internal/ directory, not a command or an example.
func public(r string) bool {
	return r != "." && !slices.Contains(strings.Split(r, "/"), "internal") &&
		!strings.HasPrefix(r, "cmd/") && !strings.HasPrefix(r, "examples/") && !strings.HasPrefix(r, "tests/")
}

// layerViolations checks pkgs against the table and returns every broken
// rule, one line each (nil when there is none).
func layerViolations(pkgs []listed) []string {
	var out []string
	byPkg := map[string]layer{}
	for _, l := range layers {
		byPkg[l.pkg] = l
	}
	seen := map[string]bool{}
	for _, p := range pkgs {
		r, ok := rel(p.ImportPath)
		if !ok {
			out = append(out, p.ImportPath+": not a package of "+modulePath)
			continue
		}
		seen[r] = true
		l, ok := byPkg[r]
		if !ok {
			out = append(out, r+": not in the layer table of deps_test.go; add a row placing it in a layer")
			continue
		}
		for _, imp := range p.Imports {
			if why := l.refuses(imp); why != "" {
				out = append(out, r+" imports "+imp+": "+why)
			}
		}
		// Not even a test of this module imports the tests module.
		for _, imp := range slices.Concat(p.Imports, p.TestImports, p.XTestImports) {
			if ir, ok := rel(imp); ok && (ir == "tests" || strings.HasPrefix(ir, "tests/")) {
				out = append(out, r+" (or its tests) imports "+imp+": nothing in the root module imports tests/, a module of its own that imports this one")
			}
		}
	}
	for _, l := range layers {
		if !seen[l.pkg] {
			out = append(out, l.pkg+": in the layer table but not a package of the module; remove its row")
		}
	}
	return out
}

// refuses says why l may not import imp ("" when it may).
func (l layer) refuses(imp string) string {
	switch r, inModule := rel(imp); {
	case isStd(imp):
		if l.pure && !slices.Contains(pureStd, imp) {
			return "the package is pure (no IO, clock, logging or processes); it may use only these standard packages: " + strings.Join(pureStd, ", ")
		}
	case inModule && l.publicOnly:
		if !public(r) {
			return "the command and the examples use only the module's public packages"
		}
	case inModule:
		if !slices.Contains(l.module, r) {
			return "not allowed by its layer (may import: " + listOr(l.module) + ")"
		}
	case l.publicOnly:
		return "the command and the examples use no module but this one (consul/api belongs to upgrade)"
	case !slices.Contains(l.deps, imp):
		return "no module but " + listOr(l.deps) + " is allowed in this layer"
	}
	return ""
}

func listOr(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// TestEachPackageImportsOnlyWhatItsLayerAllows runs go list on the module
// and checks every package's imports against the layer table.
func TestEachPackageImportsOnlyWhatItsLayerAllows(t *testing.T) {
	for _, v := range layerViolations(goList(t)) {
		t.Error(v)
	}
}

// TestTheLayerCheckCatchesEachKindOfViolation proves the check can fail:
// a made-up module whose planner does IO and imports consul/api, whose
// transport imports upgrade, whose command imports an internal package and
// consul/api, whose test imports tests/, with a package the table lacks
// and a row the module lacks, yields one violation for each.
func TestTheLayerCheckCatchesEachKindOfViolation(t *testing.T) {
	m := func(r string) string { return modulePath + "/" + r }
	var pkgs []listed
	for _, l := range layers {
		if l.pkg == "upgrade/rehearsal" {
			continue // a row the module lacks
		}
		p := listed{ImportPath: m(l.pkg)}
		if l.pkg == "." {
			p.ImportPath = modulePath
		}
		switch l.pkg {
		case "planner":
			p.Imports = []string{"strings", "os", consulAPI, goVersion}
		case "transport":
			p.Imports = []string{m("planner"), m("upgrade")}
		case "cmd/consul-upgrade":
			p.Imports = []string{m("upgrade"), m("internal/traffic"), consulAPI}
		case "upgrade":
			p.Imports = []string{m("planner"), consulAPI}
			p.XTestImports = []string{m("tests/rig/consul")}
		}
		pkgs = append(pkgs, p)
	}
	pkgs = append(pkgs, listed{ImportPath: m("newpkg")})
	got := layerViolations(pkgs)
	for _, want := range []string{
		"planner imports os: the package is pure",
		"planner imports " + consulAPI + ": no module but " + goVersion,
		"transport imports " + m("upgrade") + ": not allowed by its layer",
		"cmd/consul-upgrade imports " + m("internal/traffic") + ": the command and the examples use only the module's public packages",
		"cmd/consul-upgrade imports " + consulAPI + ": the command and the examples use no module but this one",
		"upgrade (or its tests) imports " + m("tests/rig/consul") + ": nothing in the root module imports tests/",
		"newpkg: not in the layer table",
		"upgrade/rehearsal: in the layer table but not a package of the module",
	} {
		if !slices.ContainsFunc(got, func(v string) bool { return strings.HasPrefix(v, want) }) {
			t.Errorf("no violation starting %q among:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if len(got) != 8 {
		t.Errorf("%d violations, want 8 (one per broken rule):\n%s", len(got), strings.Join(got, "\n"))
	}
}
