package transport_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/planner/plannertest"
	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

func good() transport.SwapRequest {
	return transport.SwapRequest{Node: "s1", Role: transport.RoleServer, From: "1.12.9", To: "1.13.9", StopMode: transport.StopKill}
}

func TestValidateRequest(t *testing.T) {
	tests := []struct {
		name string
		edit func(r *transport.SwapRequest)
		want string // "" means accepted; else a fragment of the error text
	}{
		{"a plain server swap with kill is accepted", func(r *transport.SwapRequest) {}, ""},
		{"an unknown from version is accepted", func(r *transport.SwapRequest) { r.From = "" }, ""},
		{"a pre-release target is accepted", func(r *transport.SwapRequest) { r.To = "1.14.0-rc1" }, ""},
		{"a build suffix is accepted", func(r *transport.SwapRequest) { r.To = "1.15.2+ent" }, ""},
		{"a node name with dots, dashes and underscores is accepted", func(r *transport.SwapRequest) { r.Node = "consul-srv_1.dc1" }, ""},
		{"a 128-byte node name is accepted", func(r *transport.SwapRequest) { r.Node = strings.Repeat("a", 128) }, ""},
		{"a server may stop with terminate", func(r *transport.SwapRequest) { r.StopMode = transport.StopTerminate }, ""},
		{"a client may leave", func(r *transport.SwapRequest) { r.Role = transport.RoleClient; r.StopMode = transport.StopLeave }, ""},
		{"an artifact path is accepted", func(r *transport.SwapRequest) { r.Artifact = "/opt/consul/1.13.9/consul" }, ""},

		{"a node name with a command separator is refused", func(r *transport.SwapRequest) { r.Node = "s1; rm -rf /" }, `node name "s1; rm -rf /"`},
		{"a node name with command substitution is refused", func(r *transport.SwapRequest) { r.Node = "$(reboot)" }, `node name "$(reboot)"`},
		{"a node name that climbs directories is refused", func(r *transport.SwapRequest) { r.Node = "../etc" }, `node name "../etc"`},
		{"a node name that looks like a flag is refused", func(r *transport.SwapRequest) { r.Node = "-rf" }, `node name "-rf"`},
		{"a node name with a newline is refused", func(r *transport.SwapRequest) { r.Node = "s1\nreboot" }, `node name "s1\nreboot"`},
		{"an empty node name is refused", func(r *transport.SwapRequest) { r.Node = "" }, "node name is empty"},
		{"a 129-byte node name is refused", func(r *transport.SwapRequest) { r.Node = strings.Repeat("a", 129) }, "129 bytes long (limit 128)"},
		{"a target of latest is refused", func(r *transport.SwapRequest) { r.To = "latest" }, `to version "latest" is not a release version`},
		{"an empty target is refused", func(r *transport.SwapRequest) { r.To = "" }, `to version "" is not a release version: is empty`},
		{"a two-part target is refused", func(r *transport.SwapRequest) { r.To = "1.2" }, `to version "1.2" is not`},
		{"a target with a v prefix is refused with the fix", func(r *transport.SwapRequest) { r.To = "v1.13.9" }, "write it as 1.13.9"},
		{"a target with leading zeros is refused with the fix", func(r *transport.SwapRequest) { r.To = "1.013.9" }, `"1.013.9" is not a release version: part "013" has a leading zero; write it as 1.13.9`},
		{"a target with a shell suffix is refused", func(r *transport.SwapRequest) { r.To = "1.13.9-rc1;reboot" }, `"1.13.9-rc1;reboot" is not`},
		{"a malformed from version is refused", func(r *transport.SwapRequest) { r.From = "1.12" }, `from version "1.12" is not`},
		{"a role other than server or client is refused", func(r *transport.SwapRequest) { r.Role = "leader" }, `role "leader"`},
		{"an empty stop mode is refused", func(r *transport.SwapRequest) { r.StopMode = "" }, `stop mode "" is not one of`},
		{"an unknown stop mode is refused", func(r *transport.SwapRequest) { r.StopMode = "reboot" }, `stop mode "reboot"`},
		{"a server may not leave", func(r *transport.SwapRequest) { r.StopMode = transport.StopLeave }, `"leave" is refused for servers`},
		{"an artifact with a newline is refused", func(r *transport.SwapRequest) { r.Artifact = "/bin/consul\nreboot" }, "control character at byte 11"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := good()
			tc.edit(&req)
			err := transport.ValidateRequest(req)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateRequest(%+v) = %v, want nil", req, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateRequest(%+v) = nil, want an error containing %q", req, tc.want)
			}
			if !errors.Is(err, transport.ErrInvalidRequest) {
				t.Errorf("error %v does not wrap ErrInvalidRequest", err)
			}
			var se *transport.SwapError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SwapError", err)
			}
			if se.Phase != transport.PhaseValidate || se.Node != req.Node || se.To != req.To {
				t.Errorf("SwapError = {Node %q, Phase %q, To %q}, want {%q, validate, %q}", se.Node, se.Phase, se.To, req.Node, req.To)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error text %q does not contain %q", err.Error(), tc.want)
			}
		})
	}
}

