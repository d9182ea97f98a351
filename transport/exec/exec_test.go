package exec_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/exec"
	"github.com/seed-e5e14ead/consul-upgrade/transport/transporttest"
)

// The simulated host: a directory per node holding the installed version,
// the previous one, an incarnation counter and a "running" marker. The
// scripts below are what a user's playbook would do to a real host.
const swapScript = `set -eu
d="$1/$2"; to="$3"
[ -d "$d" ] || { echo "no host for node $2" >&2; exit 3; }
cp "$d/version" "$d/prev"
rm -f "$d/running"            # stop (the simulated agent does not leave)
printf '%s\n' "$to" > "$d/version"
echo $(( $(cat "$d/inc") + 1 )) > "$d/inc"
touch "$d/running"            # start
echo "swapped $2 to $to"
`

const rollbackScript = `set -eu
d="$1/$2"
[ -f "$d/prev" ] || { echo "node $2 has no previous version" >&2; exit 4; }
rm -f "$d/running"
cp "$d/prev" "$d/version"
echo $(( $(cat "$d/inc") + 1 )) > "$d/inc"
touch "$d/running"
`

// checkScript says whether the simulated host has a version's binary: a
// file bins/<version> under the node's directory.
const checkScript = `d="$1/$2"
[ -e "$d/bins/$3" ] || { echo "no consul $3 binary on $2 (bins: $(ls "$d/bins" | tr '\n' ' '))" >&2; exit 1; }
`

const versionScript = `d="$1/$2"
[ -f "$d/running" ] || { echo "agent on $2 is down" >&2; exit 3; }
printf 'Consul v%s\nRevision sim\n' "$(cat "$d/version")"
`

type simHost struct{ dir string }

