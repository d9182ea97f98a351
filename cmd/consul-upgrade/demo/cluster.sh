#!/bin/sh
# A throwaway loopback Consul cluster for trying consul-upgrade by hand:
# 3 servers (s1..s3 on 127.0.240.11-13) and 1 client (c1 on 127.0.240.21),
# detached from this shell, with an exec-transport inventory whose swap
# command is this script. Demos only; real hosts use the ssh transport.
#
#   demo/cluster.sh start 1.12.9     start it (binaries: $BIN/consul-<version>)
#   demo/cluster.sh swap NODE VERSION STOPMODE   (what the inventory runs)
#   demo/cluster.sh version NODE                 (what the inventory runs)
#   demo/cluster.sh check NODE VERSION           (what the inventory runs)
#   demo/cluster.sh stop             stop every agent and remove the directory
#
# DEMO (default /tmp/consul-upgrade-demo) holds the data, logs, pids and
# inventory.json; BIN (default ~/.cache/consul-upgrade/bin) the binaries.
set -eu
DEMO=${DEMO:-/tmp/consul-upgrade-demo}
BIN=${BIN:-$HOME/.cache/consul-upgrade/bin}
NET=127.0.240
NODES="s1 s2 s3 c1"

ip_of() { case $1 in s*) echo "$NET.1${1#s}" ;; c*) echo "$NET.2${1#c}" ;; esac; }

# launch NODE VERSION: start the agent detached, record its pid and version.
launch() {
  node=$1 version=$2 ip=$(ip_of "$1")
  bin=$BIN/consul-$version
  [ -x "$bin" ] || { echo "cluster.sh: no executable $bin" >&2; exit 1; }
  set -- agent -node="$node" -bind="$ip" -client="$ip" -advertise="$ip" \
    -data-dir="$DEMO/$node" -retry-interval=1s \
    -retry-join=$NET.11 -retry-join=$NET.12 -retry-join=$NET.13
  case $node in s*) set -- "$@" -server -bootstrap-expect=3 ;; esac
  setsid "$bin" "$@" >>"$DEMO/$node.log" 2>&1 </dev/null &
  echo $! >"$DEMO/$node.pid"
}

# running_version NODE: the version the node's agent reports, or nothing.
running_version() {
  curl -sf --max-time 2 "http://$(ip_of "$1"):8500/v1/agent/self" | jq -r .Config.Version 2>/dev/null || true
}

case ${1:-} in
start)
  version=${2:?usage: cluster.sh start VERSION}
  mkdir -p "$DEMO"
  for n in $NODES; do mkdir -p "$DEMO/$n"; launch "$n" "$version"; done
  cat >"$DEMO/inventory.json" <<JSON
{"transport": "exec", "exec": {
  "swap": ["$(cd "$(dirname "$0")" && pwd)/cluster.sh", "swap", "{{.Node}}", "{{.To}}", "{{.StopMode}}"],
  "version": ["$(cd "$(dirname "$0")" && pwd)/cluster.sh", "version", "{{.Node}}"],
  "check": ["$(cd "$(dirname "$0")" && pwd)/cluster.sh", "check", "{{.Node}}", "{{.To}}"],
  "nodes": ["s1", "s2", "s3", "c1"],
  "env": ["DEMO=$DEMO", "BIN=$BIN"],
  "timeout": "2m"}}
JSON
  echo "started s1 s2 s3 c1 on consul $version; HTTP on $NET.21:8500 (c1); inventory $DEMO/inventory.json"
  ;;
swap)
  node=${2:?} to=${3:?} mode=${4:-terminate}
  [ "$(running_version "$node")" = "$to" ] && exit 0
  pid=$(cat "$DEMO/$node.pid")
  case $mode in kill) sig=KILL ;; leave) sig=INT ;; *) sig=TERM ;; esac
  kill -s "$sig" "$pid" 2>/dev/null || true
  i=0; while kill -0 "$pid" 2>/dev/null; do
    i=$((i+1)); [ $i -gt 200 ] && kill -s KILL "$pid" 2>/dev/null; sleep 0.1
  done
  launch "$node" "$to"
  i=0; until [ "$(running_version "$node")" = "$to" ]; do
    i=$((i+1)); [ $i -gt 600 ] && { echo "cluster.sh: $node did not answer on $to within 60s" >&2; exit 1; }; sleep 0.1
  done
  ;;
version)
  # Exit 3 (the LSB "not running") when the node's process is gone: the run
  # asks before it stops a server whether the others still run, as serf
  # sees a killed agent alive for seconds. Exit 1: running, no answer yet.
  # A killed agent stays a zombie until it is reaped (1.5 s here), and
  # kill -0 still succeeds on a zombie: read its state instead.
  node=${2:?}
  pid=$(cat "$DEMO/$node.pid" 2>/dev/null || true)
  state=$( [ -n "$pid" ] && awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null || true)
  case $state in ''|Z|X) echo "cluster.sh: $node has no running agent${state:+ (process $pid is a zombie)}" >&2; exit 3 ;; esac
  v=$(running_version "$node"); [ -n "$v" ] || exit 1; echo "$v"
  ;;
check)
  # The pre-flight check: the binary a swap of NODE to VERSION would start
  # is there and answers `version` with VERSION.
  bin=$BIN/consul-${3:?usage: cluster.sh check NODE VERSION}
  [ -x "$bin" ] || { echo "no executable $bin for ${2:?}; build it with scripts/build-consul.sh $3" >&2; exit 1; }
  got=$("$bin" version 2>&1 | head -n 1)
  [ "$got" = "Consul v$3" ] || { echo "$bin answers \"$got\", want Consul v$3" >&2; exit 1; }
  ;;
stop)
  for n in $NODES; do
    [ -f "$DEMO/$n.pid" ] && kill -s KILL "$(cat "$DEMO/$n.pid")" 2>/dev/null || true
  done
  rm -rf "$DEMO"
  ;;
*)
  echo "usage: cluster.sh start VERSION | swap NODE VERSION STOPMODE | version NODE | check NODE VERSION | stop" >&2; exit 2
  ;;
esac
