package rehearsal

import (
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Elections are read from the servers' own logs: every Consul era logs
// "entering leader state" when a server wins an election (raft's line;
// "entering Leader state" in some eras, so it is matched without case). Polling /v1/status/leader through an agent
// misses the short elections of a swapped leader that comes back and wins
// again; the logs do not. The time stamp of the line is read in the era's
// format:
//   - before 1.0 (Go's log package): "2006/01/02 15:04:05", local time,
//     one-second precision;
//   - 1.0 and later (hclog): "2006-01-02T15:04:05.000Z0700".
const electionLine = "entering leader state"

var stampRE = regexp.MustCompile(`\d{4}[/-]\d{2}[/-]\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?`)

func parseStamp(line string) (time.Time, bool) {
	s := stampRE.FindString(line)
	if s == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{"2006-01-02T15:04:05.000Z0700", "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05.999999999Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	if t, err := time.ParseInLocation("2006/01/02 15:04:05", s, time.Local); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// logMarks are the sizes of the servers' logs at a moment, so that only
// the lines written later are read.
type logMarks map[string]int64

func (rp *replica) markLogs() logMarks {
	m := logMarks{}
	for _, s := range rp.specs {
		if fi, err := os.Stat(s.LogPath); err == nil {
			m[s.Name] = fi.Size()
		}
	}
	return m
}

// election is one server winning an election.
type election struct {
	at   time.Time
	node string
}

// elections returns the elections the servers logged after the marks, in
// time order.
func (rp *replica) elections(since logMarks) []election {
	var out []election
	for _, s := range rp.specs {
		f, err := os.Open(s.LogPath)
		if err != nil {
			continue
		}
		f.Seek(since[s.Name], io.SeekStart)
		data, _ := io.ReadAll(f)
		f.Close()
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.Contains(strings.ToLower(line), electionLine) {
				continue
			}
			if t, ok := parseStamp(line); ok {
				out = append(out, election{at: t, node: s.Name})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b election) int { return a.at.Compare(b.at) })
	return out
}
