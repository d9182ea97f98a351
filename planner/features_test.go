package planner

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// threeServers is the cluster: three healthy voters on v, no clients.
func threeServers(v string) Cluster {
	c := baseCluster(v)
	c.Clients = nil
	return c
}

func TestAMeshFreeClusterPlans1154To1161WithoutAWaiver(t *testing.T) {
	c := threeServers("1.15.4")
	c.Features.Connect = No
	p, err := Plan(c, "1.16.1", Policy{})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if hits := findRule(p.Findings, "known-bad-1.16.0-1.16.1"); len(hits) != 0 {
		t.Fatalf("known-bad-1.16.0-1.16.1 fired on a mesh-free cluster: %+v", hits)
	}
	if len(p.Steps) == 0 {
		t.Fatal("plan has no steps")
	}
}

func TestUnknownMeshUsePlans1161WithAWarningNamingTheFeature(t *testing.T) {
	c := threeServers("1.15.4")
	p, err := Plan(c, "1.16.1", Policy{})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	hits := findRule(p.Findings, "known-bad-1.16.0-1.16.1")
	if len(hits) != 1 || hits[0].Severity != Warning {
		t.Fatalf("want one warning, got %+v", hits)
	}
	for _, want := range []string{"blocking if you use agentless mesh", "not observed here", "Features.AgentlessMesh"} {
		if !strings.Contains(hits[0].Message, want) {
			t.Errorf("message %q lacks %q", hits[0].Message, want)
		}
	}
}

func TestAgentlessMeshIsStillRefused1161(t *testing.T) {
	c := threeServers("1.15.4")
	c.Features.Connect, c.Features.AgentlessMesh = Yes, Yes
	_, err := Plan(c, "1.16.1", Policy{})
	var ref *RefusedError
	if !errors.As(err, &ref) {
		t.Fatalf("Plan = %v, want *RefusedError", err)
	}
	if hits := findRule(ref.Findings, "known-bad-1.16.0-1.16.1"); len(hits) != 1 || hits[0].Severity != Blocking {
		t.Fatalf("want the blocking known-bad finding, got %+v", ref.Findings)
	}
	// Declaring only the agentless mesh implies the mesh.
	c.Features.Connect = Unknown
	if _, err := Plan(c, "1.16.1", Policy{}); !errors.As(err, &ref) {
		t.Fatalf("Plan with AgentlessMesh=yes, Connect unknown = %v, want refused", err)
	}
}

func TestPathAvoidsKnownBadReleasesWhateverTheFeatures(t *testing.T) {
	// Stones come from newestPatch whatever the features; a mesh-free
	// cluster still never stops on 1.16.1 or 1.15.1 on the way.
	for _, f := range []Features{{}, {Connect: No}, {Connect: Yes, AgentlessMesh: Yes, TerminatingGateways: Yes, Envoy: Yes}} {
		c := threeServers("1.12.9")
		c.Features = f
		p, err := Plan(c, "1.17.3", Policy{})
		if err != nil {
			t.Fatalf("Plan(%+v): %v", f, err)
		}
		for _, h := range p.Path[:len(p.Path)-1] {
			for _, b := range builtins {
				if strings.HasPrefix(string(b.ID), "known-bad-") && len(b.to) > 0 && b.to.Check(mustVersion(h.To)) {
					t.Errorf("features %+v: stone %s is known bad (%s)", f, h.To, b.ID)
				}
			}
		}
	}
}

func TestUsageJSONRoundTrip(t *testing.T) {
	in := Features{Connect: No, Envoy: Yes, AgentlessMesh: Unknown, TerminatingGateways: No,
		Unobserved: []FeatureGap{{Feature: "LegacyACLs", Reason: "GET /v1/acl/tokens answered 403"}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, `"connect":"no"`) || !strings.Contains(s, `"envoy":"yes"`) || strings.Contains(s, "agentless") {
		t.Fatalf("marshalled %s", s)
	}
	var out Features
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
}

func TestUsageUnmarshalsOldBoolsAndRefusesNonsense(t *testing.T) {
	var f Features
	if err := json.Unmarshal([]byte(`{"connect":true,"envoy":false,"agentless_mesh":"unknown","terminating_gateways":null}`), &f); err != nil {
		t.Fatal(err)
	}
	if f.Connect != Yes || f.Envoy != No || f.AgentlessMesh != Unknown || f.TerminatingGateways != Unknown {
		t.Fatalf("got %+v", f)
	}
	err := json.Unmarshal([]byte(`{"connect":"maybe"}`), &f)
	var ue *UsageError
	if !errors.As(err, &ue) || ue.Value != "maybe" {
		t.Fatalf("err = %v, want *UsageError for maybe", err)
	}
}
