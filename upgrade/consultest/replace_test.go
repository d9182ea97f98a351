package consultest_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade/consultest"
)

func TestAddedServersJoinAsVotersAndRemovedOnesLeaveTheRaftConfiguration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := consultest.NewCluster(3, 1, "1.12.9", consultest.WithRestartDelay(2*time.Second))
		if err := c.AddServer("n1", "1.13.9"); err != nil {
			t.Fatal(err)
		}
		if err := c.AddServer("n1", "1.13.9"); err == nil {
			t.Error("adding n1 twice succeeded")
		}
		n, ok := c.Node("n1")
		if !ok || !n.Voter || n.Up || n.Version != "1.13.9" {
			t.Fatalf("n1 right after joining: %+v, want a voter on 1.13.9, not up yet", n)
		}
		time.Sleep(3 * time.Second)
		if n, _ := c.Node("n1"); !n.Up || !n.Healthy {
			t.Errorf("n1 after the restart delay: %+v, want up and healthy", n)
		}
		var names []string
		for _, n := range c.Nodes() {
			names = append(names, n.Name)
		}
		if !slices.Equal(names, []string{"s1", "s2", "s3", "n1", "c1"}) {
			t.Errorf("nodes %v, want the new server after the servers, before the clients", names)
		}
		if err := c.RemoveServer("s1"); err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Node("s1"); ok {
			t.Error("s1 is still a node after RemoveServer")
		}
		if l := c.Leader(); l == "" || l == "s1" {
			t.Errorf("leader after the leader left: %q, want another server", l)
		}
		if err := c.RemoveServer("c1"); err == nil {
			t.Error("RemoveServer removed a client")
		}
		if got := c.Removed(); !slices.Equal(got, []string{"s1"}) {
			t.Errorf("Removed() = %v, want [s1]", got)
		}
	})
}
