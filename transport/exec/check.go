package exec

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// CanRollback implements transport.RollbackChecker: a Transport can roll
// back only with a Rollback command.
func (t *Transport) CanRollback() error {
	if t.rollback == nil {
		return errors.New("the exec transport has no Rollback command (Config.Rollback, the inventory's \"rollback\"): give an argv that puts {{.Node}} back on its previous binary")
	}
	return nil
}

// CheckArtifact implements transport.ArtifactChecker with the Check
// command: exit 0 means node can get the binary of version, any other exit
// is a *transport.ArtifactError carrying the command's output. With Mirror,
// the mirror must have an entry for version first. Without a Check command
// it returns an error wrapping transport.ErrNotChecked: this transport
// cannot tell.
func (t *Transport) CheckArtifact(ctx context.Context, node string, role transport.Role, version string) error {
	if err := transport.ValidateCheck(node, role, version); err != nil {
		return err
	}
	if !t.known(node) {
		return fmt.Errorf("%w: node %s is not in the transport's Nodes; add it", transport.ErrUnknownNode, node)
	}
	if t.check == nil {
		return fmt.Errorf("%w: node %s, consul %s: the exec transport has no Check command (Config.Check, the inventory's \"check\"); give one to verify binaries before a run", transport.ErrNotChecked, node, version)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	v := Vars{Node: node, Role: role, To: version}
	if t.cfg.Mirror != nil {
		f, err := t.cfg.Mirror(ctx, version)
		if err == nil {
			err = f.Validate()
		}
		if err != nil {
			return &transport.ArtifactError{Node: node, Version: version, Checked: "the mirror's entry", Problem: err.Error(),
				Fix: "add consul " + version + " to the mirror table", Err: err}
		}
		v.URL, v.SHA256 = f.URL, f.SHA256
	}
	argv, err := t.check.Render(v)
	if err != nil {
		return err
	}
	_, err = t.run(ctx, "check", v, argv)
	var ce *CommandError
	if err == nil || !errors.As(err, &ce) || ce.Exit < 0 {
		return err // verified, or the check could not run to its end (ctx, timeout)
	}
	out := strings.TrimSpace(ce.Output)
	if out == "" {
		out = "(no output)"
	}
	return &transport.ArtifactError{Node: node, Version: version, Checked: fmt.Sprintf("the Check command %q", argv),
		Problem: fmt.Sprintf("it exited %d: %s", ce.Exit, out), Fix: "make consul " + version + " available to node " + node, Err: err}
}
