package ssh

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// shellArgs runs `sh -c "printf '%s\0' <quoted argv>"` and returns the words
// the shell passed to printf, i.e. what a remote shell would hand the program.
func shellArgs(t *testing.T, argv []string) []string {
	t.Helper()
	line, err := Command(append([]string{"printf", `%s\0`}, argv...))
	if err != nil {
		t.Fatalf("Command(%q): %v", argv, err)
	}
	out, err := exec.Command("/bin/sh", "-c", line).Output()
	if err != nil {
		t.Fatalf("sh -c %s: %v", line, err)
	}
	got := strings.Split(string(out), "\x00")
	return got[:len(got)-1]
}

func TestQuotedArgumentsReachTheProgramUnchanged(t *testing.T) {
	cases := []struct {
		name string
		argv []string
	}{
		{"plain words stay words", []string{"consul", "version"}},
		{"an empty argument stays an empty argument", []string{"", "x", ""}},
		{"a single quote cannot close the quoting", []string{"it's", "'", "''", `'\''`}},
		{"command substitution is not run", []string{"$(touch /tmp/pwned)", "`id`"}},
		{"separators and redirections are not interpreted", []string{"a; rm -rf /", "b && reboot", "c | tee x", "d > /etc/passwd", "e &"}},
		{"variables and globs are not expanded", []string{"$HOME", "${PATH}", "*", "?", "[a-z]", "~root"}},
		{"whitespace and newlines stay inside the argument", []string{"two words", "line1\nline2", "\ttab", " "}},
		{"backslashes and double quotes are literal", []string{`\`, `\\n`, `"`, `"$x"`}},
		{"non-ASCII bytes pass through", []string{"é", "\xff\xfe", "日本"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := shellArgs(t, c.argv); !slices.Equal(got, c.argv) {
				t.Fatalf("shell passed %q, want %q", got, c.argv)
			}
		})
	}
}

func TestCommandRefusesWhatACommandLineCannotCarry(t *testing.T) {
	if _, err := Command(nil); err == nil {
		t.Error("Command(nil) = nil error, want a refusal of the empty command")
	}
	if _, err := Command([]string{"echo", "a\x00b"}); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("Command with a NUL byte = %v, want an error naming the NUL byte", err)
	}
}

func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "'", `'\''`, "$(id)", "a b", "\n", "\\", "--", "-n", "%s", "!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			if _, err := Command([]string{s}); err == nil {
				t.Fatalf("Command(%q) accepted a NUL byte", s)
			}
			return
		}
		q := Quote(s)
		if !strings.HasPrefix(q, "'") || !strings.HasSuffix(q, "'") {
			t.Fatalf("Quote(%q) = %s, not single-quoted", s, q)
		}
		if got := shellArgs(t, []string{s}); len(got) != 1 || got[0] != s {
			t.Fatalf("shell passed %q for Quote(%q) = %s, want exactly [%q]", got, s, q, s)
		}
	})
}
