package scale

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTheResultIsOneJSONLineWithExactlyTheFieldsOfIssue21InItsOrder(t *testing.T) {
	r := Result{Servers: 3, Clients: 700, From: "0.6.4", To: "0.7.5", WallS: 1234.5678, OrchestratorCPUS: 9.87654,
		AgentsPeakRSSMB: 15234.56, Detail: Detail{SwapsPerS: 1.23456}}
	line := r.Line()
	if strings.Contains(line, "\n") {
		t.Fatalf("the result spans lines: %q", line)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"servers", "clients", "from", "to", "wall_s", "clients_swapped", "waves", "failed_writes",
		"longest_failure_s", "lost", "orchestrator_cpu_s", "orchestrator_peak_rss_mb", "agents_peak_rss_mb",
		"gossip_converged_s", "err"}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("the result lacks %q: %s", k, line)
		}
	}
	// In the issue's order, and nothing else.
	var order []string
	dec := json.NewDecoder(strings.NewReader(line))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		order = append(order, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	if !slices.Equal(order, want) {
		t.Errorf("fields in the order %v, want exactly %v", order, want)
	}
	for _, s := range []string{`"wall_s":1234.6`, `"orchestrator_cpu_s":9.88`, `"agents_peak_rss_mb":15235`, `"err":""`} {
		if !strings.Contains(line, s) {
			t.Errorf("the line lacks %s: %s", s, line)
		}
	}
	detail := r.DetailLine()
	if strings.Contains(detail, "\n") || !strings.Contains(detail, `"swaps_per_s":1.23`) || strings.Contains(detail, `"wall_s"`) {
		t.Errorf("the detail line is not one line of the other figures, rounded: %s", detail)
	}
}

func TestTheSwapsInFlightAreAveragedOverTheTimeAnyWasInFlight(t *testing.T) {
	var f flightLog
	t0 := time.Unix(0, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// 2 in flight for 1s, 4 for 1s, none for 10s (between waves), 1 for 2s.
	f.change(at(0), 1)
	f.change(at(0), 2)
	f.change(at(1), 4)
	f.change(at(2), 0)
	f.change(at(12), 1)
	f.change(at(14), 0)
	if f.max != 4 {
		t.Errorf("max %d, want 4", f.max)
	}
	if got, want := f.mean(), (2.0+4+2)/4; got != want {
		t.Errorf("mean %g, want %g (the 10s with none in flight left out)", got, want)
	}
}
