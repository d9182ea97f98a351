// Package proc answers whether a process is still alive, from /proc, for
// the test rigs and the rehearsal that start and stop Consul agents by pid.
// It does not link the testing package.
package proc

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// WaitGone waits up to d for pid to be gone and reports whether it is.
func WaitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !Alive(pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return !Alive(pid)
}
