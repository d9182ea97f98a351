package ssh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// Resolver returns the consul binary for a version: its bytes and the
// SHA-256 (hex) they must have. The checksum is verified on the remote host
// before anything is installed, so it should come from a trusted source
// (the release's SHA256SUMS, a pinned table), not be computed from the same
// bytes.
type Resolver func(ctx context.Context, version string) (body io.ReadCloser, sha256hex string, err error)

// File is a local binary and, optionally, its expected SHA-256 (hex).
type File struct {
	Path   string
	SHA256 string // "" computes it from the file: guards the transfer only
}

// Files returns a Resolver over local files, keyed by version.
func Files(files map[string]File) Resolver {
	return func(ctx context.Context, version string) (io.ReadCloser, string, error) {
		f, ok := files[version]
		if !ok {
			known := make([]string, 0, len(files))
			for v := range files {
				known = append(known, v)
			}
			sort.Strings(known)
			return nil, "", fmt.Errorf("no local binary for consul %s (have %s); add it to the resolver's files", version, strings.Join(known, ", "))
		}
		sum := f.SHA256
		if sum == "" {
			var err error
			if sum, err = fileSHA256(f.Path); err != nil {
				return nil, "", err
			}
		}
		r, err := os.Open(f.Path)
		if err != nil {
			return nil, "", err
		}
		return r, sum, nil
	}
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Option configures a Transport.
type Option func(*config) error

type config struct {
	signers    []gossh.Signer
	useAgent   bool
	agentSock  string
	knownHosts []string
	insecure   bool
	resolver   Resolver
	mirror     transport.Mirror
}

// WithKeyFile authenticates with the unencrypted private key (PEM or
// OpenSSH format) in file p.
func WithKeyFile(p string) Option {
	return func(c *config) error {
		s, err := readKeyFile(p)
		if err != nil {
			return err
		}
		c.signers = append(c.signers, s)
		return nil
	}
}

func readKeyFile(p string) (gossh.Signer, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	s, err := gossh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w; give an unencrypted key, or load it into ssh-agent and use WithAgent", p, err)
	}
	return s, nil
}

func everyHostHasKey(hosts map[string]Host) bool {
	for _, h := range hosts {
		if h.KeyFile == "" {
			return false
		}
	}
	return len(hosts) > 0
}

// WithKey authenticates with an unencrypted private key given as PEM bytes.
func WithKey(pem []byte) Option {
	return func(c *config) error {
		s, err := gossh.ParsePrivateKey(pem)
		if err != nil {
			return fmt.Errorf("private key: %w; give an unencrypted PEM or OpenSSH key", err)
		}
		c.signers = append(c.signers, s)
		return nil
	}
}

// WithSigner authenticates with s.
func WithSigner(s gossh.Signer) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("WithSigner: signer is nil")
		}
		c.signers = append(c.signers, s)
		return nil
	}
}

// WithAgent authenticates with the keys of the SSH agent at $SSH_AUTH_SOCK.
func WithAgent() Option {
	return func(c *config) error {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			return errors.New("WithAgent: SSH_AUTH_SOCK is not set; start ssh-agent and ssh-add your key, or use WithKeyFile")
		}
		c.useAgent, c.agentSock = true, sock
		return nil
	}
}

// WithKnownHosts verifies host keys against these known_hosts files instead
// of ~/.ssh/known_hosts.
func WithKnownHosts(files ...string) Option {
	return func(c *config) error {
		if len(files) == 0 {
			return errors.New("WithKnownHosts: no file given")
		}
		c.knownHosts = append(c.knownHosts, files...)
		return nil
	}
}

// InsecureIgnoreHostKey accepts any host key: anyone on the path can then
// impersonate the host and receive the binary and the commands. Use it only
// for throwaway test hosts.
func InsecureIgnoreHostKey() Option {
	return func(c *config) error { c.insecure = true; return nil }
}

// WithResolver sets where binaries come from when a request names no
// Artifact.
func WithResolver(r Resolver) Option {
	return func(c *config) error { c.resolver = r; return nil }
}

