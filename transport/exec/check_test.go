package exec_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/exec"
)

func TestCheckArtifactRunsTheCheckCommandAndTouchesNothing(t *testing.T) {
	sim := newSim(t, "node-1", "1.12.9")
	tr, err := exec.New(sim.config("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _, before, _ := sim.state("node-1")
	if err := tr.CheckArtifact(ctx, "node-1", transport.RoleServer, "1.13.9"); err != nil {
		t.Errorf("CheckArtifact(1.13.9) = %v, want nil (the host has it)", err)
	}
	err = tr.CheckArtifact(ctx, "node-1", transport.RoleServer, "1.14.8")
	var ae *transport.ArtifactError
	if !errors.As(err, &ae) || !errors.Is(err, transport.ErrArtifact) {
		t.Fatalf("CheckArtifact(1.14.8) = %v, want a *transport.ArtifactError", err)
	}
	for _, w := range []string{"node node-1 cannot get consul 1.14.8", "Check command", "exited 1", "no consul 1.14.8 binary on node-1"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if v, running, inc, _ := sim.state("node-1"); v != "1.12.9" || !running || inc != before {
		t.Errorf("after the checks node-1 runs %s (running %v, incarnation %s -> %s), want untouched", v, running, before, inc)
	}
}

func TestWithoutACheckCommandTheArtifactIsNotChecked(t *testing.T) {
	sim := newSim(t, "node-1", "1.12.9")
	cfg := sim.config("node-1")
	cfg.Check = nil
	tr, err := exec.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = tr.CheckArtifact(context.Background(), "node-1", transport.RoleServer, "1.13.9")
	if !errors.Is(err, transport.ErrNotChecked) || errors.Is(err, transport.ErrArtifact) {
		t.Fatalf("CheckArtifact without Check = %v, want ErrNotChecked (not a verdict on the binary)", err)
	}
	if !strings.Contains(err.Error(), "Config.Check") {
		t.Errorf("error %q does not name the setting that would check", err)
	}
	if err := tr.CheckArtifact(context.Background(), "ghost", transport.RoleServer, "1.13.9"); !errors.Is(err, transport.ErrUnknownNode) {
		t.Errorf("unknown node without Check = %v, want ErrUnknownNode", err)
	}
}

func TestTheCheckCommandGetsTheMirrorsURLAndAMissingEntryFailsFirst(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "seen")
	sum := strings.Repeat("a", 64)
	tr, err := exec.New(exec.Config{
		Swap:   []string{"true"},
		Mirror: transport.Mirrors(map[string]transport.Fetch{"1.13.9": {URL: "https://mirror.example/consul/1.13.9", SHA256: sum}}),
		Check:  []string{"/bin/sh", "-c", `printf '%s %s %s %s\n' "$1" "$2" "$3" "$4" > "$0"`, out, "{{.Node}}", "{{.To}}", "{{.URL}}", "{{.SHA256}}"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.CheckArtifact(context.Background(), "c1", transport.RoleClient, "1.13.9"); err != nil {
		t.Fatalf("CheckArtifact = %v", err)
	}
	got, _ := os.ReadFile(out)
	if want := "c1 1.13.9 https://mirror.example/consul/1.13.9 " + sum + "\n"; string(got) != want {
		t.Errorf("the Check command saw %q, want %q", got, want)
	}
	os.Remove(out)
	err = tr.CheckArtifact(context.Background(), "c1", transport.RoleClient, "1.14.8")
	var ae *transport.ArtifactError
	if !errors.As(err, &ae) || ae.Checked != "the mirror's entry" {
		t.Fatalf("CheckArtifact of a version the mirror lacks = %v, want an ArtifactError about the mirror's entry", err)
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Error("the Check command ran although the mirror has no entry")
	}
}

func TestCanRollbackNeedsARollbackCommand(t *testing.T) {
	sim := newSim(t, "node-1", "1.12.9")
	tr, err := exec.New(sim.config("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.CanRollback(); err != nil {
		t.Errorf("CanRollback with a Rollback command = %v, want nil", err)
	}
	cfg := sim.config("node-1")
	cfg.Rollback = nil
	tr, err = exec.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = tr.CanRollback()
	if err == nil || !strings.Contains(err.Error(), "no Rollback command") || !strings.Contains(err.Error(), `"rollback"`) {
		t.Errorf("CanRollback without a Rollback command = %v, want the missing setting named", err)
	}
}
