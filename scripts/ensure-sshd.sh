#!/usr/bin/env bash
# ensure-sshd.sh — make sure an OpenSSH server binary is available at /usr/sbin/sshd
# for the transport/ssh integration tests (they start their own sshd on loopback with a
# private config; this script only installs the package, it does not start any service).
#
# Installs Debian's openssh-server when /usr/sbin/sshd is missing. Needs root (or sudo).
set -euo pipefail

SSHD="${SSHD:-/usr/sbin/sshd}"
if [ -x "$SSHD" ]; then
  echo "$SSHD"
  exit 0
fi

run() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-sshd: $SSHD is missing and apt-get is not available; install OpenSSH server by hand" >&2
  exit 1
fi

echo "ensure-sshd: installing openssh-server (missing $SSHD)" >&2
run apt-get update -qq
# policy-rc.d keeps Debian's postinst from starting a system-wide sshd (the tests start
# their own, on a private port and config).
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ] && [ "$(id -u)" -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >&2

if [ ! -x "$SSHD" ]; then
  echo "ensure-sshd: openssh-server installed but $SSHD is still missing" >&2
  exit 1
fi
echo "$SSHD"
