#!/usr/bin/env bash
# ensure-iptables.sh — make sure iptables is available for the partition tests of
# tests/robustness (they cut one loopback Consul server off from the others with
# DROP rules tagged with a comment, and remove them again; this script only installs the
# package). Installs Debian's iptables when the command is missing. Needs root (or sudo),
# and the rules themselves need root when the tests run.
set -euo pipefail

if command -v iptables >/dev/null 2>&1; then
  command -v iptables
  exit 0
fi

run() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-iptables: iptables is missing and apt-get is not available; install iptables by hand" >&2
  exit 1
fi

echo "ensure-iptables: installing iptables (missing)" >&2
run apt-get update -qq
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >&2

if ! command -v iptables >/dev/null 2>&1; then
  echo "ensure-iptables: the iptables package is installed but the command is still missing" >&2
  exit 1
fi
command -v iptables
