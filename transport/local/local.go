package local

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

// Default timeouts; change them per transport with SetStartTimeout and
// SetStopTimeout.
const (
	// DefaultStartTimeout bounds how long a start waits for the agent's
	// HTTP API to answer with the expected version.
	DefaultStartTimeout = 30 * time.Second
	// DefaultStopTimeout bounds how long terminate and leave wait for the
	// process to exit before it is killed.
	DefaultStopTimeout = 20 * time.Second
	// DefaultHTTPPort is the Consul HTTP port used when Agent.HTTPPort is 0.
	DefaultHTTPPort = 8500
)

// BinaryResolver maps a Consul version ("1.13.9") to the path of an
// executable consul binary of that version.
type BinaryResolver func(version string) (path string, err error)

// Dir resolves versions to files named consul-<version> inside dir (the
// layout scripts/build-consul.sh writes). A missing or non-executable file is
// an error that names the file and how to build it.
func Dir(dir string) BinaryResolver {
	return func(version string) (string, error) {
		if err := transport.ValidateVersion(version); err != nil {
			return "", fmt.Errorf("consul binary for %q: %w", version, err)
		}
		path := filepath.Join(dir, "consul-"+version)
		fi, err := os.Stat(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("consul %s: binary %s does not exist; build it with scripts/build-consul.sh %s (set CONSUL_UPGRADE_BIN_DIR=%s to build into this directory)", version, path, version, dir)
			}
			return "", fmt.Errorf("consul %s: %w", version, err)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("consul %s: %s is not an executable file (mode %s); rebuild it with scripts/build-consul.sh %s", version, path, fi.Mode(), version)
		}
		return path, nil
	}
}

// Agent describes one Consul agent run by the transport. The transport adds
// `agent -node=<Name> -bind=<Address> -client=<Address> -data-dir=<DataDir>`,
// `-server` for servers, `-config-dir=<ConfigDir>` when set and
// `-http-port=<HTTPPort>` when set; Args come after those (retry-join,
// bootstrap-expect, log level and the like).
type Agent struct {
	// Name is the Consul node name, unique in the transport.
	Name string
	// Role is server or client.
	Role transport.Role
	// Version is the Consul version the agent runs until its first swap.
	Version string
	// Address is the IP the agent binds and serves its client APIs on; each
	// agent needs its own (127.0.0.x on one host).
	Address string
	// HTTPPort is the agent's HTTP port; 0 means DefaultHTTPPort.
	HTTPPort int
	// DataDir is the agent's data directory, kept across swaps.
	DataDir string
	// ConfigDir is an optional configuration directory, kept across swaps.
	ConfigDir string
	// Args are extra agent arguments, appended after the ones above.
	Args []string
	// ArgsFor, when set, returns more arguments for the version the agent
	// is about to start on, appended after Args at every start: flags whose
	// spelling or meaning changed between Consul releases (-dc before 0.7,
	// -hcl from 1.0, raft_protocol while older servers remain). Swap calls
	// it before it stops the agent, so an error refuses the swap and the
	// agent keeps running its old binary.
	ArgsFor func(version string) ([]string, error)
	// LogPath receives the agent's stdout and stderr (appended, across
	// restarts); "" means <DataDir>/../<Name>.log.
	LogPath string
}

// HTTPAddr is the agent's HTTP address, host:port.
func (a Agent) HTTPAddr() string {
	port := a.HTTPPort
	if port == 0 {
		port = DefaultHTTPPort
	}
	return netipAddrPort(a.Address, port)
}

func netipAddrPort(ip string, port int) string {
	if addr, err := netip.ParseAddr(ip); err == nil {
		return netip.AddrPortFrom(addr, uint16(port)).String()
	}
	return ip + ":" + strconv.Itoa(port)
}

func (a Agent) logPath() string {
	if a.LogPath != "" {
		return a.LogPath
	}
	return filepath.Join(filepath.Dir(filepath.Clean(a.DataDir)), a.Name+".log")
}

// Transport runs Consul agents as child processes of this process. It
// implements transport.Transport, transport.Rollbacker,
// transport.VersionReporter, transport.ArtifactChecker and (once
// SetProvisioning gave it a template) transport.Provisioner. Its methods are safe for concurrent use;
// operations on one node are serialised.
type Transport struct {
	bin    BinaryResolver
	agents map[string]*agent
	order  []string

	mu           sync.Mutex // guards the fields below, and agents and order
	closed       bool
	provision    *ProvisionTemplate // nil: Provision is refused
	provisioned  int                // agents made by Provision so far
	usedAddrs    map[string]bool    // addresses given out, never reused
	startTimeout time.Duration
	stopTimeout  time.Duration
	onStart      func(node string, pid int)
	starts       uint64

	versions versionCache // CheckArtifact's `consul version` answers, by file
}

