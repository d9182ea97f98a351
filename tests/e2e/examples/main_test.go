// Package examples_test runs the programs under examples/ as a user does,
// against real Consul agents and a real sshd: TestMain builds each one
// once with `go build`, and each test execs it with its flags.
package examples_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// root is the root module's directory; bin holds the built examples.
var root, bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/seed-e5e14ead/consul-upgrade").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "finding the root module: %v\n", err)
		return 1
	}
	root = strings.TrimSpace(string(out))
	if bin, err = os.MkdirTemp("", "consul-upgrade-e2e-examples-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(bin)
	for _, name := range []string{"ssh", "local-upgrade"} {
		// Built in the root module, as a user builds them.
		build := exec.Command("go", "build", "-o", filepath.Join(bin, name), "./examples/"+name)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build of examples/%s failed: %v\n%s", name, err, out)
			return 1
		}
	}
	return m.Run()
}

// example runs the built example name with args and returns its exit code
// and output.
func example(t *testing.T, ctx context.Context, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("examples/%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	return 0, "", ""
}
