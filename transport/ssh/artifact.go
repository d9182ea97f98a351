package ssh

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

var _ transport.ArtifactChecker = (*Transport)(nil)

// CheckArtifact implements transport.ArtifactChecker. It connects to the
// node's host and touches nothing there; the node can get version when:
//
//   - the binary at BinaryPath already answers VersionCmd with version
//     (a swap to it restarts the agent without staging; a rollback to it
//     restores this binary, which the swap keeps as BinaryPath.prev); or
//   - with WithFetch, the mirror has an entry for version (a valid URL and
//     SHA-256) and the host reaches that URL (transport.ProbeScript: a HEAD
//     request with curl, or wget --spider); or
//   - otherwise, the resolver (WithResolver) gives the binary and its
//     SHA-256 from here, as a swap would stream it.
//
// A node that cannot is a *transport.ArtifactError saying what was
// checked. A host that cannot be reached is an *UnreachableError (wrapping
// transport.ErrUnreachable) naming its address and why: a swap could not
// reach it either, so the pre-flight refuses the run before anything is
// stopped.
func (t *Transport) CheckArtifact(ctx context.Context, node string, role transport.Role, version string) error {
	if err := transport.ValidateCheck(node, role, version); err != nil {
		return err
	}
	h, ok := t.lookup(node)
	if !ok {
		return fmt.Errorf("%w: no host configured for node %s; add it to the hosts map", transport.ErrUnknownNode, node)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := t.dial(ctx, h)
	if err != nil {
		var ue *UnreachableError
		if errors.As(err, &ue) {
			return err // names the node, the host and why
		}
		return fmt.Errorf("node %s: check consul %s: %w", node, version, err)
	}
	defer c.Close()
	v := h.vars(transport.SwapRequest{Node: node, Role: role, To: version, StopMode: transport.StopKill})
	installed, verr := c.version(ctx, v)
	if verr == nil && planner.SameVersion(installed, version) {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("node %s: check consul %s: %w", node, version, ctx.Err())
	}
	fail := func(checked, problem, fix string, err error) error {
		return &transport.ArtifactError{Node: node, Version: version, Checked: checked, Problem: problem, Fix: fix, Err: err}
	}
	if t.mirror != nil {
		f, err := t.mirror(ctx, version)
		if err == nil {
			err = f.Validate()
		}
		if err != nil {
			return fail("the mirror's entry (WithFetch)", err.Error(), "add consul "+version+" to the mirror table", err)
		}
		r, err := c.run(ctx, "probe", transport.ProbeCommand(f.URL), nil, 0)
		if err != nil {
			return fmt.Errorf("node %s: check consul %s: %w", node, version, err)
		}
		checked := fmt.Sprintf("that the host reaches the mirror's %s", f.URL)
		switch r.exit {
		case 0:
			return nil
		case transport.ProbeExitNoDownloader:
			return fail(checked, "neither curl nor wget is installed on the host", "install one of them (e.g. apt-get install curl), or stream the binary from here (WithResolver instead of WithFetch)", nil)
		case transport.ProbeExitUnreachable:
			return fail(checked, "it does not answer: "+firstLine(strings.TrimSpace(r.output)), "check that the host reaches the mirror and that the file is there", nil)
		default:
			return fmt.Errorf("node %s: check consul %s: probe of %s exited %d: %s", node, version, f.URL, r.exit, firstLine(r.output))
		}
	}
	checked := "the resolver (WithResolver), which streams the binary from here"
	if t.resolver == nil {
		return fail(checked, fmt.Sprintf("there is none, and the binary at %s is not consul %s", h.BinaryPath, version), "give WithResolver (local files) or WithFetch (a mirror the host downloads from)", nil)
	}
	body, sum, err := t.resolver(ctx, version)
	if err != nil {
		return fail(checked, err.Error(), "add consul "+version+" to the resolver's files", err)
	}
	if body != nil {
		body.Close()
	}
	sum = strings.ToLower(strings.TrimSpace(sum))
	switch {
	case body == nil:
		return fail(checked, "it returned no body", "fix the resolver", nil)
	case !sha256RE.MatchString(sum):
		return fail(checked, fmt.Sprintf("its checksum %q is not 64 hex digits", sum), "return the release's SHA-256 (SHA256SUMS)", nil)
	}
	return nil
}
