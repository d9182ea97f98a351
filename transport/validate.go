package transport

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// Limits that ValidateRequest enforces.
const (
	// MaxNodeNameLen is the longest node name a transport accepts.
	MaxNodeNameLen = 128
	// MaxVersionLen is the longest version string a transport accepts.
	MaxVersionLen = planner.MaxVersionLen
)

// nodeNameRE: a letter or digit, then letters, digits, '.', '_' or '-'.
// No shell metacharacters, no whitespace, no path separators, and no
// leading '.' or '-' (so neither "../x" nor "-rf" gets through).
var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// invalidError lists every problem found in one request. It wraps
// ErrInvalidRequest.
type invalidError struct {
	problems []string
}

func (e *invalidError) Error() string { return strings.Join(e.problems, "; ") }

func (e *invalidError) Unwrap() error { return ErrInvalidRequest }

// ValidateNode checks that name is a node name a transport may use in a
// command line, a file path or a URL: 1 to 128 characters, letters, digits,
// '.', '_' and '-', starting with a letter or digit. The error it returns
// wraps ErrInvalidRequest.
func ValidateNode(name string) error {
	if p := nodeProblem(name); p != "" {
		return &invalidError{problems: []string{p}}
	}
	return nil
}

// ValidateVersion checks that v is a Consul release version in its one
// canonical spelling: X.Y.Z with no leading zeros, no "v" prefix and no
// whitespace, optionally followed by a pre-release suffix after '-' and build
// metadata after '+' (1.13.9, 1.14.0-rc1, 1.15.2+ent). It is the planner's
// parser (planner.ParseVersion), so a version the planner and the upgrade
// runner accept is never refused here. Compare versions with
// planner.SameVersion, not ==. The error it returns wraps
// ErrInvalidRequest and names the fix ("write it as 1.13.9").
func ValidateVersion(v string) error {
	if p := versionProblem("version", v); p != "" {
		return &invalidError{problems: []string{p}}
	}
	return nil
}

// ValidateRequest checks a swap request before anything is touched, and
// reports every problem it finds, not only the first. Every transport calls
// it first, so that a refused request never reaches a host.
//
// It refuses: a node name outside ValidateNode's rules; a To version (or a
// From version other than "") outside ValidateVersion's rules; a role other
// than server or client; a stop mode other than kill, terminate or leave
// (an empty mode is refused too: the caller resolves its default); an
// artifact holding a control character; and StopLeave for a server.
//
// Why leave is refused for servers: an in-place server swap must not take
// the server out of the Raft peer set. A server running "consul leave"
// keeps running Raft while it drains, drives its term up and forces leader
// elections (Consul PR #17758 removed the leave step from the upgrade guide
// for this reason). Servers >= 0.7 do not leave on SIGTERM, so kill and
// terminate cover every in-place server swap; retiring a server for good is
// Provisioner.Retire's job. Clients may leave.
//
// The error is a *SwapError with Phase PhaseValidate that wraps
// ErrInvalidRequest.
func ValidateRequest(req SwapRequest) error {
	var problems []string
	add := func(p string) {
		if p != "" {
			problems = append(problems, p)
		}
	}
	add(nodeProblem(req.Node))
	add(versionProblem("to version", req.To))
	if req.From != "" {
		add(versionProblem("from version", req.From))
	}
	switch req.Role {
	case RoleServer, RoleClient:
	default:
		add(fmt.Sprintf("role %q is neither %q nor %q; set the node's role", req.Role, RoleServer, RoleClient))
	}
	switch req.StopMode {
	case StopKill, StopTerminate:
	case StopLeave:
		if req.Role == RoleServer {
			add("stop mode \"leave\" is refused for servers (a leaving server drops out of the raft peers and forces elections); use \"kill\" or \"terminate\" for an in-place server swap")
		}
	default:
		add(fmt.Sprintf("stop mode %q is not one of \"kill\", \"terminate\", \"leave\"; choose one (the planner's default mode must be resolved before the swap)", req.StopMode))
	}
	if i := strings.IndexFunc(req.Artifact, isControl); i >= 0 {
		add(fmt.Sprintf("artifact %q holds a control character at byte %d; name a plain path or URL", req.Artifact, i))
	}
	if len(problems) == 0 {
		return nil
	}
	return &SwapError{Node: req.Node, Phase: PhaseValidate, To: req.To, Err: &invalidError{problems: problems}}
}

func nodeProblem(name string) string {
	switch {
	case name == "":
		return "node name is empty; name the agent's node"
	case len(name) > MaxNodeNameLen:
		return fmt.Sprintf("node name %.20q... is %d bytes long (limit %d); use the agent's node name", name, len(name), MaxNodeNameLen)
	case !nodeNameRE.MatchString(name):
		return fmt.Sprintf("node name %q may hold only letters, digits, '.', '_' and '-', starting with a letter or digit; use the agent's node name", name)
	}
	return ""
}

// versionProblem judges v with the planner's parser, so that a version the
// planner accepts is never refused here. The problem names the value and the
// parser's fix, without the planner's own wording around it.
func versionProblem(what, v string) string {
	_, err := planner.ParseVersion(v)
	if err == nil {
		return ""
	}
	var ve *planner.VersionError
	if errors.As(err, &ve) && ve.Err != nil {
		err = ve.Err
	}
	return fmt.Sprintf("%s %q is not a release version: %v", what, v, err)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