// WithFetch makes each host fetch the binary itself from the mirror (with
// curl, or wget when there is no curl) instead of the orchestrator streaming
// it over SSH: the orchestrator then sends only commands, a few kilobytes
// per swap whatever the binary's size. The host downloads into a temporary
// file next to Host.BinaryPath and checks its SHA-256 against the mirror's;
// a mismatch, a failed download or a host with neither curl nor wget is a
// *transport.FetchError, and nothing is installed or stopped. A request
// that names an Artifact (a local file) is still staged from here.
func WithFetch(m transport.Mirror) Option {
	return func(c *config) error {
		if m == nil {
			return errors.New("WithFetch: mirror is nil; give transport.Mirrors(table) or your own transport.Mirror")
		}
		c.mirror = m
		return nil
	}
}

// Transport swaps Consul agents on remote hosts over SSH. It implements
// transport.Transport, transport.Rollbacker, transport.VersionReporter and
// transport.ArtifactChecker.
// It is safe for concurrent use; each call opens its own connection.
type Transport struct {
	hosts     map[string]*host
	signers   []gossh.Signer
	agentSock string
	insecure  bool
	hostKeys  *hostKeys
	resolver  Resolver
	mirror    transport.Mirror
}

var (
	_ transport.Transport       = (*Transport)(nil)
	_ transport.Rollbacker      = (*Transport)(nil)
	_ transport.VersionReporter = (*Transport)(nil)
)

// New returns a Transport for hosts (node name -> host). It validates every
// host and template and reads known_hosts now, so a mistake shows before
// the upgrade starts.
func New(hosts map[string]Host, opts ...Option) (*Transport, error) {
	var c config
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, fmt.Errorf("ssh transport: %w", err)
		}
	}
	if len(c.signers) == 0 && !c.useAgent && !everyHostHasKey(hosts) {
		return nil, errors.New("ssh transport: no authentication method; give WithKeyFile, WithKey, WithSigner or WithAgent (or a KeyFile on every host)")
	}
	t := &Transport{hosts: map[string]*host{}, signers: c.signers, agentSock: c.agentSock, insecure: c.insecure, resolver: c.resolver, mirror: c.mirror}
	if !c.insecure {
		files := c.knownHosts
		if len(files) == 0 {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, errors.New("ssh transport: no home directory for ~/.ssh/known_hosts; name a file with WithKnownHosts")
			}
			files = []string{filepath.Join(home, ".ssh", "known_hosts")}
		}
		hk, err := newHostKeys(files)
		if err != nil {
			return nil, fmt.Errorf("ssh transport: %w", err)
		}
		t.hostKeys = hk
	}
	names := make([]string, 0, len(hosts))
	for n := range hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	keys := map[string]gossh.Signer{} // by KeyFile: each file is read once
	for _, n := range names {
		h, err := hosts[n].prepare(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f := h.KeyFile; f != "" {
			if _, ok := keys[f]; !ok {
				s, err := readKeyFile(f)
				if err != nil {
					errs = append(errs, fmt.Errorf("host for node %q: KeyFile: %w", n, err))
					keys[f] = nil
					continue
				}
				keys[f] = s
			}
			if h.key = keys[f]; h.key == nil {
				errs = append(errs, fmt.Errorf("host for node %q: KeyFile %s could not be read (see above)", n, f))
				continue
			}
		}
		t.hosts[n] = h
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("ssh transport: %w", errors.Join(errs...))
	}
	return t, nil
}

func (t *Transport) auth(h *host) ([]gossh.AuthMethod, func(), error) {
	var methods []gossh.AuthMethod
	closer := func() {}
	signers := t.signers
	if h.key != nil {
		signers = append([]gossh.Signer{h.key}, signers...)
	}
	if len(signers) > 0 {
		methods = append(methods, gossh.PublicKeys(signers...))
	}
	if t.agentSock != "" {
		ac, err := net.Dial("unix", t.agentSock)
		if err != nil {
			if len(methods) == 0 {
				return nil, closer, fmt.Errorf("ssh agent at SSH_AUTH_SOCK=%s: %w; start ssh-agent or use WithKeyFile", t.agentSock, err)
			}
		} else {
			methods = append(methods, gossh.PublicKeysCallback(agent.NewClient(ac).Signers))
			closer = func() { _ = ac.Close() }
		}
	}
	return methods, closer, nil
}

func (t *Transport) lookup(node string) (*host, bool) {
	h, ok := t.hosts[node]
	return h, ok
}

