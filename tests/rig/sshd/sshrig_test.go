package sshrig_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	sshrig "github.com/seed-e5e14ead/consul-upgrade/tests/rig/sshd"
)

func TestStartServesKeyLoginVerifiedByKnownHosts(t *testing.T) {
	s := sshrig.Start(t)
	cb, err := knownhosts.New(s.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Signer)},
		HostKeyCallback: cb,
		Timeout:         5 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial %s: %v\n%s", s.Addr, err, s.Log())
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("echo hello-from-sshd; id -un")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	want := "hello-from-sshd\n" + s.User + "\n"
	if string(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}

func TestStartRefusesAClientWithAnotherKey(t *testing.T) {
	s := sshrig.Start(t)
	other := sshrig.Start(t) // a second rig: its user key is not authorized on s
	_, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(other.Signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         5 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("dial with an unauthorized key: err = %v, want an authentication failure", err)
	}
	if b, err := os.ReadFile(s.KeyFile); err != nil || !bytes.Equal(b, s.KeyPEM) {
		t.Fatalf("KeyFile does not hold KeyPEM (err %v)", err)
	}
}
