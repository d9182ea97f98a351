package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

var (
	_ transport.ArtifactChecker = (*Transport)(nil)
)

// versionTimeout bounds one `consul version` of CheckArtifact.
const versionTimeout = 15 * time.Second

// CheckArtifact implements transport.ArtifactChecker without touching the
// node: the binary a swap (or a rollback) of node to version would start
// must be present, executable, and answer `consul version` with version.
// That binary is the one the node runs now when it runs version, the one it
// ran before its last swap when that was version (what Rollback restarts),
// and otherwise the resolver's (local.Dir: <dir>/consul-<version>). A
// binary that reports version with a "-dev" suffix passes, as its HTTP API,
// which a start waits for, reports version without it. A missing, broken
// or other-version binary is a *transport.ArtifactError naming the file.
func (t *Transport) CheckArtifact(ctx context.Context, node string, role transport.Role, version string) error {
	if err := transport.ValidateCheck(node, role, version); err != nil {
		return err
	}
	a, err := t.agent(node)
	if err != nil {
		return err
	}
	if role != "" && role != a.spec.Role {
		return fmt.Errorf("%w: node %s is a %s here, the check says %s; discover the cluster again", transport.ErrInvalidRequest, node, a.spec.Role, role)
	}
	a.mu.Lock()
	current, binary, prev, prevBinary := a.version, a.binary, a.prevVersion, a.prevBinary
	a.mu.Unlock()
	var path, whose string
	switch {
	case binary != "" && planner.SameVersion(current, version):
		path, whose = binary, "the binary node "+node+" runs"
	case prevBinary != "" && planner.SameVersion(prev, version):
		path, whose = prevBinary, "the binary node "+node+" ran before its last swap"
	default:
		p, err := t.bin(version)
		if err != nil || p == "" {
			if err == nil {
				err = errors.New("the resolver returned no path")
			}
			return &transport.ArtifactError{Node: node, Version: version, Checked: "the binary resolver", Problem: err.Error(),
				Fix: "make the resolver find it (local.Dir: an executable consul-" + version + " in its directory)", Err: err}
		}
		path, whose = p, "the resolver's binary"
	}
	checked := fmt.Sprintf("%s %s (present, executable, answering `version` with %s)", whose, path, version)
	fail := func(problem, fix string, err error) error {
		return &transport.ArtifactError{Node: node, Version: version, Checked: checked, Problem: problem, Fix: fix, Err: err}
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fail("it does not exist", "build or copy it there (scripts/build-consul.sh "+version+" writes consul-"+version+")", err)
	case err != nil:
		return fail(err.Error(), "make the file readable by this process", err)
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		return fail(fmt.Sprintf("it is not an executable file (mode %s)", fi.Mode()), "chmod +x it, or rebuild it", nil)
	}
	got, err := t.versions.of(ctx, path, fi)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("node %s: check consul %s: %w", node, version, ctx.Err())
		}
		return fail(err.Error(), "rebuild it (scripts/build-consul.sh "+version+")", err)
	}
	if !planner.SameVersion(strings.TrimSuffix(got, "-dev"), version) {
		return fail(fmt.Sprintf("it answers `version` with %s", got), "put the consul "+version+" binary there", nil)
	}
	return nil
}

// versionCache remembers what a binary file answered to `version`, so that
// a pre-flight of hundreds of nodes sharing one binary runs it once, not
// once a node (on 2 cores, 103 runs of 1.16.1's `version` at once timed out).
// A file is known by its device, inode, size and modification time: a
// binary replaced or rewritten since is run again. Failures are not kept;
// checks of one file at the same time wait for one run.
type versionCache struct {
	mu   sync.Mutex
	runs map[fileID]*versionRun
}

type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

type versionRun struct {
	done    chan struct{}
	version string
	err     error
}

func (c *versionCache) of(ctx context.Context, path string, fi os.FileInfo) (string, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return binaryVersion(ctx, path)
	}
	id := fileID{dev: uint64(st.Dev), ino: st.Ino, size: fi.Size(), mtime: fi.ModTime()}
	c.mu.Lock()
	if c.runs == nil {
		c.runs = map[fileID]*versionRun{}
	}
	r, found := c.runs[id]
	if !found {
		r = &versionRun{done: make(chan struct{})}
		c.runs[id] = r
	}
	c.mu.Unlock()
	if found {
		select {
		case <-r.done:
		case <-ctx.Done():
			return "", fmt.Errorf("`%s version`: %w", path, ctx.Err())
		}
		if r.err == nil {
			return r.version, nil
		}
		return binaryVersion(ctx, path) // its failure may have been its caller's context: run it for this one
	}
	r.version, r.err = binaryVersion(ctx, path)
	if r.err != nil {
		c.mu.Lock()
		delete(c.runs, id)
		c.mu.Unlock()
	}
	close(r.done)
	return r.version, r.err
}

var versionLineRE = regexp.MustCompile(`(?m)^\s*Consul v([0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.+-]+)?)\s*$`)

// binaryVersion runs `path version` and returns the version of its
// "Consul vX.Y.Z" line.
func binaryVersion(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "version")
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("`%s version` failed: %v; output: %s", path, err, firstLine(string(out)))
	}
	m := versionLineRE.FindStringSubmatch(string(out))
	if m == nil {
		return "", fmt.Errorf("`%s version` printed %q, which holds no \"Consul vX.Y.Z\" line: it is not a consul binary", path, firstLine(string(out)))
	}
	return m[1], nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
