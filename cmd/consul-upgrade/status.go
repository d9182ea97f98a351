package main

import (
	"context"
	"fmt"
	"io"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "consul-upgrade status: not implemented yet")
	return exitHalted
}