// Swap moves one node to req.To: validate, connect, stage and verify the
// binary, install it atomically, stop, start, verify the version. See the
// package documentation for the steps.
func (t *Transport) Swap(ctx context.Context, req transport.SwapRequest) error {
	if err := transport.ValidateRequest(req); err != nil {
		return err
	}
	fail := func(phase transport.Phase, err error) error {
		return &transport.SwapError{Node: req.Node, Phase: phase, To: req.To, Err: err}
	}
	h, ok := t.lookup(req.Node)
	if !ok {
		return fail(transport.PhaseValidate, fmt.Errorf("%w: no host configured for node %s; add it to the hosts map", transport.ErrUnknownNode, req.Node))
	}
	if err := ctx.Err(); err != nil {
		return fail(transport.PhaseValidate, err)
	}
	c, err := t.dial(ctx, h)
	if err != nil {
		return fail(PhaseConnect, err)
	}
	defer c.Close()
	v := h.vars(req)

	// Idempotence: the agent already runs the target (build metadata
	// ignored: a binary reporting 1.10.12+ent runs 1.10.12).
	installed, iErr := c.version(ctx, v)
	running, err := c.running(ctx, v)
	if err != nil {
		return fail(transport.PhaseVerify, err)
	}
	if iErr == nil && planner.SameVersion(installed, req.To) && running {
		return nil
	}

	if iErr != nil || !planner.SameVersion(installed, req.To) {
		if err := t.stage(ctx, c, req, v); err != nil {
			return fail(transport.PhaseStage, err)
		}
	}
	return t.restart(ctx, c, v, req.To, running, transport.PhaseStop, transport.PhaseStart, req.Report)
}

// restart stops the agent (if running), starts it and checks it reports
// want. Errors are *transport.SwapError with the given phases.
//
// report (nil: none) is told PhaseStop once the agent no longer runs (with
// a supervisor that restarts it: once the stop command returned) and
// PhaseStart once the new agent runs.
func (t *Transport) restart(ctx context.Context, c *conn, v Vars, want string, running bool, stopPhase, startPhase transport.Phase, report func(transport.Phase)) error {
	if report == nil {
		report = func(transport.Phase) {}
	}
	fail := func(phase transport.Phase, err error) error {
		return &transport.SwapError{Node: v.Node, Phase: phase, To: want, Err: err}
	}
	h := c.h
	if h.systemd() {
		if running {
			if err := c.stopUnit(ctx, v); err != nil {
				return fail(stopPhase, err)
			}
			report(transport.PhaseStop)
		}
		if err := c.startUnit(ctx); err != nil {
			return fail(startPhase, err)
		}
		report(transport.PhaseStart)
		return c.verify(ctx, v, want, fail)
	}
	if running {
		argv, err := h.stop.Render(v)
		if err != nil {
			return fail(stopPhase, err)
		}
		if _, err := c.must(ctx, "stop", argv, nil); err != nil {
			return fail(stopPhase, err)
		}
		if !h.supervised() {
			if err := c.waitRunning(ctx, v, false, h.StopTimeout); err != nil {
				return fail(stopPhase, err)
			}
		}
		report(transport.PhaseStop)
	}
	if !h.supervised() || !running {
		argv, err := h.start.Render(v)
		if err != nil {
			return fail(startPhase, err)
		}
		if _, err := c.must(ctx, "start", argv, nil); err != nil {
			return fail(startPhase, err)
		}
	}
	if err := c.waitRunning(ctx, v, true, h.StartTimeout); err != nil {
		return fail(startPhase, err)
	}
	report(transport.PhaseStart)
	return c.verify(ctx, v, want, fail)
}

// verify checks that VersionCmd reports want after a restart.
func (c *conn) verify(ctx context.Context, v Vars, want string, fail func(transport.Phase, error) error) error {
	got, err := c.version(ctx, v)
	if err != nil {
		return fail(transport.PhaseVerify, err)
	}
	if got != want {
		return fail(transport.PhaseVerify, fmt.Errorf("%w: node %s reports consul %s after the restart, want %s; check VersionCmd and BinaryPath", transport.ErrNotRunning, v.Node, got, want))
	}
	return nil
}

