package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// maxOutput bounds how much of a command's output is kept (in errors, and
// for parsing).
const maxOutput = 64 << 10

// conn is one SSH connection to one host, for one swap.
type conn struct {
	h      *host
	client *gossh.Client
	stop   func() bool // stops the ctx watcher
}

// dial connects to the host, checking its key, within DialTimeout and ctx.
// A host that cannot be reached is an *UnreachableError (the context's
// error, when ctx ended, is returned as it is).
func (t *Transport) dial(ctx context.Context, h *host) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	auth, closeAuth, err := t.auth(h)
	if err != nil {
		return nil, err
	}
	defer closeAuth()
	unreachable := func(stage string, err error) error {
		return &UnreachableError{Node: h.node, Addr: h.addr, User: h.User, Stage: stage, Err: err}
	}

	var keyErr error
	keyOK := false // the host key was checked and trusted: what fails next is the login
	cfg := &gossh.ClientConfig{
		User:    h.User,
		Auth:    auth,
		Timeout: h.DialTimeout,
	}
	if t.insecure {
		cfg.HostKeyCallback = func(string, net.Addr, gossh.PublicKey) error { keyOK = true; return nil }
	} else {
		cb, algos := t.hostKeys.callback, t.hostKeys.algorithms(h.addr)
		cfg.HostKeyAlgorithms = algos
		cfg.HostKeyCallback = func(hostname string, remote net.Addr, key gossh.PublicKey) error {
			err := cb(hostname, remote, key)
			if err != nil {
				keyErr = t.hostKeys.explain(h.addr, key, err)
			} else {
				keyOK = true
			}
			return err
		}
	}

	dctx, cancel := context.WithTimeout(ctx, h.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", h.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w", h.addr, ctx.Err())
		}
		return nil, unreachable("connect", err)
	}
	deadline, _ := dctx.Deadline()
	_ = nc.SetDeadline(deadline)
	unwatch := context.AfterFunc(dctx, func() { _ = nc.Close() })
	c, chans, reqs, err := gossh.NewClientConn(nc, h.addr, cfg)
	unwatch()
	if err != nil {
		_ = nc.Close()
		switch {
		case keyErr != nil:
			return nil, unreachable("host key", keyErr)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("ssh handshake with %s: %w", h.addr, ctx.Err())
		case dctx.Err() != nil:
			stage := "handshake"
			if keyOK {
				stage = "login"
			}
			return nil, unreachable(stage, fmt.Errorf("ssh handshake with %s (dial timeout %v): %w", h.addr, h.DialTimeout, dctx.Err()))
		case keyOK:
			return nil, unreachable("login", fmt.Errorf("ssh login to %s as %s: %w", h.addr, h.User, err))
		default:
			return nil, unreachable("handshake", fmt.Errorf("ssh handshake with %s: %w", h.addr, err))
		}
	}
	_ = nc.SetDeadline(time.Time{})
	client := gossh.NewClient(c, chans, reqs)
	// The whole connection dies with ctx: any command in flight returns.
	stop := context.AfterFunc(ctx, func() { _ = client.Close() })
	return &conn{h: h, client: client, stop: stop}, nil
}

func (c *conn) Close() {
	c.stop()
	_ = c.client.Close()
}

// result is what a remote command produced.
type result struct {
	stdout []byte
	output string // stderr then stdout, bounded, for errors
	exit   int
}

