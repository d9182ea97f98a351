package consulrig

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Writer puts a new KV key through one agent's HTTP API at a fixed interval
// until it is stopped, and remembers which writes were acknowledged and how
// long writes kept failing. It uses only PUT /v1/kv/<key>, which every
// Consul era answers the same way (the body "true"), so one writer serves
// the tests of every version.
type Writer struct {
	url    string
	prefix string
	stop   chan struct{}
	done   chan struct{}

	mu    sync.Mutex
	stats WriterStats
	burst time.Time // start of the current run of failures (zero: none)
}

// WriterStats are a writer's figures.
type WriterStats struct {
	// Acked are the keys whose writes Consul acknowledged, in order.
	Acked []string
	// Failed counts writes that failed or timed out (indeterminate: they
	// may or may not have been applied; none of them is counted as lost).
	Failed int
	// Bursts counts runs of consecutive failures; LongestBurst is the
	// longest, from its first failure to the next acknowledged write (or
	// to Stop).
	Bursts       int
	LongestBurst time.Duration
	// Errors holds the first few errors, for the test log.
	Errors []string
}

// StartWriter starts a writer through node (usually a client agent) that
// puts prefix/000000, prefix/000001, ... every interval. Each put has a
// 3-second timeout.
func (c *Cluster) StartWriter(node, prefix string, every time.Duration) *Writer {
	w := &Writer{
		url:    "http://" + c.HTTPAddr(node) + "/v1/kv/" + prefix + "/",
		prefix: prefix,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	client := &http.Client{Timeout: 3 * time.Second}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			key := fmt.Sprintf("%06d", i)
			err := put(client, w.url+key, strconv.Itoa(i))
			w.record(prefix+"/"+key, err, time.Now())
		}
	}()
	return w
}

func put(client *http.Client, url, value string) error {
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(value))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT answered %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	if string(bytes.TrimSpace(body)) != "true" {
		return fmt.Errorf("PUT answered %q, want true", bytes.TrimSpace(body))
	}
	return nil
}

func (w *Writer) record(key string, err error, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.stats
	if err != nil {
		s.Failed++
		if w.burst.IsZero() {
			w.burst = now
			s.Bursts++
		}
		if len(s.Errors) < 5 {
			s.Errors = append(s.Errors, err.Error())
		}
		return
	}
	s.Acked = append(s.Acked, key)
	if !w.burst.IsZero() {
		s.LongestBurst = max(s.LongestBurst, now.Sub(w.burst))
		w.burst = time.Time{}
	}
}

// Stop stops the writer and returns its figures.
func (w *Writer) Stop() WriterStats {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.burst.IsZero() {
		w.stats.LongestBurst = max(w.stats.LongestBurst, time.Since(w.burst))
		w.burst = time.Time{}
	}
	return w.stats
}

// MissingWrites reads every key under prefix through node with a
// consistent read (retrying for up to 30 s while the cluster settles) and
// returns the acknowledged keys that are not there: lost writes.
func (c *Cluster) MissingWrites(ctx context.Context, node, prefix string, acked []string) ([]string, error) {
	url := "http://" + c.HTTPAddr(node) + "/v1/kv/" + prefix + "/?keys&consistent"
	var keys []string
	var err error
	for i := 0; i < 30; i++ {
		keys, err = listKeys(ctx, url)
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		return nil, fmt.Errorf("read back %s/ through %s: %w", prefix, node, err)
	}
	have := make(map[string]bool, len(keys))
	for _, k := range keys {
		have[k] = true
	}
	var missing []string
	for _, k := range acked {
		if !have[k] {
			missing = append(missing, k)
		}
	}
	return missing, nil
}

func listKeys(ctx context.Context, url string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil // no key under the prefix
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET answered %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var keys []string
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// LeaderWatch polls /v1/status/leader through one agent and records every
// change of leader, so a test can say how often leadership moved and to
// whom. Answers naming no leader (an election) and failed reads are not
// changes; they are counted in Gaps.
type LeaderWatch struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	leaders []string // distinct consecutive leaders, by node name
	gaps    int
}

// WatchLeader starts polling through node every interval.
func (c *Cluster) WatchLeader(node string, every time.Duration) *LeaderWatch {
	lw := &LeaderWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(lw.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-lw.stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			var addr string
			err := c.do(ctx, node, http.MethodGet, "/v1/status/leader", nil, &addr)
			cancel()
			name := ""
			if err == nil && addr != "" {
				ip, _, _ := strings.Cut(addr, ":")
				if n, ok := c.nodeByIP(ip); ok {
					name = n
				} else {
					name = addr
				}
			}
			lw.mu.Lock()
			switch {
			case name == "":
				lw.gaps++
			case len(lw.leaders) == 0 || lw.leaders[len(lw.leaders)-1] != name:
				lw.leaders = append(lw.leaders, name)
			}
			lw.mu.Unlock()
		}
	}()
	return lw
}

// Stop stops the watch and returns the leaders seen, in order (each change
// once), and how many polls saw no leader or failed.
func (lw *LeaderWatch) Stop() (leaders []string, gaps int) {
	close(lw.stop)
	<-lw.done
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return append([]string(nil), lw.leaders...), lw.gaps
}

// CountInLogs counts the lines of the given log files that contain needle,
// ignoring case (old Raft logs "entering Leader state", new ones "entering
// leader state").
func CountInLogs(paths []string, needle string) (int, error) {
	needle = strings.ToLower(needle)
	n := 0
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(strings.ToLower(sc.Text()), needle) {
				n++
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", p, err)
		}
	}
	return n, nil
}
