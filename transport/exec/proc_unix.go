//go:build unix

package exec

import (
	osexec "os/exec"
	"syscall"
)

// inGroup makes the command the leader of a new process group, and makes
// cancelling it kill the whole group (the command and whatever it forked).
func inGroup(cmd *osexec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
