#!/usr/bin/env bash
# build-consul.sh VERSION... — build MPL-2.0 Consul binaries from the Go module proxy
# into the cache (never into the repository). Prints the path of each binary.
#
# Cache: $CONSUL_UPGRADE_BIN_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/consul-upgrade/bin.
# A binary is reused when it exists and answers `version` with the expected version.
set -euo pipefail

cache="${CONSUL_UPGRADE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/consul-upgrade/bin}"
mkdir -p "$cache"

# is_version BIN VERSION: BIN runs and its first line of `version` is
# "Consul vVERSION". (Not `bin version | head -1 | grep -q`: under pipefail an
# early-closing reader makes that pipeline fail at random, and a good binary
# would be rebuilt.)
is_version() {
  local out
  out="$("$1" version 2>/dev/null)" || return 1
  [ "${out%%$'\n'*}" = "Consul v$2" ]
}

build_one() {
  local v="$1" bin="$cache/consul-$1"
  case "$v" in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *) echo "build-consul: bad version \"$v\": want X.Y.Z, e.g. 1.12.9" >&2; return 2 ;;
  esac
  if [ -x "$bin" ] && is_version "$bin" "$v"; then
    echo "$bin"; return 0
  fi
  # One build per version at a time (go test runs packages in parallel, and
  # each may ask for the same binary): wait for a running build, then reuse it.
  local lockfd
  if command -v flock >/dev/null 2>&1; then
    exec {lockfd}>"$cache/.consul-$v.lock"
    if ! flock -n "$lockfd"; then
      echo "build-consul: another build of Consul $v is running; waiting for it" >&2
      flock "$lockfd"
    fi
    if [ -x "$bin" ] && is_version "$bin" "$v"; then
      exec {lockfd}>&-
      echo "$bin"; return 0
    fi
  fi
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"; [ -z "${lockfd:-}" ] || exec {lockfd}>&-' RETURN
  cat >"$work/go.mod" <<MOD
module consulbuild

go 1.20

require github.com/hashicorp/consul v$v
MOD
  cat >"$work/tools.go" <<'SRC'
//go:build tools

package tools

import _ "github.com/hashicorp/consul"
SRC
  echo "build-consul: building Consul $v (a few minutes on a cold cache)" >&2
  ( cd "$work" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod tidy >&2 \
    && GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$bin.tmp" github.com/hashicorp/consul >&2 )
  mv "$bin.tmp" "$bin"
  is_version "$bin" "$v" || { echo "build-consul: $bin does not report v$v" >&2; return 1; }
  echo "$bin"
}

[ $# -gt 0 ] || set -- 1.12.9 1.13.9
for v in "$@"; do build_one "$v"; done
