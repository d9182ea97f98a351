package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/upgrade"
	"github.com/seed-e5e14ead/consul-upgrade/upgrade/metrics"
)

// watchFlags are apply's flags for those who watch a run from elsewhere:
// Prometheus metrics, and a probe writer whose failed writes they count.
type watchFlags struct {
	addr     *string
	linger   *time.Duration
	probeKey *string
	probeInt *time.Duration
}

func addWatchFlags(fs *flag.FlagSet) watchFlags {
	return watchFlags{
		addr:     fs.String("metrics-addr", "", "serve Prometheus metrics of the run at http://`ADDRESS`/metrics while it lasts (e.g. :9464, or 127.0.0.1:0 for any free port; the address is printed on stderr); see the upgrade/metrics package for the names"),
		linger:   fs.Duration("metrics-linger", 0, "with -metrics-addr, keep serving this long after the run ended, so a scrape sees how it ended (e.g. twice the scrape interval); Ctrl-C ends it early"),
		probeKey: fs.String("probe-writes", "", "write the KV `KEY` every -probe-interval through the agent apply talks to, while the run lasts, and count the writes the cluster did not take (consul_upgrade_probe_writes_failed_total, and a line on stderr at the end); the key is deleted at the end"),
		probeInt: fs.Duration("probe-interval", time.Second, "how often -probe-writes writes"),
	}
}

// check refuses bad values before anything is touched.
func (w watchFlags) check() error {
	if *w.linger < 0 {
		return usagef("-metrics-linger %s is negative; give 0 (stop serving when the run ends) or a positive duration", *w.linger)
	}
	if *w.linger > 0 && *w.addr == "" {
		return usagef("-metrics-linger needs -metrics-addr: there is nothing to serve without it")
	}
	if *w.probeInt <= 0 {
		return usagef("-probe-interval %s must be positive (e.g. 1s)", *w.probeInt)
	}
	return nil
}

// watch serves the metrics (when -metrics-addr) and runs the probe writer
// (when -probe-writes) of one apply.
type watch struct {
	m      *metrics.Metrics // nil without -metrics-addr
	srv    *http.Server
	served chan struct{}
	url    string
	linger time.Duration
	stderr io.Writer

	probe *probe
	ran   bool // the run was started: the end lingers
}

// startWatch listens on -metrics-addr; a bad address is a usage error,
// before anything is touched. Without -metrics-addr it returns a watch
// that serves nothing.
func startWatch(f watchFlags, stderr io.Writer) (*watch, error) {
	w := &watch{stderr: stderr, linger: *f.linger}
	if *f.addr == "" {
		return w, nil
	}
	m, h, err := metrics.NewHandler()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", *f.addr)
	if err != nil {
		return nil, usagef("-metrics-addr %s: %v; give a free ADDRESS such as :9464 or 127.0.0.1:0", *f.addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	w.m, w.srv, w.served = m, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, make(chan struct{})
	w.url = "http://" + hostPort(l.Addr()) + "/metrics"
	go func() {
		defer close(w.served)
		w.srv.Serve(l)
	}()
	fmt.Fprintf(stderr, "consul-upgrade apply: serving metrics at %s\n", w.url)
	return w, nil
}

// hostPort is a listener's address as a URL host: 127.0.0.1 for an
// unspecified address (":9464" listens on every address, this one too).
func hostPort(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := ta.IP.String()
	if ta.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// onEvent is the run's OnEvent: the metrics see each event, then the
// reporter.
func (w *watch) onEvent(report func(upgrade.Event)) func(upgrade.Event) {
	if w.m == nil {
		return report
	}
	return func(ev upgrade.Event) {
		w.m.Observe(ev)
		report(ev)
	}
}

// startProbe starts the probe writer on kv.
func (w *watch) startProbe(ctx context.Context, f watchFlags, c upgrade.Consul) error {
	if *f.probeKey == "" {
		return nil
	}
	kv, ok := c.(upgrade.KVStore)
	if !ok {
		return usagef("-probe-writes: the agent's Consul (%T) cannot write KV keys (upgrade.KVStore)", c)
	}
	w.probe = startProbe(ctx, kv, *f.probeKey, *f.probeInt, func(err error) {
		if w.m != nil {
			w.m.ObserveProbeWrite(err)
		}
	})
	return nil
}

// end stops the probe writer (and prints its figures), then serves the
// metrics for -metrics-linger unless ctx ends first, then stops serving.
func (w *watch) end(ctx context.Context) {
	if w.probe != nil {
		s := w.probe.stop()
		fmt.Fprintf(w.stderr, "consul-upgrade apply: probe writes to %s: %d, %d failed, longest failure %s\n", s.key, s.writes, s.failed, durationText(s.longest))
		if s.deleteErr != nil {
			fmt.Fprintf(w.stderr, "consul-upgrade apply: the probe key %s could not be deleted (%v); delete it by hand: consul kv delete %s\n", s.key, s.deleteErr, s.key)
		}
	}
	if w.srv == nil {
		return
	}
	if w.linger > 0 && w.ran && ctx.Err() == nil {
		fmt.Fprintf(w.stderr, "consul-upgrade apply: the run ended; serving its last metrics at %s for %s (Ctrl-C ends this)\n", w.url, w.linger)
		t := time.NewTimer(w.linger)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := w.srv.Shutdown(sctx); err != nil {
		w.srv.Close()
	}
	<-w.served
}

// probe writes one KV key at a fixed interval and counts what failed.
type probe struct {
	kv     upgrade.KVStore
	key    string
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	writes  int
	failed  int
	burst   time.Time // start of the current run of failures (zero: none)
	longest time.Duration
}

// probeStats are a probe's figures.
type probeStats struct {
	key            string
	writes, failed int
	longest        time.Duration
	deleteErr      error
}

// startProbe writes key ("<n> <time>") through kv every interval, each
// write bounded by twice the interval (at least 2s), until stop; observe
// is told each write's outcome.
func startProbe(ctx context.Context, kv upgrade.KVStore, key string, every time.Duration, observe func(error)) *probe {
	ctx, cancel := context.WithCancel(ctx)
	p := &probe{kv: kv, key: key, cancel: cancel, done: make(chan struct{})}
	bound := max(2*every, 2*time.Second)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wctx, wcancel := context.WithTimeout(ctx, bound)
			err := kv.KVPut(wctx, key, []byte(fmt.Sprintf("%d %s", n, time.Now().UTC().Format(time.RFC3339Nano))))
			wcancel()
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return // stopped during the write: not the cluster's failure
			}
			observe(err)
			p.record(err, time.Now())
		}
	}()
	return p
}

func (p *probe) record(err error, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writes++
	if err != nil {
		p.failed++
		if p.burst.IsZero() {
			p.burst = now
		}
		return
	}
	if !p.burst.IsZero() {
		p.longest = max(p.longest, now.Sub(p.burst))
		p.burst = time.Time{}
	}
}

// stop ends the writer, deletes the key and returns the figures (a run of
// failures still open counts until now).
func (p *probe) stop() probeStats {
	p.cancel()
	<-p.done
	p.mu.Lock()
	if !p.burst.IsZero() {
		p.longest = max(p.longest, time.Since(p.burst))
	}
	s := probeStats{key: p.key, writes: p.writes, failed: p.failed, longest: p.longest}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.deleteErr = p.kv.KVDelete(ctx, p.key)
	return s
}