func newSim(t *testing.T, node, version string) *simHost {
	t.Helper()
	s := &simHost{dir: t.TempDir()}
	d := filepath.Join(s.dir, node)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(d, "bins"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"version": version + "\n", "inc": "1\n", "running": "", "swap.sh": swapScript, "rollback.sh": rollbackScript, "version.sh": versionScript, "check.sh": checkScript,
		"bins/1.12.9": "", "bins/1.13.9": ""} {
		p := filepath.Join(d, name)
		if strings.HasSuffix(name, ".sh") {
			p = filepath.Join(s.dir, name)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *simHost) config(nodes ...string) exec.Config {
	return exec.Config{
		Swap:     []string{"/bin/sh", filepath.Join(s.dir, "swap.sh"), s.dir, "{{.Node}}", "{{.To}}", "{{.StopMode}}"},
		Rollback: []string{"/bin/sh", filepath.Join(s.dir, "rollback.sh"), s.dir, "{{.Node}}"},
		Version:  []string{"/bin/sh", filepath.Join(s.dir, "version.sh"), s.dir, "{{.Node}}"},
		Check:    []string{"/bin/sh", filepath.Join(s.dir, "check.sh"), s.dir, "{{.Node}}", "{{.To}}"},
		Nodes:    nodes,
		Timeout:  10 * time.Second,
	}
}

func (s *simHost) state(node string) (string, bool, string, error) {
	d := filepath.Join(s.dir, node)
	v, err := os.ReadFile(filepath.Join(d, "version"))
	if err != nil {
		return "", false, "", err
	}
	inc, err := os.ReadFile(filepath.Join(d, "inc"))
	if err != nil {
		return "", false, "", err
	}
	_, err = os.Stat(filepath.Join(d, "running"))
	return strings.TrimSpace(string(v)), err == nil, strings.TrimSpace(string(inc)), nil
}

func TestConformanceWithScriptedHosts(t *testing.T) {
	for _, role := range []transport.Role{transport.RoleClient, transport.RoleServer} {
		t.Run(string(role), func(t *testing.T) {
			transporttest.Run(t, func(t *testing.T) transporttest.Harness {
				sim := newSim(t, "node-1", "1.12.9")
				tr, err := exec.New(sim.config("node-1"))
				if err != nil {
					t.Fatal(err)
				}
				return transporttest.Harness{
					Transport: tr, Node: "node-1", Role: role, From: "1.12.9", To: "1.13.9", Missing: "1.14.8",
					State: func(ctx context.Context, node string) (string, bool, string, error) { return sim.state(node) },
				}
			})
		})
	}
}

func TestTemplateValuesAreArgumentsNeverShellText(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	// The program gets the rendered element as one argument: the $(...)
	// and the ; in the template stay literal text.
	tr, err := exec.New(exec.Config{
		Swap: []string{"/bin/sh", "-c", `printf '%s|%s|%s' "$1" "$2" "$CONSUL_UPGRADE_TO" > "$3"`, "sh", "$(touch " + dir + "/pwned); {{.Node}}", "{{.Role}} {{.StopMode}}", out},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, To: "1.13.9", StopMode: transport.StopLeave}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want := "$(touch " + dir + "/pwned); c1|client leave|1.13.9"
	if string(got) != want {
		t.Errorf("command received %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("a template value was run by a shell")
	}
}

// alive reports whether a process runs with exactly argv (not a zombie).
func alive(argv ...string) bool {
	want := strings.Join(argv, "\x00") + "\x00"
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err == nil && string(b) == want {
			stat, _ := os.ReadFile("/proc/" + d.Name() + "/stat")
			if f := strings.Fields(string(stat)); len(f) > 2 && f[2] != "Z" {
				return true
			}
		}
	}
	return false
}

func TestATimedOutCommandIsKilledWithItsWholeProcessGroup(t *testing.T) {
	marker := strconv.Itoa(700 + int(time.Now().UnixNano()%200))
	// The command forks a child that would outlive it, then hangs.
	tr, err := exec.New(exec.Config{
		Swap:    []string{"/bin/sh", "-c", `sleep "$1" & sleep "$1"; wait`, "sh", marker},
		Timeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, To: "1.13.9", StopMode: transport.StopKill})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Swap with a hung command = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	var ce *exec.CommandError
	if !errors.As(err, &ce) || ce.Exit != -1 || ce.Step != "swap" {
		t.Errorf("error %v: want a *exec.CommandError for step swap with no exit status", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Swap took %v with a 500ms timeout", took)
	}
	deadline := time.Now().Add(3 * time.Second)
	for alive("sleep", marker) {
		if time.Now().After(deadline) {
			t.Fatalf("`sleep %s` (the command's child) outlived the timeout", marker)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAFailedCommandCarriesItsExitStatusAndBoundedOutput(t *testing.T) {
	tr, err := exec.New(exec.Config{
		Swap:        []string{"/bin/sh", "-c", `i=0; while [ $i -lt 2000 ]; do echo "line $i of noise"; i=$((i+1)); done; echo "fatal: disk full" >&2; exit 7`},
		OutputLimit: 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, To: "1.13.9", StopMode: transport.StopKill})
	var ce *exec.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("Swap = %v, want a *exec.CommandError", err)
	}
	if ce.Exit != 7 {
		t.Errorf("Exit = %d, want 7", ce.Exit)
	}
	if len(ce.Output) > 256+3 || !strings.Contains(ce.Output, "fatal: disk full") {
		t.Errorf("Output (%d bytes) = %q, want at most 256 bytes ending with the error line", len(ce.Output), ce.Output)
	}
	if !strings.Contains(err.Error(), "fatal: disk full") || !strings.Contains(err.Error(), "exited 7") {
		t.Errorf("error text %q does not carry the exit status and the output", err)
	}
	var se *transport.SwapError
	if !errors.As(err, &se) || se.Phase != exec.PhaseCommand || se.Node != "c1" {
		t.Errorf("error %v is not a SwapError for c1 in phase command", err)
	}
}

func TestAMissingProgramIsReportedWithoutAShell(t *testing.T) {
	tr, err := exec.New(exec.Config{Swap: []string{"consul-upgrade-no-such-program", "{{.Node}}"}})
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Swap(t.Context(), transport.SwapRequest{Node: "c1", Role: transport.RoleClient, To: "1.13.9", StopMode: transport.StopKill})
	if !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "executable file not found") {
		t.Fatalf("Swap with a missing program = %v, want a not-found error", err)
	}
}

func TestNewRefusesAConfigThatCannotRun(t *testing.T) {
	cases := []struct {
		name string
		cfg  exec.Config
		want string
	}{
		{"a config without a swap command is refused", exec.Config{}, "Swap is empty"},
		{"a template naming an unknown field is refused", exec.Config{Swap: []string{"x", "{{.Version}}"}}, "Version"},
		{"a template that does not parse is refused", exec.Config{Swap: []string{"x", "{{.Node"}}, "Swap[1]"},
		{"a program name that renders empty is refused", exec.Config{Swap: []string{"{{.Artifact}}"}}, "empty program name"},
		{"a node list with a shell metacharacter is refused", exec.Config{Swap: []string{"x"}, Nodes: []string{"s1;reboot"}}, "node name"},
		{"an env entry without = is refused", exec.Config{Swap: []string{"x"}, Env: []string{"PATH"}}, "KEY=value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, want an error naming %q", err, c.want)
			}
		})
	}
}

// TestAnEnterpriseBuildSatisfiesItsRelease: the version check ignores build
// metadata. A host whose binary reports 1.13.9+ent after a swap to 1.13.9 is
// verified, and a swap to 1.13.9 on a host already reporting 1.13.9+ent is
// idempotent (the swap command does not run).
func TestAnEnterpriseBuildSatisfiesItsRelease(t *testing.T) {
	sim := newSim(t, "node-1", "1.12.9+ent")
	// The playbook installs the Enterprise binary of the release asked for.
	entSwap := strings.Replace(swapScript, `printf '%s\n' "$to"`, `printf '%s+ent\n' "$to"`, 1)
	if entSwap == swapScript {
		t.Fatal("the swap script changed; adjust the Enterprise variant")
	}
	if err := os.WriteFile(filepath.Join(sim.dir, "swap.sh"), []byte(entSwap), 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := exec.New(sim.config("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	req := transport.SwapRequest{Node: "node-1", Role: transport.RoleServer, From: "1.12.9+ent", To: "1.13.9", StopMode: transport.StopKill}
	if err := tr.Swap(t.Context(), req); err != nil {
		t.Fatalf("Swap to 1.13.9 with a binary reporting 1.13.9+ent = %v, want nil", err)
	}
	v, running, inc, err := sim.state("node-1")
	if err != nil || v != "1.13.9+ent" || !running || inc != "2" {
		t.Fatalf("host after the swap: %s running=%v incarnation=%s (%v), want 1.13.9+ent running, incarnation 2", v, running, inc, err)
	}
	if err := tr.Swap(t.Context(), req); err != nil {
		t.Fatalf("second Swap = %v, want nil", err)
	}
	if _, _, inc, _ := sim.state("node-1"); inc != "2" {
		t.Errorf("incarnation after the second swap = %s, want 2 (already on the release: not swapped again)", inc)
	}
}

// The Version command's exit 3 (exec.NotRunningExit, LSB's "program is not
// running") says that no agent runs: RunningVersion's error wraps
// transport.ErrNotRunning, which a run trusts over serf before it stops a
// server. Any other failure says only that the version could not be read.
func TestVersionExit3MeansTheAgentIsNotRunning(t *testing.T) {
	for _, tc := range []struct {
		name       string
		script     string
		notRunning bool
	}{
		{"exit 3: no agent runs", `echo "no consul process on $0" >&2; exit 3`, true},
		{"exit 1: the version could not be read", `echo "connection refused" >&2; exit 1`, false},
		{"exit 0 without a version: a broken command", `echo "hello"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := exec.New(exec.Config{
				Swap:    []string{"/bin/true"},
				Version: []string{"/bin/sh", "-c", tc.script, "{{.Node}}"},
				Timeout: 10 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = tr.RunningVersion(t.Context(), "s3")
			if err == nil {
				t.Fatal("RunningVersion = nil error, want one")
			}
			if got := errors.Is(err, transport.ErrNotRunning); got != tc.notRunning {
				t.Errorf("RunningVersion = %v: wraps ErrNotRunning %t, want %t", err, got, tc.notRunning)
			}
			if !strings.Contains(err.Error(), "s3") {
				t.Errorf("error %q does not name the node", err)
			}
		})
	}
}
