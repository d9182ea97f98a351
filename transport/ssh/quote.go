package ssh

import (
	"errors"
	"fmt"
	"strings"
)

// Quote returns s as one POSIX shell word: wrapped in single quotes, with
// every single quote inside written as a closing quote, an escaped quote and
// an opening quote:
//
//	Quote("it's") == `'it'\''s'`
//
// Inside single quotes a POSIX shell gives no character a special meaning,
// so the shell passes s through unchanged whatever it holds: spaces, $,
// backquotes, ;, &, |, newlines, globs. The empty string becomes a pair of
// single quotes (an empty argument, not a missing one).
//
// A NUL byte cannot appear in a command line at all; Command refuses it.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Command joins argv into one command line for a POSIX shell (the remote
// login shell that sshd runs the command with), quoting every element with
// Quote, argv[0] included: no element is ever interpreted by the shell. It
// refuses an empty argv and any element holding a NUL byte.
func Command(argv []string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("empty command: give at least the program to run")
	}
	var b strings.Builder
	for i, a := range argv {
		if j := strings.IndexByte(a, 0); j >= 0 {
			return "", fmt.Errorf("argument %d %q holds a NUL byte at %d; a command line cannot carry one", i, a, j)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Quote(a))
	}
	return b.String(), nil
}
