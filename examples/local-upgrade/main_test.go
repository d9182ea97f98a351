package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The example upgrading a real loopback cluster is in tests/e2e/examples.

func TestRunRefusesBadFlagsWithStatus2(t *testing.T) {
	cases := map[string][]string{
		"an unknown flag":                 {"-nope"},
		"a version that is not X.Y.Z":     {"-to", "latest"},
		"a downgrade":                     {"-from", "1.13.9", "-to", "1.12.9"},
		"a non-loopback network":          {"-net", "10.0.0"},
		"a stray argument":                {"extra"},
		"a missing binary and no builder": {"-bin-dir", "/nonexistent", "-build-script", "/nonexistent/build.sh"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", code, errb.String())
			}
			if errb.Len() == 0 {
				t.Error("no error message on stderr")
			}
			if strings.Contains(out.String(), "starting") {
				t.Error("a refused run started agents")
			}
		})
	}
}
