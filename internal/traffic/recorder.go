package traffic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint is an agent the workers send requests to.
type Endpoint struct {
	Name string // node name, for the record
	Addr string // HTTP address, host:port
}

// Config describes the traffic. Zero fields take the defaults below.
type Config struct {
	// Endpoints are the agents; worker i uses Endpoints[i % len]. At least
	// one is needed.
	Endpoints []Endpoint
	// Prefix is the KV folder of the registers (default "traffic"): keys
	// Prefix/k0 .. Prefix/k<Keys-1>. They should not exist at the start.
	Prefix string
	// Keys is the number of registers (default 4).
	Keys int
	// Workers is the number of concurrent workers (default 8).
	Workers int
	// Rate bounds all workers together, in operations per second
	// (default 100).
	Rate float64
	// OpTimeout bounds each request (default 2 s); a request that times
	// out is indeterminate.
	OpTimeout time.Duration
	// MaxDuration and MaxOps stop the traffic by themselves (defaults 15
	// minutes and 100000 operations).
	MaxDuration time.Duration
	MaxOps      int
	// Seed makes the choice of operations repeatable (default 1).
	Seed uint64
	// Reads is the consistency mode of the reads (default ReadConsistent).
	// ReadStale exists to show that the checker catches what a
	// non-linearizable read returns, on a real cluster.
	Reads ReadMode
}

// ReadMode is a Consul read consistency mode.
type ReadMode string

const (
	// ReadConsistent: ?consistent, the leader confirms it still leads
	// before it answers (linearizable).
	ReadConsistent ReadMode = "consistent"
	// ReadStale: ?stale, any server answers from its own state (may be
	// behind the leader; not linearizable).
	ReadStale ReadMode = "stale"
)

// Limits on the configuration.
const (
	MaxWorkers = 64
	MaxKeys    = 64
	MaxRate    = 2000
)

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "traffic"
	}
	if c.Keys == 0 {
		c.Keys = 4
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.Rate == 0 {
		c.Rate = 100
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.MaxDuration == 0 {
		c.MaxDuration = 15 * time.Minute
	}
	if c.MaxOps == 0 {
		c.MaxOps = 100000
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Reads == "" {
		c.Reads = ReadConsistent
	}
	return c
}

// Validate reports what is wrong with c (after defaults), naming the
// field, the value and the limit.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("traffic: Config.Endpoints is empty; give at least one agent's HTTP address"))
	}
	for i, e := range c.Endpoints {
		if _, _, err := net.SplitHostPort(e.Addr); err != nil {
			errs = append(errs, fmt.Errorf("traffic: endpoint %d (%q) address %q is not host:port: %w", i, e.Name, e.Addr, err))
		}
	}
	if c.Workers < 1 || c.Workers > MaxWorkers {
		errs = append(errs, fmt.Errorf("traffic: Config.Workers is %d; use 1..%d", c.Workers, MaxWorkers))
	}
	if c.Keys < 1 || c.Keys > MaxKeys {
		errs = append(errs, fmt.Errorf("traffic: Config.Keys is %d; use 1..%d", c.Keys, MaxKeys))
	}
	if c.Rate <= 0 || c.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("traffic: Config.Rate is %g ops/s; use a rate in (0, %d]", c.Rate, MaxRate))
	}
	if c.OpTimeout < 0 || c.MaxDuration < 0 || c.MaxOps < 0 {
		errs = append(errs, fmt.Errorf("traffic: negative OpTimeout %s, MaxDuration %s or MaxOps %d", c.OpTimeout, c.MaxDuration, c.MaxOps))
	}
	if c.Reads != ReadConsistent && c.Reads != ReadStale {
		errs = append(errs, fmt.Errorf("traffic: Config.Reads is %q; use %q or %q", c.Reads, ReadConsistent, ReadStale))
	}
	if strings.Trim(c.Prefix, "/") != c.Prefix {
		errs = append(errs, fmt.Errorf("traffic: Config.Prefix %q must not start or end with /", c.Prefix))
	}
	return errors.Join(errs...)
}

// Recorder runs the traffic and records its history.
type Recorder struct {
	cfg    Config
	client *http.Client
	start  time.Time
	stop   chan struct{}
	halt   sync.Once
	wg     sync.WaitGroup
	ops    atomic.Int64

	mu      sync.Mutex
	history History
}

// Start validates cfg and starts the workers. The traffic runs until Stop,
// MaxDuration or MaxOps, whichever comes first.
func Start(cfg Config) (*Recorder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r := &Recorder{
		cfg: cfg,
		client: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: cfg.OpTimeout}).DialContext,
			MaxIdleConnsPerHost: cfg.Workers,
			IdleConnTimeout:     30 * time.Second,
		}},
		start: time.Now(),
		stop:  make(chan struct{}),
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	timer := time.AfterFunc(cfg.MaxDuration, r.halted)
	for w := 0; w < cfg.Workers; w++ {
		r.wg.Add(1)
		go r.worker(w, tick.C)
	}
	go func() {
		r.wg.Wait()
		tick.Stop()
		timer.Stop()
	}()
	return r, nil
}

func (r *Recorder) halted() { r.halt.Do(func() { close(r.stop) }) }

func (r *Recorder) key(i int) string { return fmt.Sprintf("%s/k%d", r.cfg.Prefix, i) }

// seen is a worker's last read of a key, what its next CAS expects.
type seen struct {
	found bool
	value string
	index uint64
}

