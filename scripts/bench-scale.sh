#!/usr/bin/env bash
# bench-scale.sh SERVERS CLIENTS FROM TO — the upgrade at real size (a
# benchmark, not a CI test): starts a real loopback cluster of SERVERS
# servers and CLIENTS clients on Consul FROM through transport/local (each
# agent on its own address with Consul's default ports), upgrades it to TO
# with upgrade.Run and the default client waves, under a writer and
# blocking-query watchers through a few clients, prints the progress and,
# as its LAST line, one JSON object: servers, clients, from, to, wall_s,
# clients_swapped, waves, failed_writes, longest_failure_s, lost,
# orchestrator_cpu_s, orchestrator_peak_rss_mb, agents_peak_rss_mb,
# gossip_converged_s, err (nothing else; the other figures are on the
# "detail:" line before it, see tests/scale/result.go). Exit 0 when err is
# empty.
#
#   scripts/bench-scale.sh 3 20 1.12.9 1.13.9
#   START_CONCURRENCY=2 scripts/bench-scale.sh 3 150 1.15.4 1.16.1
#   scripts/bench-scale.sh 3 700 0.6.4 0.7.5      # more than 2 cores: tests/README.md
#
# The agents' runtime: AGENT_GOMAXPROCS (default 1), AGENT_GOMEMLIMIT and
# AGENT_GOGC (default unset) become their GOMAXPROCS, GOMEMLIMIT and GOGC;
# "" is Go's default. One P an agent spends about a third less CPU idle
# (0.6.4, 103 agents: 4.5 ms/s an agent with GOMAXPROCS=2 GOMEMLIMIT=24MiB
# GOGC=50, 3.2 with GOMAXPROCS=1), which is what bounds the size here.
# START_CONCURRENCY (default 8) agents start at once. The binaries
# come from ~/.cache/consul-upgrade/bin (scripts/build-consul.sh builds a
# missing one).
#
# Every agent is stopped by pid when the benchmark ends, also on Ctrl-C or
# SIGTERM (the run halts first); if the benchmark itself dies, the kernel
# kills its agents (parent-death signal) and this script kills any left
# that the rig's pid file lists (checking each command line first).
set -euo pipefail

if [ $# -ne 4 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
fi
servers=$1 clients=$2 from=$3 to=$4
for n in "$servers" "$clients"; do
  case "$n" in ''|*[!0-9]*) echo "bench-scale.sh: SERVERS and CLIENTS are numbers, got '$servers' '$clients'" >&2; exit 2;; esac
done
json_err() { # the last line when the benchmark produced none
  printf '{"servers":%d,"clients":%d,"from":"%s","to":"%s","err":"%s"}\n' "$servers" "$clients" "$from" "$to" "$1"
}

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/bench-scale.XXXXXX)"
bin="$work/scale.test"
result="$work/result.json"
pidpath="$work/pidfile"
bench=""

kill_left() { # every agent the rig's pid file lists that still runs
  [ -s "$pidpath" ] || return 0
  local file pid node n=0
  file="$(cat "$pidpath")"
  [ -f "$file" ] || return 0
  while read -r pid node; do
    [ -n "$pid" ] || continue
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "consul.* -node=$node "; then
      kill -KILL "$pid" 2>/dev/null && n=$((n + 1))
    fi
  done < "$file"
  [ "$n" -eq 0 ] || echo "bench-scale.sh: killed $n agent(s) left running" >&2
}
cleanup() {
  if [ -n "$bench" ] && kill -0 "$bench" 2>/dev/null; then
    kill -KILL "$bench" 2>/dev/null || true
  fi
  kill_left
  rm -rf "$work"
}
trap cleanup EXIT
on_signal() {
  echo "bench-scale.sh: $1: halting the run and stopping the agents" >&2
  [ -n "$bench" ] && kill "-$1" "$bench" 2>/dev/null || true
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

echo "== building tests/scale"
(cd "$root/tests" && go test -c -o "$bin" ./scale)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== BenchmarkScale: $servers servers, $clients clients, $from -> $to"
"$bin" -test.run='^$' -test.bench='^BenchmarkScale$' -test.benchtime=1x -test.timeout=0 \
  -scale.servers="$servers" -scale.clients="$clients" -scale.from="$from" -scale.to="$to" \
  -scale.out="$result" -scale.pidfile="$pidpath" \
  -scale.agent-gomaxprocs="${AGENT_GOMAXPROCS-1}" -scale.agent-gomemlimit="${AGENT_GOMEMLIMIT-}" -scale.agent-gogc="${AGENT_GOGC-}" \
  -scale.start-concurrency="${START_CONCURRENCY:-8}" &
bench=$!
code=0
while :; do
  wait "$bench" && code=0 || code=$?
  kill -0 "$bench" 2>/dev/null || break # a trap interrupted the wait: wait again
done
bench=""
kill_left

if [ -s "$result" ]; then
  line="$(tail -n 1 "$result")"
  echo "$line"
  case "$line" in *'"err":""'*) exit 0;; *) exit 1;; esac
fi
json_err "the benchmark ended (exit $code) without a result; see its output above"
exit 1
