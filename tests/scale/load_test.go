package scale

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// loadEnv, set in this test binary's environment, makes it the load
// process (see loadMain) instead of the benchmark: its value is the
// loadConfig as JSON.
const loadEnv = "CONSUL_UPGRADE_SCALE_LOAD"

// loadConfig is what the benchmark asks of its load process.
type loadConfig struct {
	Writer      string        // HTTP address of the agent the writer writes through
	Watchers    []string      // HTTP addresses of the agents the watchers block on
	WriteEvery  time.Duration // between writes
	PIDFile     string        // the rig's pid file ("PID NODE" lines)
	SampleEvery time.Duration // between samples of the agents' memory and CPU
	IdleWindow  time.Duration // the second sample comes this long after the first (the cluster idle but for the load)
}

// loadStats is what the load process measured, printed as JSON on its
// stdout when its stdin closes.
type loadStats struct {
	Acked, Failed, Bursts, Lost int
	LongestBurst                time.Duration
	WatchAnswers, WatchErrors   int
	WatchLongestGap             time.Duration
	WatchRegressions            int
	Mem                         memStats
	Err                         string
}

// memStats are the agents' memory samples, in bytes.
type memStats struct {
	PeakRSS, PeakPSS, MachinePeak uint64
	// First and Last are the mean RSS and PSS of one agent by role
	// ("server", "client") in the first and the last sample.
	First, Last map[string]roleMem
	Samples     int
}

type roleMem struct{ RSS, PSS, N uint64 }

// startLoad starts this test binary as the load process. Its stderr is the
// benchmark's (progress lines); stop closes its stdin and reads its figures.
func startLoad(cfg loadConfig) (stop func() (loadStats, error), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	conf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	// Not the agents' runtime tuning: the load keeps every acknowledged key.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, loadEnv+"="+string(conf))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() (loadStats, error) {
		in.Close()
		err := cmd.Wait()
		var s loadStats
		if jerr := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &s); jerr != nil {
			return s, errors.Join(err, fmt.Errorf("the load process's figures: %w (%q)", jerr, out.String()))
		}
		return s, err
	}, nil
}

// loadMain is the load process: a writer, the watchers and the memory
// sampler, until stdin closes; then the lost writes are counted and the
// figures printed on stdout.
func loadMain() int {
	var cfg loadConfig
	if err := json.Unmarshal([]byte(os.Getenv(loadEnv)), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "scale load: bad config: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{addr: cfg.Writer, client: &http.Client{Timeout: 2 * time.Second}}
	var ws []*watcher
	for _, a := range cfg.Watchers {
		ws = append(ws, &watcher{addr: a})
	}
	mem := &sampler{pidFile: cfg.PIDFile}
	var wg sync.WaitGroup
	wg.Add(3 + len(ws))
	go func() { defer wg.Done(); w.run(ctx, cfg.WriteEvery) }()
	go func() { defer wg.Done(); w.tick(ctx, 100*time.Millisecond) }()
	go func() { defer wg.Done(); mem.run(ctx, cfg.SampleEvery) }()
	for _, x := range ws {
		go func() { defer wg.Done(); x.run(ctx) }()
	}
	go func() { // progress every 30s
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s := w.stats()
			m := mem.stats()
			fmt.Fprintf(os.Stderr, "    load: writes acked %d, failed %d (longest run %s); agents' RSS %d MB (peak %d MB)\n",
				s.Acked, s.Failed, s.LongestBurst.Round(10*time.Millisecond), mem.lastRSS()/1e6, m.PeakRSS/1e6)
		}
	}()
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
	cancel()
	wg.Wait()

	s := w.stats()
	for _, x := range ws {
		a, e, gap, reg := x.stats()
		s.WatchAnswers += a
		s.WatchErrors += e
		s.WatchLongestGap = max(s.WatchLongestGap, gap)
		s.WatchRegressions += reg
	}
	s.Mem = mem.stats()
	lost, err := w.lost()
	s.Lost = lost
	if err != nil {
		s.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(s)
	return 0
}

// writer puts writer/<n> every interval and remembers what was
// acknowledged; tick puts bench/tick, which the watchers block on.
type writer struct {
	addr   string
	client *http.Client

	mu    sync.Mutex
	acked []string
	s     loadStats
	burst time.Time
}

func (w *writer) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		key := fmt.Sprintf("writer/%07d", i)
		err := put(w.client, "http://"+w.addr+"/v1/kv/"+key, strconv.Itoa(i))
		w.record(key, err, time.Now())
	}
}

func (w *writer) tick(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		put(w.client, "http://"+w.addr+"/v1/kv/bench/tick", strconv.Itoa(i))
	}
}

func (w *writer) record(key string, err error, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.s.Failed++
		if w.burst.IsZero() {
			w.burst = now
			w.s.Bursts++
		}
		return
	}
	w.acked = append(w.acked, key)
	w.s.Acked++
	if !w.burst.IsZero() {
		w.s.LongestBurst = max(w.s.LongestBurst, now.Sub(w.burst))
		w.burst = time.Time{}
	}
}

func (w *writer) stats() loadStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.s
	if !w.burst.IsZero() {
		s.LongestBurst = max(s.LongestBurst, time.Since(w.burst))
	}
	return s
}

