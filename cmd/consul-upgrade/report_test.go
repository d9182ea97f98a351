package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
)

// An event's error is printed after its detail unless the detail quotes it
// already: the leader-log pre-flight once printed Consul's NaN answer twice
// on one line.
func TestAnEventsErrorIsPrintedOnceEvenWhenItsDetailQuotesIt(t *testing.T) {
	nan := errors.New("read agent metrics: Unexpected response code: 500 (json: unsupported value: NaN)")
	for _, tc := range []struct {
		name   string
		detail string
		want   string
	}{
		{"a detail that quotes the error", "leader-log-covers-restart: not checked: the leader s2's metrics could not be read: " + nan.Error(),
			"    preflight: leader-log-covers-restart: not checked: the leader s2's metrics could not be read: " + nan.Error() + "\n"},
		{"a detail that does not", "leader-log-covers-restart: not checked",
			"    preflight: leader-log-covers-restart: not checked (" + nan.Error() + ")\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			r := newReporter(&out, false, nil, 0)
			r.event(upgrade.Event{Kind: upgrade.EventPreflight, Detail: tc.detail, Err: nan})
			if got := out.String(); got != tc.want {
				t.Errorf("printed %q, want %q", got, tc.want)
			}
			if n := strings.Count(out.String(), "json: unsupported value: NaN"); n != 1 {
				t.Errorf("the error is printed %d times, want once", n)
			}
		})
	}
}
