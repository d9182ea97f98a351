package ssh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	sshrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/sshd"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/ssh"
)

// missingVersion is a release no resolver of these tests has.
const missingVersion = "1.14.8"

// resolverWithout is fakeResolver without one version.
func resolverWithout(missing string) ssh.Resolver {
	return func(ctx context.Context, version string) (io.ReadCloser, string, error) {
		if version == missing {
			return nil, "", fmt.Errorf("no local binary for consul %s (have %s, %s); add it to the resolver's files", version, fromVersion, toVersion)
		}
		return fakeResolver(ctx, version)
	}
}

func TestCheckArtifactOverSSHTellsWhatTheNodeCanGet(t *testing.T) {
	t.Parallel()
	s := sshrig.Start(t)
	fh := newFakeHost(t, fromVersion)
	_, _, inc := fh.state()
	bin := fakeConsul(toVersion)
	m := newMirror(t, map[string][]byte{"/consul/" + toVersion + "/consul": bin})
	mirrored := transport.Mirrors(map[string]transport.Fetch{
		toVersion: {URL: m.url(toVersion), SHA256: sum(bin)},
		"1.13.8":  {URL: m.url("1.13.8"), SHA256: sum(bin)}, // not on the mirror's disk: 404
		"1.13.7":  {URL: m.url("1.13.7"), SHA256: "not-a-checksum"},
		"1.13.6":  {URL: "http://127.0.0.1:1/consul", SHA256: sum(bin)}, // nothing listens
	})
	hosts := map[string]ssh.Host{"c1": fh.host(*s)}
	ctx := t.Context()
	artifactErr := func(t *testing.T, err error, want ...string) {
		t.Helper()
		var ae *transport.ArtifactError
		if !errors.As(err, &ae) || !errors.Is(err, transport.ErrArtifact) || ae.Node != "c1" {
			t.Fatalf("CheckArtifact = %v (%T), want a *transport.ArtifactError for c1", err, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
	}

	t.Run("the installed binary answers for the version it is, with no resolver at all", func(t *testing.T) {
		tr, err := ssh.New(hosts, ssh.WithKeyFile(s.KeyFile), ssh.WithKnownHosts(s.KnownHosts))
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.CheckArtifact(ctx, "c1", transport.RoleClient, fromVersion); err != nil {
			t.Errorf("CheckArtifact(%s) = %v, want nil: the binary at BinaryPath is that version", fromVersion, err)
		}
		artifactErr(t, tr.CheckArtifact(ctx, "c1", transport.RoleClient, toVersion), "there is none", "WithResolver", "WithFetch")
	})

	t.Run("streamed binaries must be in the resolver", func(t *testing.T) {
		tr := newTransport(t, s, hosts, ssh.WithResolver(resolverWithout(missingVersion)))
		if err := tr.CheckArtifact(ctx, "c1", transport.RoleClient, toVersion); err != nil {
			t.Errorf("CheckArtifact(%s) = %v, want nil: the resolver has it", toVersion, err)
		}
		artifactErr(t, tr.CheckArtifact(ctx, "c1", transport.RoleClient, missingVersion), "the resolver", "no local binary for consul "+missingVersion)
	})

	t.Run("fetched binaries must be on the mirror and the mirror reachable from the host", func(t *testing.T) {
		tr, err := ssh.New(hosts, ssh.WithKeyFile(s.KeyFile), ssh.WithKnownHosts(s.KnownHosts), ssh.WithFetch(mirrored))
		if err != nil {
			t.Fatal(err)
		}
		before := m.gets.Load()
		if err := tr.CheckArtifact(ctx, "c1", transport.RoleClient, toVersion); err != nil {
			t.Errorf("CheckArtifact(%s) = %v, want nil: the mirror serves it", toVersion, err)
		}
		if m.gets.Load() == before {
			t.Error("the check did not ask the mirror")
		}
		artifactErr(t, tr.CheckArtifact(ctx, "c1", transport.RoleClient, "1.13.8"), "reaches the mirror's "+m.url("1.13.8"), "does not answer", "404")
		artifactErr(t, tr.CheckArtifact(ctx, "c1", transport.RoleClient, "1.13.7"), "the mirror's entry", "not 64 lower-case hex digits")
		artifactErr(t, tr.CheckArtifact(ctx, "c1", transport.RoleClient, "1.13.6"), "does not answer")
		artifactErr(t, tr.CheckArtifact(ctx, "c1", transport.RoleClient, missingVersion), "the mirror's entry", "has no consul "+missingVersion)
	})

	if v, running, now := fh.state(); v != fromVersion || !running || now != inc {
		t.Errorf("after the checks the agent runs %s (running %v, incarnation %s -> %s), want untouched", v, running, inc, now)
	}
	if err := newTransport(t, s, hosts).CheckArtifact(ctx, "ghost", transport.RoleClient, toVersion); !errors.Is(err, transport.ErrUnknownNode) {
		t.Errorf("unknown node: %v, want ErrUnknownNode", err)
	}
}