// stage puts the binary for req.To on the host and installs it atomically,
// keeping the old one as .prev. The binary is either streamed from here
// (upload) or fetched by the host from the mirror (WithFetch). Nothing is
// installed unless the checksum and the binary's own version check out.
func (t *Transport) stage(ctx context.Context, c *conn, req transport.SwapRequest, v Vars) error {
	var (
		fetch transport.Fetch
		body  io.ReadCloser
		want  string
	)
	fetching := t.mirror != nil && req.Artifact == ""
	if fetching {
		f, err := t.mirror(ctx, req.To)
		if err != nil {
			return fmt.Errorf("%w: mirror for consul %s: %w", transport.ErrArtifact, req.To, err)
		}
		if err := f.Validate(); err != nil {
			return fmt.Errorf("node %s: the mirror's entry for consul %s: %w", v.Node, req.To, err)
		}
		fetch = f
	} else {
		var err error
		body, want, err = t.artifact(ctx, req)
		if err != nil {
			return fmt.Errorf("%w: %w", transport.ErrArtifact, err)
		}
		defer body.Close()
		want = strings.ToLower(strings.TrimSpace(want))
		if want != "" && !sha256RE.MatchString(want) {
			return fmt.Errorf("%w: checksum %q for consul %s is not 64 hex digits; fix the resolver", transport.ErrArtifact, want, req.To)
		}
	}
	dir, base := path.Split(v.BinaryPath)
	r, err := c.must(ctx, "stage", []string{"mktemp", dir + "." + base + ".upgrade.XXXXXXXX"}, nil)
	if err != nil {
		return err
	}
	tmp := strings.TrimSpace(string(r.stdout))
	if !strings.HasPrefix(tmp, dir+"."+base+".upgrade.") || strings.ContainsAny(tmp, "\n\x00") {
		return fmt.Errorf("mktemp on node %s printed %q, want a path in %s", v.Node, tmp, dir)
	}
	installed := false
	defer func() {
		if !installed {
			// Best effort, on a fresh context: ctx may be what ended.
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = c.run(cctx, "cleanup", []string{"rm", "-f", "--", tmp}, nil, 10*time.Second)
		}
	}()
	if fetching {
		if err := c.fetch(ctx, req.To, fetch, tmp); err != nil {
			return err
		}
	} else if err := c.upload(ctx, req.To, body, want, tmp); err != nil {
		return err
	}
	if _, err := c.must(ctx, "stage", []string{"chmod", "0755", "--", tmp}, nil); err != nil {
		return err
	}
	r, err = c.must(ctx, "stage", []string{tmp, "version"}, nil)
	if err != nil {
		return fmt.Errorf("%w: the staged binary does not run on node %s: %w", transport.ErrArtifact, v.Node, err)
	}
	if sv, err := parseVersion(string(r.stdout)); err != nil || !planner.SameVersion(sv, req.To) {
		return fmt.Errorf("%w: the staged binary for %s reports %q on node %s; the artifact is another version", transport.ErrArtifact, req.To, firstLine(string(r.stdout)), v.Node)
	}
	exists, err := c.run(ctx, "stage", []string{"test", "-e", v.BinaryPath}, nil, 0)
	if err != nil {
		return err
	}
	if exists.exit == 0 {
		if _, err := c.must(ctx, "stage", []string{"ln", "-f", "--", v.BinaryPath, v.PrevPath}, nil); err != nil {
			return err
		}
	}
	if _, err := c.must(ctx, "install", []string{"mv", "-f", "--", tmp, v.BinaryPath}, nil); err != nil {
		return err
	}
	installed = true
	return nil
}

// upload streams body into tmp on the host and checks there that its
// SHA-256 is want ("" checks it against what was sent: guards the transfer
// only).
func (c *conn) upload(ctx context.Context, version string, body io.Reader, want, tmp string) error {
	local := sha256.New()
	if _, err := c.must(ctx, "upload", []string{"dd", "of=" + tmp, "bs=65536", "status=none"}, io.TeeReader(body, local)); err != nil {
		return err
	}
	localSum := hex.EncodeToString(local.Sum(nil))
	if want == "" {
		want = localSum
	}
	r, err := c.must(ctx, "checksum", []string{"sha256sum", "--", tmp}, nil)
	if err != nil {
		return err
	}
	got, _, _ := strings.Cut(strings.TrimSpace(string(r.stdout)), " ")
	if got != want {
		return &ChecksumError{Node: c.h.node, Version: version, Want: want, Got: got}
	}
	return nil
}

