package run_test

// Feature observation against real Consul agents (tests/rig/consul). Like
// the other integration tests they never skip: a missing binary fails.

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
	consulrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/consul"
	"github.com/seed-e5e14ead/consul-upgrade/tests/scenario"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

func unobserved(f planner.Features) []string {
	var out []string
	for _, g := range f.Unobserved {
		out = append(out, g.Feature)
	}
	slices.Sort(out)
	return out
}

func TestDiscoverObservesTheFeaturesOfARealConnectAgent(t *testing.T) {
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 1, Clients: -1, Version: "1.13.9", ExtraServerArgs: []string{
		"-hcl=connect { enabled = true }", "-hcl=ports { grpc = 8502 }", `-hcl=node_meta { rack = "r1" }`,
	}})
	s1 := cl.Servers()[0]
	client := scenario.APIClient(t, cl, s1)
	consul := upgrade.NewConsul(client)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c, err := upgrade.Discover(ctx, consul)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	f := c.Features
	t.Logf("observed on 1.13.9: %+v", f)
	if f.ACLs || f.RaftProtocol != 3 || f.TLS != (planner.TLS{}) {
		t.Errorf("ACLs %v, raft protocol %d, TLS %+v; want off, 3, none", f.ACLs, f.RaftProtocol, f.TLS)
	}
	if f.Connect != planner.Unknown || f.TerminatingGateways != planner.No || f.AgentlessMesh != planner.No {
		t.Errorf("Connect/TerminatingGateways/AgentlessMesh = %s/%s/%s, want unknown/no/no", f.Connect, f.TerminatingGateways, f.AgentlessMesh)
	}
	if got, want := unobserved(f), []string{"Connect", "Envoy"}; !slices.Equal(got, want) {
		t.Errorf("unobserved %v, want %v", got, want)
	}

	// Mesh in use: an intention and a terminating gateway.
	if _, err := client.Connect().IntentionUpsert(&api.Intention{SourceName: "web", DestinationName: "db", Action: api.IntentionActionAllow}, nil); err != nil {
		t.Fatalf("create intention: %v", err)
	}
	if _, _, err := client.ConfigEntries().Set(&api.TerminatingGatewayConfigEntry{Kind: api.TerminatingGateway, Name: "tgw",
		Services: []api.LinkedService{{Name: "db"}}}, nil); err != nil {
		t.Fatalf("create terminating gateway: %v", err)
	}
	c, err = upgrade.Discover(ctx, consul)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if f := c.Features; f.Connect != planner.Yes || f.TerminatingGateways != planner.Yes {
		t.Errorf("with an intention and a terminating gateway: Connect %s, TerminatingGateways %s; want yes, yes", f.Connect, f.TerminatingGateways)
	}

	// Zones by a node-meta key, and a declared feature, through Run. The
	// leader registers a new node before the agent's anti-entropy sync
	// adds its node meta: wait until the catalog shows it.
	waitFor(t, 30*time.Second, "node meta rack=r1 of "+s1+" in the catalog", func() bool {
		n, _, err := client.Catalog().Node(s1, nil)
		return err == nil && n != nil && n.Node != nil && n.Node.Meta["rack"] == "r1"
	})
	res, err := upgrade.Run(ctx, upgrade.Config{Consul: consul, Target: "1.13.9", DryRun: true,
		Features: upgrade.FeatureConfig{ZoneKey: "rack", Envoy: planner.Yes}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if z := res.Cluster.Servers[0].Zone; z != "r1" {
		t.Errorf("zone %q, want r1 (node_meta rack)", z)
	}
	if f := res.Cluster.Features; f.Envoy != planner.Yes || len(f.Unobserved) != 0 {
		t.Errorf("declared Envoy: %s, unobserved %v", f.Envoy, f.Unobserved)
	}
}

func TestDiscoverSeesNoMeshOnARealAgentWithConnectOff(t *testing.T) {
	cl := scenario.StartHealthy(t, consulrig.Options{Servers: 1, Clients: -1, Version: "1.12.9"})
	consul := upgrade.NewConsul(scenario.APIClient(t, cl, cl.Servers()[0]))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := upgrade.Discover(ctx, consul)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	t.Logf("observed on 1.12.9: %+v", c.Features)
	if c.Features.Connect != planner.No || len(c.Features.Unobserved) != 0 || c.Features.RaftProtocol != 3 {
		t.Errorf("Connect %s, unobserved %v, raft %d; want no, none, 3", c.Features.Connect, c.Features.Unobserved, c.Features.RaftProtocol)
	}
}

// waitFor polls cond every 200ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