// TestValidateVersionSharedTable: a transport accepts and refuses exactly
// what the planner and the upgrade runner do (the same table runs in their
// tests), as a version on its own and as a request's To and From.
func TestValidateVersionSharedTable(t *testing.T) {
	for _, tc := range plannertest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			to, from := good(), good()
			to.To, from.From = tc.In, tc.In
			for what, err := range map[string]error{
				"ValidateVersion":        transport.ValidateVersion(tc.In),
				"ValidateRequest (to)":   transport.ValidateRequest(to),
				"ValidateRequest (from)": transport.ValidateRequest(from),
			} {
				if what == "ValidateRequest (from)" && tc.In == "" {
					continue // an empty From means "unknown", and is accepted
				}
				if tc.Accepted() {
					if err != nil {
						t.Errorf("%s(%q) = %v, want nil", what, tc.In, err)
					}
					continue
				}
				if !errors.Is(err, transport.ErrInvalidRequest) {
					t.Errorf("%s(%q) = %v, want ErrInvalidRequest", what, tc.In, err)
					continue
				}
				if !strings.Contains(err.Error(), tc.Fix) {
					t.Errorf("%s(%q) error %q does not name the fix %q", what, tc.In, err, tc.Fix)
				}
			}
		})
	}
}

func TestValidateRequestReportsEveryProblem(t *testing.T) {
	req := transport.SwapRequest{Node: "$(reboot)", Role: "leader", From: "x", To: "latest", StopMode: ""}
	err := transport.ValidateRequest(req)
	if err == nil {
		t.Fatal("ValidateRequest accepted a request with five problems")
	}
	for _, frag := range []string{"node name", "to version", "from version", "role", "stop mode"} {
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("error %q does not report the %s", err.Error(), frag)
		}
	}
}

func TestValidateNodeAndVersion(t *testing.T) {
	if err := transport.ValidateNode("c-700"); err != nil {
		t.Errorf("ValidateNode(c-700) = %v, want nil", err)
	}
	if err := transport.ValidateNode("a b"); !errors.Is(err, transport.ErrInvalidRequest) {
		t.Errorf("ValidateNode(%q) = %v, want ErrInvalidRequest", "a b", err)
	}
	if err := transport.ValidateVersion("0.5.2"); err != nil {
		t.Errorf("ValidateVersion(0.5.2) = %v, want nil", err)
	}
	if err := transport.ValidateVersion("1.2.x"); !errors.Is(err, transport.ErrInvalidRequest) {
		t.Errorf("ValidateVersion(1.2.x) = %v, want ErrInvalidRequest", err)
	}
}

func FuzzValidateRequest(f *testing.F) {
	f.Add("s1", "1.13.9")
	f.Add("$(reboot)", "latest")
	f.Add("../etc", "1.2")
	f.Fuzz(func(t *testing.T, node, to string) {
		err := transport.ValidateRequest(transport.SwapRequest{Node: node, Role: transport.RoleClient, To: to, StopMode: transport.StopKill})
		if err != nil {
			return
		}
		// Whatever is accepted is safe to put in an argv, a path or a URL.
		for _, s := range []string{node, to} {
			if strings.ContainsAny(s, " \t\r\n;&|$`'\"\\/<>(){}*?![]~#%=") {
				t.Fatalf("accepted %q, which holds a shell or path metacharacter", s)
			}
			if strings.HasPrefix(s, "-") || strings.HasPrefix(s, ".") {
				t.Fatalf("accepted %q, which starts like a flag or a relative path", s)
			}
		}
	})
}

// A request marshals to JSON with its progress hook set (a transport that
// forwards requests, as the robustness tests' child process does, sends
// them as JSON); the hook itself is not part of the JSON form.
func TestASwapRequestWithAProgressHookMarshalsToJSON(t *testing.T) {
	req := transport.SwapRequest{Node: "s1", Role: transport.RoleServer, From: "1.12.9", To: "1.13.9", StopMode: transport.StopTerminate, Progress: func(transport.Phase) {}}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var back transport.SwapRequest
	if err := json.Unmarshal(b, &back); err != nil || back.Node != "s1" || back.To != "1.13.9" || back.StopMode != transport.StopTerminate || back.Progress != nil {
		t.Errorf("round trip of %s: %+v, %v", b, back, err)
	}
}
