package ssh

import (
	"fmt"
	"net"
	"path"
	"strings"

	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
	"github.com/seed-e5e14ead/consul-upgrade/transport/internal/argv"
)

// Defaults for a Host's zero fields.
const (
	DefaultCommandTimeout = 2 * time.Minute
	DefaultStopTimeout    = 30 * time.Second
	DefaultStartTimeout   = time.Minute
	DefaultDialTimeout    = 15 * time.Second
	// DefaultUnitSettle is how long a systemd unit that is not
	// Type=notify must stay active, on one main process, after a start
	// before the swap counts the agent as up (Host.UnitSettle).
	DefaultUnitSettle = 2 * time.Second
	// DefaultJournalLines is how many lines of the unit's journal a
	// *UnitError carries.
	DefaultJournalLines = 30
)

// DefaultUnit is the systemd unit of a host whose Service is
// ServiceSystemd and whose Unit is empty.
const DefaultUnit = "consul.service"

// Service is how a host's agent process is managed: how the swap stops it,
// starts it and tells whether it runs.
type Service string

// The service managers a Host can name.
const (
	// ServiceCommands (also the empty Service) runs Host.StopCmd, waits
	// until Host.CheckCmd says the agent is down, then runs Host.StartCmd
	// and waits until CheckCmd says it runs. The default commands drive a
	// systemd unit named consul through systemctl kill / start /
	// is-active; a host without systemd gives its own (a pidfile recipe).
	ServiceCommands Service = "commands"
	// ServiceSupervisor runs StopCmd and lets a supervisor (systemd
	// Restart=always, upstart respawn, runit) start the agent again; the
	// swap waits only until CheckCmd says it runs. It is what
	// Host.SupervisorRestarts says.
	ServiceSupervisor Service = "supervisor"
	// ServiceSystemd drives the agent as the systemd unit Host.Unit
	// through systemctl and journalctl (Host.Systemctl, Host.Journalctl):
	// the stop mode's signal to the unit's main process (systemctl kill
	// --kill-who=main --signal=SIGKILL for stop mode kill: a plain
	// systemctl stop would send the unit's KillSignal, and a client with
	// leave_on_terminate would leave), a wait until that process is gone
	// (its MainPID changed, or the unit is inactive or failed), systemctl
	// start, and a wait until ActiveState is active (for a unit that is
	// not Type=notify: active on one main process for Host.UnitSettle).
	// A unit that ends failed, or is not active within StartTimeout, is a
	// *UnitError carrying its state and the tail of its journal
	// (journalctl -u UNIT -n 30). StopCmd, StartCmd, CheckCmd and
	// SupervisorRestarts do not apply and must be left unset.
	ServiceSystemd Service = "systemd"
)

// Default command templates, for a host whose agent runs as the systemd
// unit "consul".
var (
	DefaultStopCmd    = []string{"systemctl", "kill", "-s", "SIG{{.Signal}}", "consul"}
	DefaultStartCmd   = []string{"systemctl", "start", "consul"}
	DefaultCheckCmd   = []string{"systemctl", "is-active", "--quiet", "consul"}
	DefaultVersionCmd = []string{"{{.BinaryPath}}", "version"}
)

