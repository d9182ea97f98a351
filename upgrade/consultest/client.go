package consultest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// Address is the agent address of the clients NewClient and Cluster.Client
// return. Nothing listens on it: requests are served in-process.
const Address = "consul.test:8500"

// handlerTransport serves each request in-process through a handler: no
// socket, no goroutine, so it works inside a testing/synctest bubble.
type handlerTransport struct {
	h           http.Handler
	unreachable func(*http.Request) bool
}

// HandlerTransport returns an http.RoundTripper that serves every request by
// calling h.ServeHTTP in the caller's goroutine, without a socket. Unlike a
// server from net/http/httptest, it works inside a testing/synctest bubble.
// A request whose context has ended fails with the context's error.
func HandlerTransport(h http.Handler) http.RoundTripper { return handlerTransport{h: h} }

// RoundTrip implements http.RoundTripper.
func (rt handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	if rt.unreachable != nil && rt.unreachable(req) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	rec := httptest.NewRecorder()
	rt.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// NewClient returns a consul/api client whose every request is served by h
// in-process (see HandlerTransport). For a *Cluster, prefer Cluster.Client,
// which also honours SetUnreachable. The error comes from api.NewClient, which
// reads the CONSUL_HTTP_* environment (a CONSUL_HTTP_TOKEN_FILE that cannot be
// read, for instance).
func NewClient(h http.Handler) (*api.Client, error) {
	if c, ok := h.(*Cluster); ok {
		return c.Client()
	}
	return newClient(HandlerTransport(h))
}

func newClient(rt http.RoundTripper) (*api.Client, error) {
	return api.NewClient(&api.Config{Address: Address, Scheme: "http", HttpClient: &http.Client{Transport: rt}})
}

// RoundTripper returns an http.RoundTripper that serves requests with the
// cluster in-process (see HandlerTransport) and refuses them while
// SetUnreachable(true), and refuses those addressed to a node whose agent
// is down (see ClientAt). Use it to build an api.Config of your own.
func (c *Cluster) RoundTripper() http.RoundTripper {
	return handlerTransport{h: c, unreachable: func(req *http.Request) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.unreachable || c.downAgent(req, time.Now())
	}}
}

// Client returns a consul/api client talking to the cluster in-process,
// through RoundTripper. See NewClient for the error.
func (c *Cluster) Client() (*api.Client, error) { return newClient(c.RoundTripper()) }