// run runs argv on the host (quoted), feeding stdin if not nil, bounded by
// the host's CommandTimeout (timeout overrides it when > 0). A non-zero exit
// is not an error here: callers decide; result.exit holds it. Errors are
// *CommandError.
func (c *conn) run(ctx context.Context, step string, argv []string, stdin io.Reader, timeout time.Duration) (result, error) {
	if timeout <= 0 {
		timeout = c.h.CommandTimeout
	}
	line, err := Command(argv)
	if err != nil {
		return result{exit: -1}, &CommandError{Node: c.h.node, Step: step, Command: fmt.Sprintf("%q", argv), Exit: -1, Err: err}
	}
	shown := line
	if !c.h.SkipRemoteTimeout {
		secs := int64((timeout + time.Second - 1) / time.Second)
		line = "timeout -s KILL " + strconv.FormatInt(secs+1, 10) + " " + line
	}
	cerr := func(exit int, out string, err error) error {
		return &CommandError{Node: c.h.node, Step: step, Command: shown, Exit: exit, Output: out, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return result{exit: -1}, cerr(-1, "", err)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sess, err := c.client.NewSession()
	if err != nil {
		if cctx.Err() != nil {
			return result{exit: -1}, cerr(-1, "", cctx.Err())
		}
		return result{exit: -1}, cerr(-1, "", fmt.Errorf("open session: %w", err))
	}
	defer sess.Close()
	var stdout, stderr capped
	sess.Stdout, sess.Stderr = &stdout, &stderr
	if stdin != nil {
		sess.Stdin = stdin
	}
	unwatch := context.AfterFunc(cctx, func() { _ = sess.Close() })
	runErr := sess.Run(line)
	unwatch()
	out := stderr.String() + stdout.String()
	if cctx.Err() != nil {
		err := cctx.Err()
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("cut after %v (the host's command timeout): %w", timeout, err)
		}
		return result{exit: -1, output: out}, cerr(-1, out, err)
	}
	var exitErr *gossh.ExitError
	switch {
	case runErr == nil:
		return result{stdout: stdout.Bytes(), output: out, exit: 0}, nil
	case errors.As(runErr, &exitErr):
		return result{stdout: stdout.Bytes(), output: out, exit: exitErr.ExitStatus()}, nil
	default:
		return result{exit: -1, output: out}, cerr(-1, out, runErr)
	}
}

// must runs argv and turns a non-zero exit into a *CommandError.
func (c *conn) must(ctx context.Context, step string, argv []string, stdin io.Reader) (result, error) {
	r, err := c.run(ctx, step, argv, stdin, 0)
	if err != nil {
		return r, err
	}
	if r.exit != 0 {
		line, _ := Command(argv)
		return r, &CommandError{Node: c.h.node, Step: step, Command: line, Exit: r.exit, Output: r.output, Err: fmt.Errorf("exit status %d", r.exit)}
	}
	return r, nil
}

// capped is a bounded buffer: it keeps the first maxOutput bytes and
// discards the rest (reporting them as written, so the command never blocks).
type capped struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := maxOutput - c.b.Len(); room > 0 {
		if len(p) > room {
			c.b.Write(p[:room])
		} else {
			c.b.Write(p)
		}
	}
	return len(p), nil
}

func (c *capped) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.b.Bytes())
}

func (c *capped) String() string { return string(c.Bytes()) }

// hostKeys verifies host keys against known_hosts files.
type hostKeys struct {
	files    []string
	callback gossh.HostKeyCallback
}

func newHostKeys(files []string) (*hostKeys, error) {
	cb, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts %v: %w; create it (ssh-keyscan HOST >> FILE, after checking the fingerprint) or name another with WithKnownHosts", files, err)
	}
	return &hostKeys{files: files, callback: cb}, nil
}

// algorithms returns the host key algorithms known_hosts holds keys of for
// addr, so the server is asked for a key type we can check (otherwise it may
// offer, say, its ECDSA key while known_hosts lists its ed25519 key). nil
// when known_hosts has none: the default list, and an unknown-key error.
func (k *hostKeys) algorithms(addr string) []string {
	probe := probeKey{}
	err := k.callback(addr, &net.TCPAddr{IP: net.IPv4zero}, probe)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, w := range ke.Want {
		var algos []string
		switch w.Key.Type() {
		case gossh.KeyAlgoRSA:
			algos = []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256, gossh.KeyAlgoRSA}
		default:
			algos = []string{w.Key.Type()}
		}
		for _, a := range algos {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// explain turns a known_hosts refusal into a *HostKeyError.
func (k *hostKeys) explain(addr string, key gossh.PublicKey, err error) error {
	he := &HostKeyError{Host: addr, KeyType: key.Type(), Fingerprint: gossh.FingerprintSHA256(key), Files: k.files}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		he.Revoked = true
	case errors.As(err, &ke):
		for _, w := range ke.Want {
			he.Known = append(he.Known, gossh.FingerprintSHA256(w.Key)+" ("+w.Key.Type()+", "+w.String()+")")
		}
	default:
		return fmt.Errorf("host key of %s: %w", addr, err)
	}
	return he
}

// probeKey is a key no known_hosts lists; asking the callback about it
// yields the keys it does list.
type probeKey struct{}

func (probeKey) Type() string                                   { return "consul-upgrade-probe" }
func (probeKey) Marshal() []byte                                { return []byte("consul-upgrade-probe") }
func (probeKey) Verify(data []byte, sig *gossh.Signature) error { return errors.New("probe key") }
