package upgrade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul is the handful of Consul HTTP API calls that upgrade needs. NewConsul
// implements it over an *api.Client; tests may implement it directly.
type Consul interface {
	// Members returns the LAN serf members as the agent sees them.
	Members(ctx context.Context) ([]*api.AgentMember, error)
	// RaftConfiguration returns the Raft peer set (voters, leader).
	RaftConfiguration(ctx context.Context) (*api.RaftConfiguration, error)
	// AutopilotHealth returns autopilot's view of server health. It returns
	// the reply (not an error) when Consul answers 429 because the cluster
	// is unhealthy.
	AutopilotHealth(ctx context.Context) (*api.OperatorHealthReply, error)
	// AutopilotConfiguration returns the autopilot settings
	// (ServerStabilizationTime, MaxTrailingLogs, ...).
	AutopilotConfiguration(ctx context.Context) (*api.AutopilotConfiguration, error)
	// Leader returns the Raft address ("ip:port") of the leader, or "" when
	// there is none.
	Leader(ctx context.Context) (string, error)
	// AgentSelf returns the agent's /v1/agent/self document.
	AgentSelf(ctx context.Context) (map[string]map[string]any, error)
	// Datacenters returns the datacenters known to the catalog.
	Datacenters(ctx context.Context) ([]string, error)
	// SnapshotSave streams a new snapshot archive; the caller closes it.
	SnapshotSave(ctx context.Context) (io.ReadCloser, error)
	// TransferLeader asks the leader to hand leadership to the server with
	// the given Raft ID (Consul >= 1.15).
	TransferLeader(ctx context.Context, id string) error
}

// EraReader is the optional part of Consul that the eras before the Raft
// configuration endpoint and the snapshot API (before 0.7 and 0.7.1) need:
// Discover and the gates read the peer set and each server's progress through
// it, and the logical backup the KV tree and ACL tokens. NewConsul
// implements it; a Consul without it works with clusters of 0.7.1 and
// later, and fails with ErrNoEraReader on older ones.
type EraReader interface {
	// Peers returns the Raft peer set ("ip:port" of every voter) from
	// /v1/status/peers, which every era has: before 0.7 it is the only
	// view of the peer set.
	Peers(ctx context.Context) ([]string, error)
	// KVList returns the whole KV tree (/v1/kv/?recurse), for the logical
	// backup, with the index it was read at.
	KVList(ctx context.Context) ([]*api.KVPair, uint64, error)
	// ACLList returns the ACL tokens through the legacy /v1/acl/list (0.4
	// to 1.10), for the logical backup; it needs a management token.
	ACLList(ctx context.Context) ([]*api.ACLEntry, error)
	// StaleState makes a stale read (/v1/catalog/services?stale), which the
	// server the agent is answers from its own state, and returns what the
	// response headers say about that server's Raft state. Before 0.7,
	// /v1/agent/self has no raft stats: this is the HTTP API's only view of
	// a server's progress and contact with the leader.
	StaleState(ctx context.Context) (StaleState, error)
}

// ErrNoEraReader is wrapped by the error of an observation or backup that
// needs EraReader when the Consul given does not implement it.
var ErrNoEraReader = errors.New("the Consul given does not implement upgrade.EraReader, which the eras before 0.7.1 need (upgrade.NewConsul's does; a wrapper made with upgrade.Intercept keeps it)")

// eraReader returns c's EraReader, or an error naming what needed it and
// c's type.
func eraReader(c Consul, what string) (EraReader, error) {
	if r, ok := c.(EraReader); ok {
		return r, nil
	}
	return nil, fmt.Errorf("%s through %T: %w", what, c, ErrNoEraReader)
}

// StaleState is what a stale read answered by one server says about it:
// X-Consul-Index (the index of its catalog), X-Consul-LastContact (the time
// since it last heard from the leader; 0 on the leader) and
// X-Consul-KnownLeader. Every era sets these headers.
type StaleState struct {
	Index       uint64
	LastContact time.Duration
	KnownLeader bool
}

// Calls to an endpoint that a Consul version does not have answer 404; the
// era-specific calls turn that into a *MissingEndpointError naming the
// versions that have it.
func missing(err error, path, versions string) error {
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return &MissingEndpointError{Path: path, Versions: versions}
	}
	return err
}

// NewConsul returns a Consul backed by c. Every call carries its ctx.
func NewConsul(c *api.Client) Consul { return &apiConsul{c: c} }

// ConnectAddr returns a Consul for the agent at address ("127.0.0.1:8500"
// or "https://consul.example:8501"), configured otherwise from the usual
// CONSUL_HTTP_* environment variables (token, TLS). Callers that already
// hold an *api.Client use NewConsul.
func ConnectAddr(address string) (Consul, error) {
	cfg := api.DefaultConfig()
	if address != "" {
		cfg.Address = address
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %q: %w", address, err)
	}
	return NewConsul(c), nil
}

type apiConsul struct{ c *api.Client }

