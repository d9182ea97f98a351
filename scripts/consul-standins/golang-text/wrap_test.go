package text

import "testing"

func TestWrap(t *testing.T) {
	cases := []struct {
		in    string
		width int
		want  string
	}{
		{"", 10, ""},
		{"one two three", 20, "one two three"},
		{"one two three", 7, "one two\nthree"},
		{"  one\n two   three ", 9, "one two\nthree"},
		{"a verylongword b", 4, "a\nverylongword\nb"},
		{"ab cd", 5, "ab cd"},
		{"ab cd", 4, "ab\ncd"},
	}
	for _, c := range cases {
		if got := Wrap(c.in, c.width); got != c.want {
			t.Errorf("Wrap(%q, %d) = %q, want %q", c.in, c.width, got, c.want)
		}
	}
}