// New checks the agents and returns a transport for them; nothing is started
// until Start or Swap. Every problem found is reported (joined), each naming
// the agent, the value and the rule: names, addresses, data directories and
// log files must be unique; roles must be server or client; versions X.Y.Z;
// addresses IPs.
func New(bin BinaryResolver, agents ...Agent) (*Transport, error) {
	var errs []error
	if bin == nil {
		errs = append(errs, errors.New("local: binary resolver is nil; pass local.Dir(<directory of consul-<version> binaries>)"))
	}
	if len(agents) == 0 {
		errs = append(errs, errors.New("local: no agents; pass at least one local.Agent"))
	}
	seenName := map[string]int{}
	seenAddr := map[string]string{}
	seenDir := map[string]string{}
	for i, a := range agents {
		subject := fmt.Sprintf("agent %q", a.Name)
		if err := transport.ValidateNode(a.Name); err != nil {
			errs = append(errs, fmt.Errorf("agent #%d: %w", i+1, err))
			subject = fmt.Sprintf("agent #%d", i+1)
		} else if j, dup := seenName[a.Name]; dup {
			errs = append(errs, fmt.Errorf("agent #%d: node name %q is also used by agent #%d; node names must be unique", i+1, a.Name, j))
		} else {
			seenName[a.Name] = i + 1
		}
		if a.Role != transport.RoleServer && a.Role != transport.RoleClient {
			errs = append(errs, fmt.Errorf("%s: role %q is not %q or %q", subject, a.Role, transport.RoleServer, transport.RoleClient))
		}
		if err := transport.ValidateVersion(a.Version); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", subject, err))
		}
		if addr, err := netip.ParseAddr(a.Address); err != nil {
			errs = append(errs, fmt.Errorf("%s: address %q is not an IP address; give each agent its own, e.g. 127.0.1.11", subject, a.Address))
		} else {
			key := addr.String() + ":" + strconv.Itoa(a.HTTPPort)
			if other, dup := seenAddr[key]; dup {
				errs = append(errs, fmt.Errorf("%s: address %s is also used by %s; give every agent its own loopback address", subject, a.Address, other))
			} else {
				seenAddr[key] = subject
			}
		}
		if a.HTTPPort < 0 || a.HTTPPort > 65535 {
			errs = append(errs, fmt.Errorf("%s: http port %d is outside 0..65535 (0 means %d)", subject, a.HTTPPort, DefaultHTTPPort))
		}
		if a.DataDir == "" {
			errs = append(errs, fmt.Errorf("%s: data dir is empty; every agent needs its own", subject))
		}
		paths := []struct{ what, path string }{{"data dir", a.DataDir}, {"log file", a.logPath()}}
		if a.ConfigDir != "" {
			paths = append(paths, struct{ what, path string }{"config dir", a.ConfigDir})
		}
		for _, p := range paths {
			if p.path == "" || (p.what == "log file" && a.DataDir == "" && a.LogPath == "") {
				continue
			}
			key := filepath.Clean(p.path)
			if abs, err := filepath.Abs(key); err == nil {
				key = abs
			}
			if other, dup := seenDir[key]; dup {
				errs = append(errs, fmt.Errorf("%s: %s %s is also the %s; every agent needs its own", subject, p.what, p.path, other))
			} else {
				seenDir[key] = fmt.Sprintf("%s of %s", p.what, subject)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	t := &Transport{
		bin:          bin,
		agents:       make(map[string]*agent, len(agents)),
		startTimeout: DefaultStartTimeout,
		stopTimeout:  DefaultStopTimeout,
	}
	for _, a := range agents {
		a.Args = append([]string(nil), a.Args...)
		t.agents[a.Name] = &agent{spec: a, version: a.Version, sem: make(chan struct{}, 1)}
		t.order = append(t.order, a.Name)
	}
	return t, nil
}

// SetStartTimeout sets how long a start (in Start, Swap or Rollback) waits
// for the agent to answer; d <= 0 restores DefaultStartTimeout. The ctx of
// the call can end the wait sooner.
func (t *Transport) SetStartTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultStartTimeout
	}
	t.mu.Lock()
	t.startTimeout = d
	t.mu.Unlock()
}

// SetStopTimeout sets how long terminate and leave wait for the process to
// exit before it is killed; d <= 0 restores DefaultStopTimeout.
func (t *Transport) SetStopTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultStopTimeout
	}
	t.mu.Lock()
	t.stopTimeout = d
	t.mu.Unlock()
}

// OnStart registers a function called with the node name and process id
// each time an agent process is started (a test rig records the ids so that
// a later run can clean up after a crash). It must not call the transport.
func (t *Transport) OnStart(f func(node string, pid int)) {
	t.mu.Lock()
	t.onStart = f
	t.mu.Unlock()
}

// Nodes returns the agents' names in the order given to New, then the
// provisioned ones; retired agents are gone.
func (t *Transport) Nodes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.order...)
}

// lookup returns the agent of node (agents come and go with Provision and
// Retire, so the map is read under t.mu).
func (t *Transport) lookup(node string) (*agent, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.agents[node]
	return a, ok
}

// Agent returns the description of a node as given to New, with Version set
// to the version it runs (or will run on its next start) now.
func (t *Transport) Agent(node string) (Agent, bool) {
	a, ok := t.lookup(node)
	if !ok {
		return Agent{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	spec := a.spec
	spec.Version = a.version
	spec.Args = append([]string(nil), spec.Args...)
	spec.LogPath = spec.logPath()
	return spec, true
}

// LogPath returns the file that receives the node's output ("" for an
// unknown node).
func (t *Transport) LogPath(node string) string {
	a, ok := t.lookup(node)
	if !ok {
		return ""
	}
	return a.spec.logPath()
}

func (t *Transport) timeouts() (start, stop time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.startTimeout, t.stopTimeout
}

func (t *Transport) agent(node string) (*agent, error) {
	a, ok := t.lookup(node)
	if !ok {
		known := strings.Join(t.Nodes(), ", ")
		return nil, fmt.Errorf("%w: node %q is not one of this transport's agents (%s)", transport.ErrUnknownNode, node, known)
	}
	return a, nil
}