func q(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

func (a *apiConsul) Members(ctx context.Context) ([]*api.AgentMember, error) {
	var out []*api.AgentMember
	if _, err := a.c.Raw().Query("/v1/agent/members", &out, q(ctx)); err != nil {
		return nil, fmt.Errorf("list serf members: %w", err)
	}
	return out, nil
}

func (a *apiConsul) RaftConfiguration(ctx context.Context) (*api.RaftConfiguration, error) {
	rc, err := a.c.Operator().RaftGetConfiguration(q(ctx))
	if err = missing(err, "/v1/operator/raft/configuration", "0.7.0 and later"); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	return rc, nil
}

// AutopilotHealth relies on api's AutopilotServerHealth, which accepts both
// 200 and 429 (Consul's "unhealthy" answer) and decodes the body in both
// cases.
func (a *apiConsul) AutopilotHealth(ctx context.Context) (*api.OperatorHealthReply, error) {
	h, err := a.c.Operator().AutopilotServerHealth(q(ctx))
	if err = missing(err, "/v1/operator/autopilot/health", "0.8.0 and later"); err != nil {
		return nil, fmt.Errorf("read autopilot health: %w", err)
	}
	return h, nil
}

func (a *apiConsul) AutopilotConfiguration(ctx context.Context) (*api.AutopilotConfiguration, error) {
	c, err := a.c.Operator().AutopilotGetConfiguration(q(ctx))
	if err = missing(err, "/v1/operator/autopilot/configuration", "0.8.0 and later"); err != nil {
		return nil, fmt.Errorf("read autopilot configuration: %w", err)
	}
	return c, nil
}

func (a *apiConsul) Leader(ctx context.Context) (string, error) {
	l, err := a.c.Status().LeaderWithQueryOptions(q(ctx))
	if err != nil {
		return "", fmt.Errorf("read raft leader: %w", err)
	}
	return l, nil
}

func (a *apiConsul) AgentSelf(ctx context.Context) (map[string]map[string]any, error) {
	var out map[string]map[string]any
	if _, err := a.c.Raw().Query("/v1/agent/self", &out, q(ctx)); err != nil {
		return nil, fmt.Errorf("read agent self: %w", err)
	}
	return out, nil
}

func (a *apiConsul) Datacenters(ctx context.Context) ([]string, error) {
	var out []string
	if _, err := a.c.Raw().Query("/v1/catalog/datacenters", &out, q(ctx)); err != nil {
		return nil, fmt.Errorf("list datacenters: %w", err)
	}
	return out, nil
}

func (a *apiConsul) SnapshotSave(ctx context.Context) (io.ReadCloser, error) {
	rc, _, err := a.c.Snapshot().Save(q(ctx))
	if err = missing(err, "/v1/snapshot", "0.7.1 and later"); err != nil {
		return nil, fmt.Errorf("save snapshot: %w", err)
	}
	return rc, nil
}

func (a *apiConsul) TransferLeader(ctx context.Context, id string) error {
	r, err := a.c.Operator().RaftLeaderTransfer(id, q(ctx))
	if err = missing(err, "/v1/operator/raft/transfer-leader", "1.15.0 and later"); err != nil {
		return fmt.Errorf("transfer raft leadership to %s: %w", id, err)
	}
	if !r.Success {
		return fmt.Errorf("transfer raft leadership to %s: the leader answered success=false; check the target is a healthy voter", id)
	}
	return nil
}

func (a *apiConsul) Peers(ctx context.Context) ([]string, error) {
	var out []string
	if _, err := a.c.Raw().Query("/v1/status/peers", &out, q(ctx)); err != nil {
		return nil, fmt.Errorf("read raft peers: %w", err)
	}
	return out, nil
}

// KVList reads the whole tree. An empty tree answers 404, which api's List
// turns into no pairs: it is not a missing endpoint (/v1/kv exists in every
// era). The read is ?consistent: it serves the logical backup, and a
// default read answered by a leader elected a moment ago (a single server
// just restarted by the hop before) can come before the leader has applied
// its log again and leave keys out. A leader not ready yet refuses the
// read instead ("Not ready to serve consistent reads"); KVList asks again
// every 100ms for up to notReadyWait, as that refusal ends when the new
// leader's barrier is through, and then fails: the backup fails rather
// than keep a partial tree.
func (a *apiConsul) KVList(ctx context.Context) ([]*api.KVPair, uint64, error) {
	qo := (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx)
	deadline := time.Now().Add(notReadyWait)
	pairs, meta, err := a.c.KV().List("", qo)
	for err != nil && notReady(err) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("read the KV tree: %w (last: %w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
		pairs, meta, err = a.c.KV().List("", qo)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the KV tree: %w", err)
	}
	var index uint64
	if meta != nil {
		index = meta.LastIndex
	}
	return pairs, index, nil
}

// notReadyWait bounds how long KVList waits out a new leader's refusal of
// consistent reads. The refusal lasts until the leader's first barrier
// commits: milliseconds on a healthy cluster.
var notReadyWait = 10 * time.Second // a variable for the tests

// notReady reports whether err is a leader's refusal of a consistent read
// while it has not yet applied its log since its election. Servers from
// 0.9.0 refuse so (hashicorp/consul#2644, fixed by #3154); older ones answer
// at once, a consistent read there only confirms the leadership with a
// quorum. The logical backup is for those older eras (before 0.7.1), but it
// is taken before the hop's first restart, on a cluster the pre-checks found
// settled, where that window is long closed.
func notReady(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusInternalServerError && strings.Contains(se.Body, "Not ready to serve consistent reads")
}

func (a *apiConsul) ACLList(ctx context.Context) ([]*api.ACLEntry, error) {
	//lint:ignore SA1019 the legacy ACL API is the one the eras before 0.7.1 have
	acls, _, err := a.c.ACL().List(q(ctx)) //nolint:staticcheck
	if err = missing(err, "/v1/acl/list", "0.4.0 to 1.10.x"); err != nil {
		return nil, fmt.Errorf("list legacy ACL tokens: %w", err)
	}
	return acls, nil
}

func (a *apiConsul) StaleState(ctx context.Context) (StaleState, error) {
	qo := (&api.QueryOptions{AllowStale: true}).WithContext(ctx)
	_, meta, err := a.c.Catalog().Services(qo)
	if err != nil {
		return StaleState{}, fmt.Errorf("stale catalog read: %w", err)
	}
	return StaleState{Index: meta.LastIndex, LastContact: meta.LastContact, KnownLeader: meta.KnownLeader}, nil
}
