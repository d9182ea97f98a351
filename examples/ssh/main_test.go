package main

import (
	"bytes"
	"strings"
	"testing"
)

// The example against a real sshd is in tests/e2e/examples.

func TestTheExampleNamesMissingFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-host", "127.0.0.1:22"}, &stdout, &stderr); code != 2 {
		t.Fatalf("run exited %d, want 2", code)
	}
	for _, f := range []string{"-node", "-to", "-artifact"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("stderr %q does not name missing flag %s", stderr.String(), f)
		}
	}
}