func (r *Recorder) worker(w int, tick <-chan time.Time) {
	defer r.wg.Done()
	ep := r.cfg.Endpoints[w%len(r.cfg.Endpoints)]
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(w)))
	last := map[string]seen{}
	for seq := 0; ; seq++ {
		select {
		case <-r.stop:
			return
		case <-tick:
		}
		if r.ops.Add(1) > int64(r.cfg.MaxOps) {
			r.halted()
			return
		}
		key := r.key(rng.IntN(r.cfg.Keys))
		s, haveRead := last[key]
		p := rng.Float64()
		op := Op{Worker: w, Node: ep.Name, Key: key}
		switch {
		case p < 0.5 || (p >= 0.75 && !haveRead):
			op.Kind = Read
		case p < 0.75:
			op.Kind = Put
			op.Value = fmt.Sprintf("w%d.%d", w, seq)
		default:
			op.Kind = CAS
			op.Value = fmt.Sprintf("w%d.%d", w, seq)
			op.CASIndex, op.CASExpect, op.CASExpectFound = s.index, s.value, s.found
		}
		op = r.do(context.Background(), ep, op)
		if op.Kind == Read && op.Outcome == Done {
			last[key] = seen{found: op.Found, value: op.Got, index: op.Index}
		}
		r.record(op)
	}
}

func (r *Recorder) record(op Op) {
	r.mu.Lock()
	r.history = append(r.history, op)
	r.mu.Unlock()
}

// do sends one operation and fills in its times and outcome.
func (r *Recorder) do(ctx context.Context, ep Endpoint, op Op) Op {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	url := "http://" + ep.Addr + "/v1/kv/" + op.Key
	var req *http.Request
	var err error
	switch op.Kind {
	case Read:
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, url+"?"+string(r.cfg.Reads), nil)
	case Put:
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(op.Value))
	case CAS:
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, url+"?cas="+strconv.FormatUint(op.CASIndex, 10), strings.NewReader(op.Value))
	}
	if err != nil { // a malformed request never leaves
		op.Outcome, op.Err = NotSent, err.Error()
		return op
	}
	op.Call = time.Since(r.start)
	resp, err := r.client.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
	op.Return = time.Since(r.start)
	if err != nil {
		op.Outcome, op.Err = classify(err), err.Error()
		return op
	}
	body = bytes.TrimSpace(body)
	switch {
	case op.Kind == Read && resp.StatusCode == http.StatusNotFound:
		op.Outcome = Done
	case op.Kind == Read && resp.StatusCode == http.StatusOK:
		var entries []struct {
			Value       []byte
			ModifyIndex uint64
		}
		if err := json.Unmarshal(body, &entries); err != nil || len(entries) != 1 {
			op.Outcome, op.Err = Indeterminate, fmt.Sprintf("unreadable answer %q: %v", trim(body), err)
			return op
		}
		op.Outcome, op.Found, op.Got, op.Index = Done, true, string(entries[0].Value), entries[0].ModifyIndex
	case resp.StatusCode == http.StatusOK && string(body) == "true":
		op.Outcome, op.OK = Done, true
	case resp.StatusCode == http.StatusOK && string(body) == "false":
		op.Outcome = Done
	default:
		// A 5xx ("No cluster leader", "rpc error ... timed out") may come
		// after the write was committed: indeterminate.
		op.Outcome, op.Err = Indeterminate, fmt.Sprintf("%s: %s", resp.Status, trim(body))
	}
	return op
}

// classify tells a request that never reached Consul (the connection
// could not be opened) from one whose fate is unknown.
func classify(err error) Outcome {
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Op == "dial" {
		return NotSent
	}
	return Indeterminate
}

func trim(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// Stop stops the workers, waits for their requests to end, then reads
// every key once more (reads in the configured mode, marked Final, trying each
// endpoint in turn for up to 30 s while the cluster settles) and returns
// the history. The error names the keys whose final read never succeeded.
func (r *Recorder) Stop(ctx context.Context) (History, error) {
	r.halted()
	r.wg.Wait()
	var missing []string
	deadline := time.Now().Add(30 * time.Second)
	for k := 0; k < r.cfg.Keys; k++ {
		key := r.key(k)
		var errs []string
		done := false
		for try := 0; !done && ctx.Err() == nil; try++ {
			ep := r.cfg.Endpoints[try%len(r.cfg.Endpoints)]
			op := r.do(ctx, ep, Op{Worker: r.cfg.Workers, Node: ep.Name, Key: key, Kind: Read, Final: true})
			if op.Outcome == Done {
				r.record(op)
				done = true
				break
			}
			errs = append(errs, fmt.Sprintf("%s: %s", ep.Name, op.Err))
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !done {
			missing = append(missing, fmt.Sprintf("%s (%s)", key, strings.Join(errs[max(0, len(errs)-3):], "; ")))
		}
	}
	r.mu.Lock()
	h := append(History(nil), r.history...)
	r.mu.Unlock()
	r.client.CloseIdleConnections()
	if len(missing) > 0 {
		return h, fmt.Errorf("traffic: the final read of %d key(s) never succeeded within 30 s: %s", len(missing), strings.Join(missing, ", "))
	}
	return h, nil
}

// Elapsed is the time since the recorder started.
func (r *Recorder) Elapsed() time.Duration { return time.Since(r.start) }