// lost lists writer/ (consistent read) and counts the acknowledged keys
// it lacks; it tries for up to a minute.
func (w *writer) lost() (int, error) {
	w.mu.Lock()
	acked := append([]string(nil), w.acked...)
	w.mu.Unlock()
	client := &http.Client{Timeout: 30 * time.Second}
	var last error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		resp, err := client.Get("http://" + w.addr + "/v1/kv/writer/?keys&consistent")
		if err != nil {
			last = err
			continue
		}
		var keys []string
		err = json.NewDecoder(resp.Body).Decode(&keys)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			last = fmt.Errorf("GET writer/?keys: %s, %v", resp.Status, err)
			continue
		}
		have := make(map[string]bool, len(keys))
		for _, k := range keys {
			have[k] = true
		}
		n := 0
		for _, k := range acked {
			if !have[k] {
				n++
			}
		}
		return n, nil
	}
	return 0, fmt.Errorf("the written keys could not be listed through %s: %w", w.addr, last)
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
	if resp.StatusCode != http.StatusOK || string(bytes.TrimSpace(body)) != "true" {
		return fmt.Errorf("PUT %s: %s %q", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// watcher keeps a blocking query on bench/tick open through one agent, as
// a consul-template or a service mesh's watch would.
type watcher struct {
	addr string

	mu          sync.Mutex
	answers     int
	errs        int
	longestGap  time.Duration
	regressions int
}

func (x *watcher) run(ctx context.Context) {
	client := &http.Client{Timeout: 15 * time.Second}
	var index uint64
	last, seen := time.Now(), uint64(0)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/v1/kv/bench/tick?index=%d&wait=5s", x.addr, index), nil)
		resp, err := client.Do(req)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			x.failed()
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		var kvs []struct{ ModifyIndex uint64 }
		derr := json.NewDecoder(resp.Body).Decode(&kvs)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			derr = nil // not written yet
		} else if resp.StatusCode != http.StatusOK {
			derr = fmt.Errorf("%s", resp.Status)
		}
		if derr != nil {
			x.failed()
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		if i, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64); err == nil {
			if i < index {
				i = 0 // the index went back (a restored snapshot, say): start again, as Consul's docs say
			}
			index = i
		}
		now := time.Now()
		x.mu.Lock()
		x.answers++
		x.longestGap = max(x.longestGap, now.Sub(last))
		if len(kvs) == 1 {
			// A write that timed out may land after a later one, so the
			// value may go back; the raft index of the key's last write
			// may not, unless a read was stale.
			if kvs[0].ModifyIndex < seen {
				x.regressions++
			}
			seen = max(seen, kvs[0].ModifyIndex)
		}
		x.mu.Unlock()
		last = now
	}
}

func (x *watcher) failed() {
	x.mu.Lock()
	x.errs++
	x.mu.Unlock()
}

func (x *watcher) stats() (answers, errs int, gap time.Duration, regressions int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.answers, x.errs, x.longestGap, x.regressions
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// sampler reads the memory of every live agent of the rig's pid file.
type sampler struct {
	pidFile string

	mu    sync.Mutex
	valid map[int]string // pid -> role, for pids whose command line is the agent's
	s     memStats
	last  uint64
}

func (m *sampler) run(ctx context.Context, every time.Duration) {
	m.valid = map[int]string{}
	for {
		m.sample()
		select {
		case <-ctx.Done():
			m.sample()
			return
		case <-time.After(every):
		}
	}
}

func (m *sampler) sample() {
	f, err := os.Open(m.pidFile)
	if err != nil {
		return
	}
	type agent struct {
		pid  int
		node string
	}
	var agents []agent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		if pid, err := strconv.Atoi(fields[0]); err == nil {
			agents = append(agents, agent{pid, fields[1]})
		}
	}
	f.Close()
	var rss, pss uint64
	by := map[string]roleMem{}
	for _, a := range agents {
		role, ok := m.valid[a.pid]
		if !ok {
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", a.pid))
			if err != nil {
				continue // gone
			}
			if !bytes.Contains(cmdline, []byte("consul")) || !bytes.Contains(cmdline, []byte("-node="+a.node+"\x00")) {
				continue // not the agent (a reused pid)
			}
			role = "client"
			if bytes.Contains(cmdline, []byte("\x00-server\x00")) {
				role = "server"
			}
			m.valid[a.pid] = role
		}
		r, p, ok := procMem(a.pid)
		if !ok {
			continue
		}
		rss += r
		pss += p
		x := by[role]
		x.RSS, x.PSS, x.N = x.RSS+r, x.PSS+p, x.N+1
		by[role] = x
	}
	for role, x := range by {
		by[role] = roleMem{RSS: x.RSS / x.N, PSS: x.PSS / x.N, N: x.N}
	}
	used := machineUsed()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s.Samples++
	m.s.PeakRSS = max(m.s.PeakRSS, rss)
	m.s.PeakPSS = max(m.s.PeakPSS, pss)
	m.s.MachinePeak = max(m.s.MachinePeak, used)
	if m.s.First == nil {
		m.s.First = by
	}
	m.s.Last = by
	m.last = rss
}

func (m *sampler) stats() memStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.s
}

func (m *sampler) lastRSS() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// procMem is a process's resident and proportional set size in bytes
// (/proc/PID/smaps_rollup).
func procMem(pid int) (rss, pss uint64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			rss = kb * 1024
		case "Pss:":
			pss = kb * 1024
		}
	}
	return rss, pss, rss > 0
}

// machineUsed is MemTotal - MemAvailable of the whole machine, in bytes.
func machineUsed() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var total, avail uint64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = v * 1024
		case "MemAvailable:":
			avail = v * 1024
		}
	}
	return total - avail
}
