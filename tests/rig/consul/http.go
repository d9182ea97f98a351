package consulrig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

var httpClient = &http.Client{Timeout: 5 * time.Second}

// Member is one entry of /v1/agent/members, as much as the rig reads.
type Member struct {
	Name   string
	Addr   string
	Status int // 1 alive, 2 leaving, 3 left, 4 failed
	Tags   map[string]string
}

// Build returns the version from the member's serf build tag
// ("1.12.9:abcdef" -> "1.12.9").
func (m Member) Build() string {
	b, _, _ := strings.Cut(m.Tags["build"], ":")
	return b
}

// do sends one request to a node's HTTP API and decodes a JSON answer into
// out (when out is not nil).
func (c *Cluster) do(ctx context.Context, node, method, path string, body []byte, out any) error {
	addr := c.HTTPAddr(node)
	if addr == "" {
		return fmt.Errorf("node %q is not in this cluster (%s)", node, strings.Join(c.Nodes(), ", "))
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, r)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on %s: %w", method, path, node, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s on %s: reading: %w", method, path, node, err)
	}
	if resp.StatusCode == http.StatusNotFound && out != nil {
		return errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s on %s: %s: %s", method, path, node, resp.Status, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s on %s: decoding %q: %w", method, path, node, data, err)
	}
	return nil
}

var errNotFound = errors.New("not found")

// Members returns the serf LAN members as node sees them.
func (c *Cluster) Members(ctx context.Context, node string) ([]Member, error) {
	var ms []Member
	if err := c.do(ctx, node, http.MethodGet, "/v1/agent/members", nil, &ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// LeaderAddr returns the raft leader address node knows ("" when it knows
// none).
func (c *Cluster) LeaderAddr(ctx context.Context, node string) (string, error) {
	var leader string
	if err := c.do(ctx, node, http.MethodGet, "/v1/status/leader", nil, &leader); err != nil {
		return "", err
	}
	return leader, nil
}

// Leader returns the name of the leader server, asking the servers that run
// in turn until one answers.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	var errs []error
	for _, s := range c.Servers() {
		if c.tr.PID(s) == 0 {
			continue
		}
		addr, err := c.LeaderAddr(ctx, s)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if addr == "" {
			errs = append(errs, fmt.Errorf("%s knows no leader", s))
			continue
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("%s reports leader %q: %w", s, addr, err)
		}
		node, ok := c.nodeByIP(host)
		if !ok {
			return "", fmt.Errorf("%s reports leader %s, which is not a server of this cluster", s, addr)
		}
		return node, nil
	}
	if len(errs) == 0 {
		return "", errors.New("no server of the cluster runs; start one")
	}
	return "", fmt.Errorf("no leader known: %w", errors.Join(errs...))
}

// WaitHealthy waits until every agent of the cluster runs, all of them
// report the same known leader, and the first running server sees every
// agent alive in serf with the build tag of the version its process runs.
// The error quotes the last condition that did not hold.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		last := c.unhealthy(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last: %w", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// unhealthy returns what keeps the cluster from being healthy, or nil.
func (c *Cluster) unhealthy(ctx context.Context) error {
	want := map[string]string{}
	var observer string
	for _, node := range c.Nodes() {
		v, err := c.tr.RunningVersion(ctx, node)
		if err != nil {
			return err
		}
		want[node] = v
	}
	if servers := c.Servers(); len(servers) > 0 {
		observer = servers[0]
	}
	leader := ""
	for _, node := range c.Nodes() {
		l, err := c.LeaderAddr(ctx, node)
		if err != nil {
			return err
		}
		if l == "" {
			return fmt.Errorf("%s knows no leader yet", node)
		}
		if leader != "" && l != leader {
			return fmt.Errorf("agents disagree on the leader: %s and %s", leader, l)
		}
		leader = l
	}
	ms, err := c.Members(ctx, observer)
	if err != nil {
		return err
	}
	seen := map[string]Member{}
	for _, m := range ms {
		seen[m.Name] = m
	}
	for _, node := range c.Nodes() {
		m, ok := seen[node]
		switch {
		case !ok:
			return fmt.Errorf("%s does not list %s among its members yet", observer, node)
		case m.Status != 1:
			return fmt.Errorf("%s sees %s with serf status %d, want 1 (alive)", observer, node, m.Status)
		case m.Build() != want[node]:
			return fmt.Errorf("%s sees %s with build tag %q, want version %s", observer, node, m.Tags["build"], want[node])
		}
	}
	return nil
}

// KVPut writes a key through node's HTTP API.
func (c *Cluster) KVPut(ctx context.Context, node, key, value string) error {
	var ok bool
	if err := c.do(ctx, node, http.MethodPut, "/v1/kv/"+key, []byte(value), &ok); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("PUT /v1/kv/%s on %s answered false", key, node)
	}
	return nil
}

// KVGet reads a key through node's HTTP API in Consul's default
// consistency mode; found is false when the key does not exist. Right after
// a server restarts, a default read can answer before the leader has applied
// its log again and miss a key that exists; use KVGetConsistent to read
// what the cluster holds.
func (c *Cluster) KVGet(ctx context.Context, node, key string) (value string, found bool, err error) {
	return c.kvGet(ctx, node, "/v1/kv/"+key)
}

// KVGetConsistent reads a key with ?consistent: the leader first confirms
// its leadership and, on the versions that have it, that it has applied its
// log since it was elected. A freshly elected leader refuses such reads
// until then ("Not ready to serve consistent reads"), so KVGetConsistent
// asks again every 100ms until one is answered or ctx ends; the error then
// quotes the last refusal.
func (c *Cluster) KVGetConsistent(ctx context.Context, node, key string) (value string, found bool, err error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		value, found, err = c.kvGet(ctx, node, "/v1/kv/"+key+"?consistent")
		if err == nil {
			return value, found, nil
		}
		select {
		case <-ctx.Done():
			return "", false, fmt.Errorf("%w; last: %w", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func (c *Cluster) kvGet(ctx context.Context, node, path string) (value string, found bool, err error) {
	var entries []struct{ Value []byte }
	err = c.do(ctx, node, http.MethodGet, path, nil, &entries)
	if errors.Is(err, errNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if len(entries) == 0 {
		return "", false, nil
	}
	return string(entries[0].Value), true, nil
}
