package consulrig

import (
	"fmt"

	"github.com/seed-e5e14ead/consul-upgrade/transport/local"
)

// ProvisionServers sets the cluster's transport up to provision up to n new
// servers (the replace strategy): named <NodePrefix>n1, n2, ..., on the
// server addresses after the started ones in the cluster's block (.14-.16
// after 3 servers), in the cluster's directory, with the servers' arguments
// except bootstrap-expect and advertise (they advertise the address they
// bind), joining every server address of the block. It fails when n does
// not fit the address plan or an address has a Consul port in use.
func (c *Cluster) ProvisionServers(n int) error {
	first := len(c.servers) + 1
	if n < 1 || first+n-1 > MaxServers {
		return fmt.Errorf("consulrig: %d new servers after %d do not fit the address plan (servers .11-.%d)", n, len(c.servers), 10+MaxServers)
	}
	var ips []string
	for i := first; i < first+n; i++ {
		ips = append(ips, fmt.Sprintf("127.0.%d.%d", c.block, 10+i))
	}
	if addr, ok := portsFree(ips); !ok {
		return fmt.Errorf("consulrig: %s is in use; the new servers need their addresses free", addr)
	}
	args := []string{"-log-level=debug", "-retry-interval=1s"}
	for i := 1; i < first+n; i++ {
		args = append(args, "-retry-join="+fmt.Sprintf("127.0.%d.%d", c.block, 10+i))
	}
	args = append(args, c.opt.ExtraServerArgs...)
	return c.tr.SetProvisioning(local.ProvisionTemplate{
		NamePrefix: c.opt.NodePrefix + "n",
		Addresses:  ips,
		Dir:        c.dir,
		Args:       args,
		ArgsFor:    c.argsFor(true),
	})
}
