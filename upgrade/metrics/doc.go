// Package metrics serves what an upgrade run is doing as Prometheus
// metrics (github.com/prometheus/client_golang), for a platform team that
// watches a long run on a dashboard instead of one terminal.
//
// The metrics are derived from the run's events and nothing else: a
// Metrics is an upgrade.Config.OnEvent, so Run, a Session (upgrade.Open)
// and ExecuteStep need no option of their own, and the orchestrator's
// behaviour cannot depend on whether anyone scrapes.
//
//	m, err := metrics.New(prometheus.DefaultRegisterer)
//	...
//	cfg.OnEvent = m.Observe // or func(ev upgrade.Event) { m.Observe(ev); mine(ev) }
//	res, err := upgrade.Run(ctx, cfg)
//
// A program that does not use Prometheus otherwise takes NewHandler: a
// Metrics on a registry of its own (with the go_* and process_* collectors)
// and the http.Handler that serves it. The command's `apply -metrics-addr
// ADDRESS` serves that handler at /metrics for the run's duration (and
// -metrics-linger after it, so the last values can be scraped).
//
// A probe writer that runs beside the upgrade (a KV put through a client
// every second, say: the command's `apply -probe-writes KEY`) reports each
// write with ObserveProbeWrite; without one, the probe counters stay 0.
//
// # Metrics
//
// Every name starts with consul_upgrade_ (Namespace). Seconds are the unit
// of time; counters end in _total; labels take few values (kinds, roles,
// conditions, error types, and the names of the servers, of which a
// cluster has a handful; client names are never a label, since a wave
// touches hundreds).
//
//	name                                  type       labels                            what
//	run_state                             gauge      state                             1 for the run's state: running, done, stopped (BeforeStep's skip, MaxSteps), halted; 0 for the others
//	steps_done                            gauge                                        position (1-based) of the last step whose gate passed, in the approved plan when there is one; 0 at run-started
//	steps_planned                         gauge                                        steps of the run in all (StepInfo.Total); steps_done when the run reaches the target
//	step_info                             gauge      kind, datacenter, node, from, to  1 for the step under way, or the one the run halted at; absent between steps; node is the server (empty for a snapshot or a client wave)
//	gate_condition_info                   gauge      condition                         1 for the gate condition the current step waits on (planner.GateCheck), or the one the run halted on; absent while no gate waits
//	gate_wait_seconds                     gauge                                        how long the current step's gate has waited, live; its final wait once it passed or the run halted, until the next step; 0 if it passed at its first look
//	gate_wait_duration_seconds            histogram  kind                              wait of each gate that passed (0: at its first look), by step kind
//	step_duration_seconds                 histogram  kind                              each step done, from its start to its gate's pass, by step kind
//	nodes_touched_total                   counter    role                              nodes stopped, started, swapped, provisioned or handed leadership from (server, client); once per node and run
//	halts_total                           counter    type                              runs that halted or were refused (see HaltType for the types)
//	rollbacks_total                       counter    result                            rollbacks after a failed step: ok, failed
//	probe_writes_total                    counter                                      writes of the probe writer
//	probe_writes_failed_total             counter                                      probe writes that failed or timed out
//	last_event_timestamp_seconds          gauge                                        Unix time of the last event
//
// steps_done and steps_planned are gauges, not counters: they describe the
// run under way and start again at 0 with the next run (a command that
// applies one step per process, -step, shows each step's position in the
// plan). The counters and histograms add up over every run one Metrics
// observed. Progress is steps_done / steps_planned; a run that has waited
// on one condition for long shows as gate_wait_seconds growing beside
// gate_condition_info; a halt shows as run_state{state="halted"} with
// step_info and gate_condition_info naming where.
//
// The kind label takes the planner's step kinds (snapshot, swap-server,
// transfer-leader, swap-clients, add-server, retire-server); condition the
// gate's conditions (the values of planner.GateCheck); type the labels of HaltType (gate, stuck, plan-diverged,
// stale-plan, refused, preflight, locked, lock-lost, lock-move,
// swap-record, aborted, quorum, transfer, backup, swap, agent-unreachable,
// missing-ability, config, canceled, step-refused, other).
package metrics
