package consulrig

import (
	"net/netip"
	"strings"
	"testing"
)

func TestEveryAgentOfAClusterOfRealSizeGetsItsOwnLoopbackAddressInItsBlock(t *testing.T) {
	for _, block := range []int{1, 7, MaxBlocks} {
		ips := addresses(block, MaxServers, MaxClients)
		if len(ips) != MaxServers+MaxClients {
			t.Fatalf("block %d: %d addresses for %d agents", block, len(ips), MaxServers+MaxClients)
		}
		seen := map[string]bool{}
		for i, ip := range ips {
			a, err := netip.ParseAddr(ip)
			if err != nil || !a.IsLoopback() {
				t.Fatalf("block %d: agent #%d gets %q, not a loopback address", block, i+1, ip)
			}
			if seen[ip] {
				t.Fatalf("block %d: %s given twice", block, ip)
			}
			seen[ip] = true
			// The block's own ranges: 127.0.N.x, or 127.N.k.x past 200 clients.
			if !strings.HasPrefix(ip, "127.0."+itoa(block)+".") && !strings.HasPrefix(ip, "127."+itoa(block)+".") {
				t.Errorf("block %d: %s is outside the block's ranges", block, ip)
			}
			if last := a.As4()[3]; last == 0 || last == 255 {
				t.Errorf("block %d: %s ends in .%d", block, ip, last)
			}
		}
	}
	for _, tc := range []struct {
		block, i int
		want     string
	}{
		{3, 1, "127.0.3.21"},
		{3, 200, "127.0.3.220"},
		{3, 201, "127.3.1.21"},
		{3, 400, "127.3.1.220"},
		{3, 401, "127.3.2.21"},
		{3, 700, "127.3.3.120"},
	} {
		if got := ClientAddress(tc.block, tc.i); got != tc.want {
			t.Errorf("ClientAddress(%d, %d) = %s, want %s", tc.block, tc.i, got, tc.want)
		}
	}
}

func TestTwoBlocksShareNoAddress(t *testing.T) {
	a := map[string]bool{}
	for _, ip := range addresses(1, MaxServers, MaxClients) {
		a[ip] = true
	}
	for _, ip := range addresses(2, MaxServers, MaxClients) {
		if a[ip] {
			t.Fatalf("%s is in block 1 and block 2", ip)
		}
	}
}
