// Package text stands in for github.com/tonnerre/golang-text, which the Go
// module proxy does not serve. Consul 0.8 to 1.0 call one function of it,
// Wrap, to fit the help text of their flags to the terminal; this package
// has only that function. scripts/build-consul.sh points the build at it
// with a replace directive; it is not part of the project's module.
package text

import "strings"

// Wrap re-flows s into lines of at most width bytes: words (runs of
// non-space) are kept whole and joined by one space, and a line breaks
// before the word that would overflow it. A word longer than width gets a
// line of its own. Leading, trailing and repeated white space, newlines
// included, is not kept.
func Wrap(s string, width int) string {
	var b strings.Builder
	line := 0
	for _, word := range strings.Fields(s) {
		if line > 0 {
			if line+1+len(word) > width {
				b.WriteByte('\n')
				line = 0
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(word)
		line += len(word)
	}
	return b.String()
}
