package main

import (
	"context"
	"fmt"
	"io"
)

func runApply(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "consul-upgrade apply: not implemented yet")
	return exitHalted
}
