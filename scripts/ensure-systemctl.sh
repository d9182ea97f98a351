#!/usr/bin/env bash
# ensure-systemctl.sh — put Debian's "systemctl" package (docker-systemctl-replacement: a
# daemonless systemctl that reads real unit files, starts and kills their processes, keeps
# their state and logs their output) in the cache, for the ssh transport's systemd tests
# (tests/e2e/ssh): systemd itself cannot run here (it is not PID 1).
#
# The package is NOT installed: it conflicts with systemd and would replace the machine's
# /usr/bin/systemctl. It is downloaded with apt-get and unpacked into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/consul-upgrade/systemctl/
# and the path of its systemctl script is printed. The script runs under /usr/bin/python3
# (its #! line), which is installed from Debian's python3 package when missing. Needs
# apt-get and dpkg-deb; installing python3 needs root (or sudo).
set -euo pipefail

run() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/consul-upgrade/systemctl"
SCRIPT="$CACHE/usr/bin/systemctl"
PYTHON=/usr/bin/python3
if [ -f "$SCRIPT" ] && [ -x "$PYTHON" ]; then
  echo "$SCRIPT"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "ensure-systemctl: apt-get and dpkg-deb are needed to fetch Debian's systemctl package (and python3)" >&2
  exit 1
fi
if [ ! -x "$PYTHON" ]; then
  echo "ensure-systemctl: installing python3 (missing $PYTHON; Debian's systemctl package runs on it)" >&2
  run apt-get update -qq >&2
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >&2
  if [ ! -x "$PYTHON" ]; then
    echo "ensure-systemctl: python3 installed but $PYTHON is still missing" >&2
    exit 1
  fi
fi
if [ -f "$SCRIPT" ]; then
  echo "$SCRIPT"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # apt's _apt user writes the download here
cd "$work"
if ! apt-get download systemctl >&2; then
  # The package lists may be missing (a fresh machine): update once and retry.
  run apt-get update -qq >&2
  apt-get download systemctl >&2
fi
deb=$(ls systemctl_*.deb)
mkdir -p "$CACHE.tmp"
dpkg-deb -x "$deb" "$CACHE.tmp"
rm -rf "$CACHE"
mv "$CACHE.tmp" "$CACHE"
echo "ensure-systemctl: unpacked $deb into $CACHE" >&2
echo "$SCRIPT"
