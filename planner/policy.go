package planner

import "strings"

// Strategy is how servers are moved to a new version.
type Strategy string

const (
	// InPlace swaps the binary on the same host and data dir, one server at
	// a time, followers first and the leader last. The default.
	InPlace Strategy = "in-place"
	// Replace adds a new-version server, waits until it is a stable voter,
	// then retires an old one (blue/green). Needs a transport that can
	// provision and retire hosts.
	Replace Strategy = "replace"
)

// ServerOrder is the order in which the servers of a datacenter are swapped.
type ServerOrder string

const (
	// FollowersFirst swaps followers first and the leader last. The default;
	// no hop needs a deadline with it.
	FollowersFirst ServerOrder = "followers-first"
	// AsListed swaps servers in the order of Cluster.Servers, the leader
	// included wherever it is. Hops whose rules allow mixed servers only for
	// a while (the 0.5 tombstone window) then carry a deadline.
	AsListed ServerOrder = "as-listed"
)

// StopMode is how an agent is stopped before its binary is swapped.
type StopMode string

const (
	// StopDefault lets the planner choose per role and version (see
	// DefaultStopMode).
	StopDefault StopMode = ""
	// StopKill sends SIGKILL: the agent does not leave the cluster.
	StopKill StopMode = "kill"
	// StopTerminate sends SIGTERM: servers >= 0.7 do not leave on it
	// (leave_on_terminate defaults to false for servers), clients do.
	StopTerminate StopMode = "terminate"
	// StopLeave runs a graceful leave first: the agent leaves the cluster.
	// Never right for an in-place server swap.
	StopLeave StopMode = "leave"
)

// ClientMode says what happens to client agents.
type ClientMode string

const (
	// ClientWaves upgrades the clients of a datacenter after its servers, in
	// waves: a canary, then batches. The default.
	ClientWaves ClientMode = "waves"
	// ClientLeaveBehind leaves the clients on their version on purpose (as in
	// the 2015 story: old clients are upgraded later).
	ClientLeaveBehind ClientMode = "leave-behind"
)

// ClientPolicy shapes the client waves.
type ClientPolicy struct {
	Mode ClientMode `json:"mode,omitempty"`
	// Canary is the size of the first wave of each datacenter and hop
	// (0 means 1).
	Canary int `json:"canary,omitempty"`
	// BatchSize is the size of every later wave. When both BatchSize and
	// BatchPercent are 0, a wave is 10% of the datacenter's clients (at
	// least 1).
	BatchSize int `json:"batch_size,omitempty"`
	// BatchPercent is the size of every later wave as a percentage of the
	// datacenter's clients (rounded up, at least 1). Ignored when BatchSize
	// is set.
	BatchPercent int `json:"batch_percent,omitempty"`
	// MaxUnavailable bounds how many clients of one datacenter and zone are
	// down at once (0: no bound beyond the wave size).
	MaxUnavailable int `json:"max_unavailable,omitempty"`
}

// Policy is what the operator chooses. The zero value is the safe default:
// in place, followers first and the leader last, stop mode per version,
// clients in waves after their datacenter's servers, a snapshot before each
// hop, Consul CE.
type Policy struct {
	Strategy    Strategy     `json:"strategy,omitempty"`
	ServerOrder ServerOrder  `json:"server_order,omitempty"`
	StopMode    StopMode     `json:"stop_mode,omitempty"`
	Clients     ClientPolicy `json:"clients,omitempty"`
	// Enterprise is true for Consul Enterprise: LTS hops may jump three
	// majors, and the Enterprise-only rules apply. It need not be set for a
	// cluster whose agents (or target) run an Enterprise build: a version
	// with "+ent" build metadata, as Discover reads it from the serf build
	// tag, makes Check, Next and Plan treat the cluster as Enterprise, and
	// Plan records that in UpgradePlan.Policy.
	Enterprise bool `json:"enterprise,omitempty"`
	// NoTransferLeadership turns leadership transfer off. By default, when
	// both sides of a hop support it (the old leader and the target are
	// >= 1.15), leadership is handed to an upgraded voter before the old
	// leader is swapped or retired, so the cluster never waits out an
	// election; with this set, the leader is swapped last and the cluster
	// elects a new one after it stops.
	NoTransferLeadership bool `json:"no_transfer_leadership,omitempty"`
	// ReplaceServers is the number of servers each datacenter should have
	// while the replace strategy runs (0: derive it from the observed
	// count: that count when it is odd, one less when it is even, because
	// an even count means one replacement is in flight). Ignored in place.
	ReplaceServers int `json:"replace_servers,omitempty"`
	// Releases, when set, are the only versions the operator can install
	// (an internal mirror, the binaries a transport can resolve). Every
	// stepping stone is then one of them: where the path would stop at the
	// newest patch of a minor line, it stops at the newest listed release
	// of that line that is not known-bad; a stone a rule fixes exactly (the
	// dedicated paths' 1.2.4, 1.6.10, 1.8.19, 1.10.12; 0.5.2; 0.7.5; 0.8.5)
	// must be listed, or Path fails with a *ReleaseError. A listed version
	// that is not a Consul release (an in-house build) is never a stone.
	// The target need not be listed when it is a Consul release (see
	// Releases and CheckRelease); one that is not (an in-house build, a
	// release newer than the catalogue) is accepted only when listed here
	// (an info finding), or when PrecheckUnknownRelease is waived. Empty:
	// stones are the catalogue's newest patches.
	Releases []string `json:"releases,omitempty"`
	// NoSnapshot skips the snapshot step before each hop.
	NoSnapshot bool `json:"no_snapshot,omitempty"`
	// Waive lists rule IDs whose blocking findings the operator accepts.
	Waive []RuleID `json:"waive,omitempty"`
	// Rules are the operator's own rules, checked after the built-in ones.
	Rules []Rule `json:"rules,omitempty"`
}

// CheckWaivers returns a *WaiverError when pol.Waive lists an ID that is
// neither a built-in rule's (Catalogue) nor one of pol.Rules', else nil.
// Next and Plan call it first.
func CheckWaivers(pol Policy) error {
	var unknown []RuleID
	for _, id := range pol.Waive {
		if knownRuleID(id, pol) {
			continue
		}
		unknown = append(unknown, id)
	}
	if len(unknown) == 0 {
		return nil
	}
	e := &WaiverError{IDs: unknown, Suggest: map[RuleID]RuleID{}}
	for _, id := range unknown {
		if s := suggestRuleID(id, pol); s != "" {
			e.Suggest[id] = s
		}
	}
	return e
}

func knownRuleID(id RuleID, pol Policy) bool {
	for i := range builtins {
		if builtins[i].ID == id {
			return true
		}
	}
	for _, r := range pol.Rules {
		if r.ID == id {
			return true
		}
	}
	return false
}

// suggestRuleID is the known rule ID closest to id (at most a third of its
// length in edits away), or "".
func suggestRuleID(id RuleID, pol Policy) RuleID {
	best, bestD := RuleID(""), len(id)/3+1
	try := func(k RuleID) {
		if d := editDistance(strings.ToLower(string(id)), string(k)); d < bestD {
			best, bestD = k, d
		}
	}
	for i := range builtins {
		try(builtins[i].ID)
	}
	for _, r := range pol.Rules {
		try(r.ID)
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
