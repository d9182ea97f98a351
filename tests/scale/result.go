package scale

import (
	"encoding/json"
	"math"
	"strconv"
)

// Result is what one run of BenchmarkScale measured. Its JSON line (Line)
// has exactly the fields issue 21 names, in its order: the line
// scripts/bench-scale.sh prints last. Detail holds the other figures, on a
// line of their own (DetailLine) printed before it. Durations are in
// seconds, memory in MB (10^6 bytes).
type Result struct {
	Servers int    `json:"servers"`
	Clients int    `json:"clients"`
	From    string `json:"from"`
	To      string `json:"to"`
	// WallS is upgrade.Run's wall time.
	WallS float64 `json:"wall_s"`
	// ClientsSwapped counts the clients a wave swapped (node-swapped
	// events without an error).
	ClientsSwapped int `json:"clients_swapped"`
	// Waves counts the client waves done.
	Waves int `json:"waves"`
	// FailedWrites counts the writer's writes that failed or timed out
	// (indeterminate: not counted as lost); LongestFailureS is its longest
	// run of failures, from the first failure to the next acknowledged
	// write. The writer writes through the first client, whose own swap
	// is part of one wave.
	FailedWrites    int     `json:"failed_writes"`
	LongestFailureS float64 `json:"longest_failure_s"`
	// Lost counts acknowledged writes missing from the cluster after the
	// run.
	Lost int `json:"lost"`
	// OrchestratorCPUS is the CPU time (user and system) of the benchmark's
	// own process during upgrade.Run: the runner and transport/local,
	// not the agents and not the load (a child process).
	OrchestratorCPUS float64 `json:"orchestrator_cpu_s"`
	// OrchestratorPeakRSSMB is the benchmark process's peak RSS (the
	// cluster's start included).
	OrchestratorPeakRSSMB float64 `json:"orchestrator_peak_rss_mb"`
	// AgentsPeakRSSMB is the highest sum of the agents' RSS sampled during
	// the run (shared pages of the binaries counted in every agent; see
	// Detail.AgentsPeakPSSMB for the proportional share).
	AgentsPeakRSSMB float64 `json:"agents_peak_rss_mb"`
	// GossipConvergedS is the time from the run's end (after the last
	// wave) until every server lists every member alive on To.
	GossipConvergedS float64 `json:"gossip_converged_s"`
	// Err is why the benchmark did not complete ("" when it did).
	Err string `json:"err"`
	// Detail holds the other figures (not in Line: see DetailLine).
	Detail Detail `json:"-"`
}

