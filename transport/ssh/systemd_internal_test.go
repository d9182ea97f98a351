package ssh

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/transport"
)

func TestSystemctlShowIsReadFromItsKeyValueLines(t *testing.T) {
	out := "Type=notify\nRestart=on-failure\nMainPID=4242\nResult=exit-code\nExecStart={ path=/usr/bin/consul ; argv[]=/usr/bin/consul agent -config-dir=/etc/consul.d/ }\nLoadState=loaded\nActiveState=failed\nSubState=failed\nEnvironment=A=B\n"
	got := parseShow(out)
	want := unitState{Load: "loaded", Active: "failed", Sub: "failed", Result: "exit-code", Type: "notify", MainPID: 4242}
	if got != want {
		t.Fatalf("parseShow = %+v, want %+v", got, want)
	}
	if got.running() {
		t.Error("a failed unit counts as running")
	}
	for _, st := range []string{"active", "reloading"} {
		if !(unitState{Active: st}).running() {
			t.Errorf("ActiveState %s does not count as running", st)
		}
	}
	for _, st := range []string{"inactive", "activating", "deactivating", "failed", ""} {
		if (unitState{Active: st}).running() {
			t.Errorf("ActiveState %q counts as running", st)
		}
	}
}

func TestAUnitErrorNamesTheNodeTheUnitItsStateAndItsJournal(t *testing.T) {
	e := &UnitError{Node: "c1", Unit: "consul.service", Step: "start", ActiveState: "failed", SubState: "failed", Result: "exit-code", Waited: 2 * time.Second,
		Journal: "consul[77]: ==> failed to parse /etc/consul.d/agent.hcl: unknown key \"x\"", Err: errors.Join(transport.ErrNotRunning)}
	msg := e.Error()
	for _, want := range []string{"node c1", "unit consul.service is failed (result exit-code)", "journalctl -u consul.service", `unknown key "x"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if !errors.Is(e, transport.ErrNotRunning) {
		t.Error("a unit that did not come up does not wrap transport.ErrNotRunning")
	}
	stop := &UnitError{Node: "s2", Unit: "consul.service", Step: "stop", ActiveState: "active", SubState: "running", MainPID: 99, Waited: 30 * time.Second}
	if msg := stop.Error(); !strings.Contains(msg, "main process 99 still runs 30s after the stop signal (StopTimeout)") {
		t.Errorf("stop timeout message %q does not say which process still runs and for how long", msg)
	}
}