// fetch has the host download f.URL into tmp and verify its SHA-256
// (transport.FetchScript). A refusal is a *transport.FetchError.
func (c *conn) fetch(ctx context.Context, version string, f transport.Fetch, tmp string) error {
	argv := transport.FetchCommand(f.URL, f.SHA256, tmp)
	r, err := c.run(ctx, "fetch", argv, nil, 0)
	if err != nil {
		return err
	}
	known, ferr := transport.FetchResult(c.h.node, version, f, r.exit, string(r.stdout), r.output)
	if !known {
		return &CommandError{Node: c.h.node, Step: "fetch", Command: "sh -c FETCHSCRIPT consul-fetch " + Quote(f.URL) + " " + f.SHA256 + " " + Quote(tmp), Exit: r.exit, Output: r.output, Err: fmt.Errorf("exit status %d", r.exit)}
	}
	return ferr
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (t *Transport) artifact(ctx context.Context, req transport.SwapRequest) (io.ReadCloser, string, error) {
	if req.Artifact != "" {
		f, err := os.Open(req.Artifact)
		if err != nil {
			return nil, "", fmt.Errorf("artifact for consul %s: %w; give a local file path", req.To, err)
		}
		return f, "", nil
	}
	if t.resolver == nil {
		return nil, "", fmt.Errorf("no artifact for consul %s: the request names none and no resolver is set; use WithResolver", req.To)
	}
	body, sum, err := t.resolver(ctx, req.To)
	if err != nil {
		return nil, "", fmt.Errorf("resolve consul %s: %w", req.To, err)
	}
	if body == nil {
		return nil, "", fmt.Errorf("resolver returned no body for consul %s", req.To)
	}
	if sum == "" {
		body.Close()
		return nil, "", fmt.Errorf("resolver returned no checksum for consul %s; return the release's SHA-256", req.To)
	}
	return body, sum, nil
}

// version runs VersionCmd and parses its output.
func (c *conn) version(ctx context.Context, v Vars) (string, error) {
	argv, err := c.h.versionTp.Render(v)
	if err != nil {
		return "", err
	}
	r, err := c.must(ctx, "version", argv, nil)
	if err != nil {
		return "", err
	}
	return parseVersion(string(r.stdout))
}

// running runs CheckCmd: exit 0 is running, any other exit is not. For a
// systemd unit (ServiceSystemd) it is ActiveState active (or reloading).
func (c *conn) running(ctx context.Context, v Vars) (bool, error) {
	if c.h.systemd() {
		s, err := c.unit(ctx)
		if err != nil {
			return false, err
		}
		return s.running(), nil
	}
	argv, err := c.h.check.Render(v)
	if err != nil {
		return false, err
	}
	r, err := c.run(ctx, "check", argv, nil, 0)
	if err != nil {
		return false, err
	}
	return r.exit == 0, nil
}

// waitRunning polls CheckCmd until it reports want, for at most d.
func (c *conn) waitRunning(ctx context.Context, v Vars, want bool, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	delay := 50 * time.Millisecond
	for {
		got, err := c.running(wctx, v)
		if err == nil && got == want {
			return nil
		}
		if wctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if want {
				return fmt.Errorf("%w: node %s: the agent is not running %v after the start (StartTimeout); check StartCmd and the agent's log", transport.ErrNotRunning, v.Node, d)
			}
			return fmt.Errorf("node %s: the agent is still running %v after the stop (StopTimeout); check StopCmd, or set SupervisorRestarts if a supervisor restarts it", v.Node, d)
		}
		select {
		case <-wctx.Done():
		case <-time.After(delay):
		}
		if delay < time.Second {
			delay *= 2
		}
	}
}

var versionRE = regexp.MustCompile(`(?m)^\s*(?:Consul v)?([0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.+-]+)?)\s*$`)

// parseVersion reads "Consul vX.Y.Z" (the first line of `consul version`)
// or a bare X.Y.Z.
func parseVersion(out string) (string, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("version output %q holds no \"Consul vX.Y.Z\" line; check VersionCmd", firstLine(out))
	}
	return m[1], nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// Rollback puts the node back on the binary it ran before its last swap