// Detail are the figures beyond issue 21's list.
type Detail struct {
	StartS   float64 `json:"start_s"` // the cluster's start until healthy
	Steps    int     `json:"steps"`
	Acked    int     `json:"acked_writes"`
	Bursts   int     `json:"failure_bursts"`
	AgentEnv string  `json:"agent_env"` // GOMAXPROCS, GOMEMLIMIT and GOGC of the agents
	// ClientWavesS is the time spent in client waves; SwapsPerS is
	// ClientsSwapped over it. InFlightMax and InFlightMean are the client
	// swaps in flight (from each node-stopped to its node-swapped),
	// against Bound, the most a wave allowed (Config.ClientConcurrency's
	// default: 10% of the wave, at least 1).
	ClientWavesS float64 `json:"client_waves_s"`
	SwapsPerS    float64 `json:"swaps_per_s"`
	InFlightMax  int     `json:"in_flight_max"`
	InFlightMean float64 `json:"in_flight_mean"`
	Bound        int     `json:"in_flight_bound"`
	// ClientWavesCPUS is the orchestrator's CPU time during the client
	// waves (from each wave's step-started to its step-done);
	// CPUMsPerClientSwap is that over ClientsSwapped, in milliseconds
	// (issue 21's target: at most 20), and CPUMsPerClientSwapAll is
	// OrchestratorCPUS over ClientsSwapped (the server steps and the
	// snapshot included, which weigh most in a small cluster).
	ClientWavesCPUS       float64 `json:"client_waves_cpu_s"`
	CPUMsPerClientSwap    float64 `json:"cpu_ms_per_client_swap"`
	CPUMsPerClientSwapAll float64 `json:"cpu_ms_per_client_swap_all"`
	// The blocking-query watchers (default consistency): errors, the
	// longest time without an answer, and answers whose key was last
	// written at a lower raft index than an answer seen before (a stale
	// read, which the default mode allows around a change of leader).
	Watchers         int     `json:"watchers"`
	WatchAnswers     int     `json:"watch_answers"`
	WatchErrors      int     `json:"watch_errors"`
	WatchLongestGapS float64 `json:"watch_longest_gap_s"`
	WatchRegressions int     `json:"watch_regressions"`
	// Memory of the agents: the peak of the summed proportional set sizes
	// (shared pages split between the processes sharing them), and the
	// mean RSS of one idle agent by role, before the run and after it.
	AgentsPeakPSSMB   float64 `json:"agents_peak_pss_mb"`
	ServerRSSMBFrom   float64 `json:"server_rss_mb_from"`
	ClientRSSMBFrom   float64 `json:"client_rss_mb_from"`
	ServerRSSMBTo     float64 `json:"server_rss_mb_to"`
	ClientRSSMBTo     float64 `json:"client_rss_mb_to"`
	ClientPSSMBFrom   float64 `json:"client_pss_mb_from"`
	ClientPSSMBTo     float64 `json:"client_pss_mb_to"`
	MachineUsedPeakMB float64 `json:"machine_used_peak_mb"` // MemTotal - MemAvailable, the whole machine
}

// Line is r as one line of JSON with issue 21's fields only, numbers
// rounded to what they measure.
func (r Result) Line() string {
	r.WallS, r.LongestFailureS, r.GossipConvergedS = round(r.WallS, 1), round(r.LongestFailureS, 2), round(r.GossipConvergedS, 2)
	r.OrchestratorCPUS, r.OrchestratorPeakRSSMB, r.AgentsPeakRSSMB = round(r.OrchestratorCPUS, 2), round(r.OrchestratorPeakRSSMB, 1), round(r.AgentsPeakRSSMB, 0)
	return marshalLine(r)
}

// DetailLine is r.Detail as one line of JSON, numbers rounded to what they
// measure.
func (r Result) DetailLine() string {
	d := r.Detail
	d.StartS, d.ClientWavesS, d.SwapsPerS, d.InFlightMean = round(d.StartS, 1), round(d.ClientWavesS, 1), round(d.SwapsPerS, 2), round(d.InFlightMean, 2)
	d.ClientWavesCPUS, d.CPUMsPerClientSwapAll = round(d.ClientWavesCPUS, 2), round(d.CPUMsPerClientSwapAll, 2)
	d.CPUMsPerClientSwap, d.WatchLongestGapS, d.AgentsPeakPSSMB = round(d.CPUMsPerClientSwap, 2), round(d.WatchLongestGapS, 2), round(d.AgentsPeakPSSMB, 0)
	d.ServerRSSMBFrom, d.ClientRSSMBFrom, d.ServerRSSMBTo, d.ClientRSSMBTo = round(d.ServerRSSMBFrom, 1), round(d.ClientRSSMBFrom, 1), round(d.ServerRSSMBTo, 1), round(d.ClientRSSMBTo, 1)
	d.ClientPSSMBFrom, d.ClientPSSMBTo, d.MachineUsedPeakMB = round(d.ClientPSSMBFrom, 1), round(d.ClientPSSMBTo, 1), round(d.MachineUsedPeakMB, 0)
	return marshalLine(d)
}

func marshalLine(v any) string {
	b, err := json.Marshal(v)
	if err != nil { // neither has a value JSON refuses
		return `{"err":` + strconv.Quote(err.Error()) + `}`
	}
	return string(b)
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