// Host is how to reach one node's host and drive its agent there.
//
// The command fields are argv templates: each element is a text/template
// over Vars (e.g. "{{.BinaryPath}}", "{{.To}}", "SIG{{.Signal}}"), rendered
// and then quoted with Quote, so a rendered value is always one argument.
// No shell runs the argv unless argv[0] names one ("sh", "-c", ...), and
// then values are best passed as positional parameters ($0, $1, ...), not
// spliced into the script.
type Host struct {
	// Addr is "host:port" or "host" (port 22).
	Addr string
	// User is the login user.
	User string
	// BinaryPath is the absolute path of the consul binary the agent runs.
	// The swap replaces it atomically and keeps the old one at
	// BinaryPath+".prev".
	BinaryPath string

	// StopCmd stops the agent, honouring {{.Signal}} (KILL for stop mode
	// kill, TERM for terminate, INT for leave: a Consul client leaves
	// gracefully on SIGINT). Default DefaultStopCmd.
	StopCmd []string
	// StartCmd starts the agent and returns (it must not wait for the
	// agent to exit). Default DefaultStartCmd. Not run when
	// SupervisorRestarts is set.
	StartCmd []string
	// SupervisorRestarts says that a supervisor (systemd Restart=always,
	// upstart respawn, runit) starts the agent again by itself after
	// StopCmd; the swap then neither waits for the agent to be down nor
	// runs StartCmd, and only waits for it to run.
	SupervisorRestarts bool
	// CheckCmd exits 0 when the agent is running and non-zero when it is
	// not. Default DefaultCheckCmd.
	CheckCmd []string
	// VersionCmd prints the version of the agent's binary, either as
	// "Consul vX.Y.Z" (what `consul version` prints) or as a bare X.Y.Z.
	// Default DefaultVersionCmd.
	VersionCmd []string

	// CommandTimeout bounds each remote command (default
	// DefaultCommandTimeout), StopTimeout the wait for the agent to be
	// down (DefaultStopTimeout), StartTimeout the wait for it to run
	// (DefaultStartTimeout), DialTimeout the connection and SSH handshake
	// (DefaultDialTimeout).
	CommandTimeout, StopTimeout, StartTimeout, DialTimeout time.Duration
	// SkipRemoteTimeout stops the transport from wrapping each remote
	// command in `timeout -s KILL N` (for hosts without a timeout
	// command). A hung command is then only cut locally: the connection
	// closes, but the remote process may live on.
	SkipRemoteTimeout bool

	// Service is how the agent is managed: ServiceCommands (the default,
	// ""), ServiceSupervisor or ServiceSystemd; see their documentation.
	Service Service
	// Unit is the agent's systemd unit, for ServiceSystemd (default
	// DefaultUnit).
	Unit string
	// Systemctl and Journalctl are the commands ServiceSystemd runs, as
	// argv prefixes (default {"systemctl"} and {"journalctl"}), e.g.
	// {"sudo", "-n", "systemctl"} for a login user that is not root.
	Systemctl, Journalctl []string
	// UnitSettle is how long a unit that is not Type=notify must be seen
	// active on one main process after a start (default
	// DefaultUnitSettle): systemd reports a Type=simple unit active as
	// soon as it forked, so an agent that exits on a bad config would
	// otherwise count as up.
	UnitSettle time.Duration

	// KeyFile is a private key (unencrypted, PEM or OpenSSH) for this
	// host only, tried before the transport's own keys (WithKeyFile,
	// WithKey, WithSigner, WithAgent). New reads it.
	KeyFile string
}

// Vars are the values a command template can use.
type Vars struct {
	Node       string
	Role       transport.Role
	From       string // "" when unknown
	To         string
	StopMode   transport.StopMode
	Signal     string // KILL, TERM or INT, from StopMode
	BinaryPath string
	PrevPath   string // BinaryPath + ".prev"
}

// signalFor maps a stop mode to the signal its default stop sends.
func signalFor(m transport.StopMode) string {
	switch m {
	case transport.StopTerminate:
		return "TERM"
	case transport.StopLeave:
		return "INT"
	default:
		return "KILL"
	}
}

// host is a validated Host with parsed templates and defaults filled in.
type host struct {
	Host
	node                          string
	addr                          string
	stop, start, check, versionTp argv.Command
	key                           gossh.Signer // from KeyFile, read by New
}

// systemd reports whether the host's agent is a systemd unit driven by
// ServiceSystemd.
func (p *host) systemd() bool { return p.Service == ServiceSystemd }

// supervised reports whether a supervisor starts the agent again after a
// stop (ServiceSupervisor, or SupervisorRestarts).
func (p *host) supervised() bool {
	return p.Service == ServiceSupervisor || p.SupervisorRestarts
}

