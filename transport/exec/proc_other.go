//go:build !unix

package exec

import osexec "os/exec"

// inGroup is a no-op where process groups do not exist: cancelling the
// command kills the process it started, not its children.
func inGroup(cmd *osexec.Cmd) {}