// (<BinaryPath>.prev, which stays in place), stops the agent with SIGKILL
// semantics (no leave) and starts it again.
func (t *Transport) Rollback(ctx context.Context, node string) error {
	fail := func(err error) error {
		return &transport.SwapError{Node: node, Phase: transport.PhaseRollback, Err: err}
	}
	if err := transport.ValidateNode(node); err != nil {
		return &transport.SwapError{Node: node, Phase: transport.PhaseValidate, Err: err}
	}
	h, ok := t.lookup(node)
	if !ok {
		return &transport.SwapError{Node: node, Phase: transport.PhaseValidate, Err: fmt.Errorf("%w: no host configured for node %s", transport.ErrUnknownNode, node)}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	c, err := t.dial(ctx, h)
	if err != nil {
		return &transport.SwapError{Node: node, Phase: PhaseConnect, Err: err}
	}
	defer c.Close()
	v := h.vars(transport.SwapRequest{Node: node, StopMode: transport.StopKill})
	r, err := c.run(ctx, "rollback", []string{v.PrevPath, "version"}, nil, 0)
	if err != nil {
		return fail(err)
	}
	if r.exit != 0 {
		return fail(fmt.Errorf("node %s has no runnable previous binary at %s (exit %d: %s); nothing to roll back to", node, v.PrevPath, r.exit, firstLine(r.output)))
	}
	prev, err := parseVersion(string(r.stdout))
	if err != nil {
		return fail(err)
	}
	running, err := c.running(ctx, v)
	if err != nil {
		return fail(err)
	}
	tmp := v.BinaryPath + ".rollback"
	if _, err := c.must(ctx, "rollback", []string{"ln", "-f", "--", v.PrevPath, tmp}, nil); err != nil {
		return fail(err)
	}
	if _, err := c.must(ctx, "rollback", []string{"mv", "-f", "--", tmp, v.BinaryPath}, nil); err != nil {
		return fail(err)
	}
	v.To = prev
	if err := t.restart(ctx, c, v, prev, running, transport.PhaseRollback, transport.PhaseRollback, nil); err != nil {
		return err
	}
	return nil
}

// RunningVersion reports the version of the node's agent: VersionCmd's
// answer, if CheckCmd says the agent runs. An agent that does not run is an
// error wrapping transport.ErrNotRunning.
func (t *Transport) RunningVersion(ctx context.Context, node string) (string, error) {
	if err := transport.ValidateNode(node); err != nil {
		return "", &transport.SwapError{Node: node, Phase: transport.PhaseValidate, Err: err}
	}
	h, ok := t.lookup(node)
	if !ok {
		return "", &transport.SwapError{Node: node, Phase: transport.PhaseValidate, Err: fmt.Errorf("%w: no host configured for node %s", transport.ErrUnknownNode, node)}
	}
	c, err := t.dial(ctx, h)
	if err != nil {
		return "", &transport.SwapError{Node: node, Phase: PhaseConnect, Err: err}
	}
	defer c.Close()
	v := h.vars(transport.SwapRequest{Node: node})
	running, err := c.running(ctx, v)
	if err != nil {
		return "", &transport.SwapError{Node: node, Phase: transport.PhaseVerify, Err: err}
	}
	if !running {
		return "", &transport.SwapError{Node: node, Phase: transport.PhaseVerify, Err: fmt.Errorf("%w: node %s: CheckCmd reports the agent down", transport.ErrNotRunning, node)}
	}
	ver, err := c.version(ctx, v)
	if err != nil {
		return "", &transport.SwapError{Node: node, Phase: transport.PhaseVerify, Err: err}
	}
	return ver, nil
}

// SwapMany swaps the nodes of reqs with at most limit swaps in flight (a
// client wave; limit < 1 means 1). It returns one error per request, in
// order (nil for a swap that succeeded). Once ctx ends, requests not yet
// started are not started: their error wraps ctx.Err().
func (t *Transport) SwapMany(ctx context.Context, reqs []transport.SwapRequest, limit int) []error {
	if limit < 1 {
		limit = 1
	}
	errs := make([]error, len(reqs))
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, req := range reqs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = &transport.SwapError{Node: req.Node, Phase: transport.PhaseValidate, To: req.To, Err: fmt.Errorf("not started: %w", ctx.Err())}
			continue
		}
		if ctx.Err() != nil {
			<-sem
			errs[i] = &transport.SwapError{Node: req.Node, Phase: transport.PhaseValidate, To: req.To, Err: fmt.Errorf("not started: %w", ctx.Err())}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = t.Swap(ctx, req)
		}()
	}
	wg.Wait()
	return errs
}