func (h Host) prepare(node string) (*host, error) {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if err := transport.ValidateNode(node); err != nil {
		add("%v", err)
	}
	addr := h.Addr
	if addr == "" {
		add("Addr is empty; give host:port, e.g. 10.0.0.5:22")
	} else if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "22")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add("Addr %q is not host:port (%v); give e.g. 10.0.0.5:22", h.Addr, err)
		}
	}
	if h.User == "" {
		add("User is empty; give the login user")
	}
	switch {
	case h.BinaryPath == "":
		add("BinaryPath is empty; give the absolute path of the consul binary, e.g. /usr/local/bin/consul")
	case !path.IsAbs(h.BinaryPath) || path.Clean(h.BinaryPath) != h.BinaryPath:
		add("BinaryPath %q is not a clean absolute path; write it like /usr/local/bin/consul", h.BinaryPath)
	case strings.IndexFunc(h.BinaryPath, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		add("BinaryPath %q holds a control character; use a plain path", h.BinaryPath)
	case h.BinaryPath == "/":
		add("BinaryPath is \"/\"; name the consul binary")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"CommandTimeout", h.CommandTimeout}, {"StopTimeout", h.StopTimeout}, {"StartTimeout", h.StartTimeout}, {"DialTimeout", h.DialTimeout}, {"UnitSettle", h.UnitSettle}} {
		if d.v < 0 {
			add("%s is %v; give a positive duration or 0 for the default", d.name, d.v)
		}
	}
	switch h.Service {
	case "", ServiceCommands, ServiceSupervisor:
		if h.Unit != "" || h.Systemctl != nil || h.Journalctl != nil {
			add("Unit, Systemctl and Journalctl are for Service %q; set Service to %q or leave them unset", ServiceSystemd, ServiceSystemd)
		}
	case ServiceSystemd:
		var set []string
		for _, f := range []struct {
			name string
			set  bool
		}{{"StopCmd", h.StopCmd != nil}, {"StartCmd", h.StartCmd != nil}, {"CheckCmd", h.CheckCmd != nil}, {"SupervisorRestarts", h.SupervisorRestarts}} {
			if f.set {
				set = append(set, f.name)
			}
		}
		if len(set) > 0 {
			add("Service %q drives the unit through systemctl, but %s %s set; leave %s unset, or set Service to %q to run your own commands", ServiceSystemd, strings.Join(set, ", "), isAre(len(set)), strings.Join(set, ", "), ServiceCommands)
		}
		if strings.ContainsAny(h.Unit, "/\x00\n") || strings.HasPrefix(h.Unit, "-") {
			add("Unit %q is not a systemd unit name; give e.g. consul.service", h.Unit)
		}
		for _, c := range []struct {
			name string
			argv []string
		}{{"Systemctl", h.Systemctl}, {"Journalctl", h.Journalctl}} {
			if c.argv != nil && (len(c.argv) == 0 || c.argv[0] == "") {
				add("%s is empty; give the command (argv), e.g. [\"sudo\", \"-n\", \"systemctl\"], or leave it nil for the default", c.name)
			}
		}
	default:
		add("Service %q is not one of %q, %q, %q; name how the agent is managed", h.Service, ServiceCommands, ServiceSupervisor, ServiceSystemd)
	}
	p := &host{Host: h, node: node, addr: addr}
	parse := func(field string, args, def []string) argv.Command {
		if args == nil {
			args = def
		}
		if len(args) == 0 {
			add("%s is empty; give a command (argv) or leave it nil for the default %q", field, def)
			return nil
		}
		cmd, bad := argv.Parse(field, args)
		problems = append(problems, bad...)
		return cmd
	}
	p.stop = parse("StopCmd", h.StopCmd, DefaultStopCmd)
	p.start = parse("StartCmd", h.StartCmd, DefaultStartCmd)
	p.check = parse("CheckCmd", h.CheckCmd, DefaultCheckCmd)
	p.versionTp = parse("VersionCmd", h.VersionCmd, DefaultVersionCmd)
	if len(problems) > 0 {
		return nil, fmt.Errorf("host for node %q: %s", node, strings.Join(problems, "; "))
	}
	// Render every template once with sample values, so a field name typo
	// ({{.Nodes}}) is found by New, not in the middle of an upgrade.
	sample := p.vars(transport.SwapRequest{Node: node, Role: transport.RoleServer, From: "1.0.0", To: "1.0.1", StopMode: transport.StopKill})
	for _, cmd := range []argv.Command{p.stop, p.start, p.check, p.versionTp} {
		if _, err := cmd.Render(sample); err != nil {
			return nil, fmt.Errorf("host for node %q: %w", node, err)
		}
	}
	if p.CommandTimeout == 0 {
		p.CommandTimeout = DefaultCommandTimeout
	}
	if p.StopTimeout == 0 {
		p.StopTimeout = DefaultStopTimeout
	}
	if p.StartTimeout == 0 {
		p.StartTimeout = DefaultStartTimeout
	}
	if p.DialTimeout == 0 {
		p.DialTimeout = DefaultDialTimeout
	}
	if p.systemd() {
		if p.Unit == "" {
			p.Unit = DefaultUnit
		}
		if p.Systemctl == nil {
			p.Systemctl = []string{"systemctl"}
		}
		if p.Journalctl == nil {
			p.Journalctl = []string{"journalctl"}
		}
		if p.UnitSettle == 0 {
			p.UnitSettle = DefaultUnitSettle
		}
	}
	return p, nil
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func (p *host) vars(req transport.SwapRequest) Vars {
	return Vars{
		Node: p.node, Role: req.Role, From: req.From, To: req.To,
		StopMode: req.StopMode, Signal: signalFor(req.StopMode),
		BinaryPath: p.BinaryPath, PrevPath: p.BinaryPath + ".prev",
	}
}
