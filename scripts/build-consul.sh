#!/usr/bin/env bash
# build-consul.sh VERSION... — build MPL-2.0 Consul binaries from the Go module proxy
# into the cache (never into the repository). Prints the path of each binary on stdout;
# progress and timings go to stderr.
#
# Cache: $CONSUL_UPGRADE_BIN_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/consul-upgrade/bin.
# A binary is reused when it exists and answers `version` with "Consul vVERSION" first.
#
# Every release is built from a throw-away wrapper module that requires
# github.com/hashicorp/consul at the release's tag. How the wrapper is made depends on
# the release (see recipe below):
#   pinned  0.6.4 .. 1.11.11: the wrapper's go.mod is scripts/consul-pins/VERSION.go.mod,
#           a complete dependency set (releases before 1.5 have no go.mod of their own;
#           they get Consul 1.5.0's 2019 dependencies). Its `replace ... => ./DIR` lines
#           name local stand-in modules this script makes in the wrapper (see standin).
#   plain   1.12.9, 1.13.9: the wrapper requires the tag and nothing else.
#   newer   1.14.8 .. 1.16.1: the wrapper also pins consul/api, copies Consul's own
#           `exclude` lines (Go applies them only in the main module; without them
#           go-msgpack v1.1.5 is picked and the raft log encoding changes) and starts its
#           go.sum from Consul's (it vouches for modules the checksum DB lacks).
# 0.4.x and 0.5.x are not supported: they need modules the proxy does not serve.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
pins="$here/consul-pins"
standins="$here/consul-standins"
cache="${CONSUL_UPGRADE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/consul-upgrade/bin}"

SUPPORTED="0.6.4 0.7.5 0.8.5 0.9.3 1.0.8 1.2.4 1.4.5 1.6.10 1.8.19 1.10.12 1.11.11 1.12.9 1.13.9 1.14.8 1.15.4 1.16.1"

# Debian's copy of muxado is the revision Consul 0.6.4 used (the proxy serves none).
MUXADO_PKG=golang-github-inconshreveable-muxado-dev
MUXADO_SRC=/usr/share/gocode/src/github.com/inconshreveable/muxado

# recipe VERSION sets kind, tags, ldflags and api_pin for VERSION; it fails for a
# version this script does not know how to build.
recipe() {
  kind="" tags="" ldflags="" api_pin=""
  local linkname=no describe=""
  case "$1" in
    0.6.4) kind=pinned linkname=yes describe=main ;;
    # Their agent code sits behind the `consul` build tag.
    0.7.5 | 0.8.5) kind=pinned linkname=yes describe=version tags=consul ;;
    0.9.3 | 1.0.8 | 1.2.4 | 1.4.5) kind=pinned linkname=yes describe=version ;;
    1.6.10) kind=pinned describe=version ;;
    1.8.19 | 1.10.12 | 1.11.11) kind=pinned linkname=yes ;;
    1.12.9 | 1.13.9) kind=plain ;;
    # The tags' own consul/api lacks RaftServer.LastIndex (and, for 1.15,
    # GatewayConditionType); these are the api releases of the same branches.
    1.14.8) kind=newer api_pin=v1.18.1 ;;
    1.15.4) kind=newer api_pin=v1.21.1 ;;
    1.16.1) kind=newer ;;
    *) return 1 ;;
  esac
  # linkname: the golang.org/x/net these pin links to syscall internals
  # (syscall.recvmsg), which Go 1.23+ refuses unless told not to check.
  [ "$linkname" = no ] || ldflags="-checklinkname=0"
  # describe: until 1.6, `consul version` prints "<version>-dev" (0.6: ".dev")
  # unless GitDescribe is set, as release builds did, to "v<version>".
  case "$describe" in
    main) ldflags="$ldflags -X main.GitDescribe=v$1" ;;
    version) ldflags="$ldflags -X github.com/hashicorp/consul/version.GitDescribe=v$1" ;;
  esac
}

# is_version BIN VERSION: BIN runs and its first line of `version` is
# "Consul vVERSION". (Not `bin version | head -1 | grep -q`: under pipefail an
# early-closing reader makes that pipeline fail at random, and a good binary
# would be rebuilt.)
is_version() {
  local out
  out="$("$1" version 2>/dev/null)" || return 1
  [ "${out%%$'\n'*}" = "Consul v$2" ]
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_muxado installs Debian's muxado source package when it is missing.
ensure_muxado() {
  [ -d "$MUXADO_SRC" ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "build-consul: Consul 0.6.4 needs $MUXADO_SRC (Debian's $MUXADO_PKG) and apt-get is not available; install it by hand" >&2
    return 1
  fi
  echo "build-consul: installing $MUXADO_PKG (Consul 0.6.4 needs muxado)" >&2
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$MUXADO_PKG" >&2
  [ -d "$MUXADO_SRC" ] || { echo "build-consul: $MUXADO_PKG installed but $MUXADO_SRC is missing" >&2; return 1; }
}

# module_dir MODULE@VERSION downloads a module (checked against the checksum DB)
# and prints its read-only directory in the module cache.
module_dir() {
  local json dir
  json="$(cd "$work/.dl" && go mod download -json "$1")" || { echo "build-consul: cannot download $1" >&2; return 1; }
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "build-consul: no module directory for $1 in: $json" >&2; return 1; }
  echo "$dir"
}

# standin MODULE DIR makes the local module that a pinned go.mod's
# `replace MODULE => ./DIR` names, in the wrapper directory $work.
standin() {
  local mod="$1" dir="$work/$2"
  case "$mod" in
    github.com/hashicorp/consul/api | github.com/hashicorp/consul/sdk)
      # Releases before 1.5 carry api/ and sdk/ inside the main module; an
      # empty module keeps the served api/sdk modules from claiming the same
      # import paths (ambiguous import).
      mkdir -p "$dir"
      printf 'module %s\n' "$mod" >"$dir/go.mod" ;;
    github.com/tonnerre/golang-text)
      # Not served; scripts/consul-standins/golang-text has the one function used.
      cp -R "$standins/golang-text" "$dir"
      rm -f "$dir"/*_test.go ;;
    github.com/hashicorp/hil)
      # Consul 0.6.4 calls hil.Eval for three results (value, type, error); the
      # oldest served hil returns an EvaluationResult. Restore the older signature
      # over the same evaluator, in this temporary copy only.
      local ver src
      ver="$(awk -v m="$mod" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$work/go.mod")"
      [ -n "$ver" ] || { echo "build-consul: the pins require no version of $mod to patch" >&2; return 1; }
      src="$(module_dir "$mod@$ver")"
      cp -R "$src" "$dir"
      chmod -R u+w "$dir"
      find "$dir" -name '*_test.go' -delete
      printf 'module %s\n' "$mod" >"$dir/go.mod"
      sed -i 's/^func Eval(root ast.Node, config \*EvalConfig) (EvaluationResult, error) {$/func evalResult(root ast.Node, config *EvalConfig) (EvaluationResult, error) {/' "$dir/eval.go"
      grep -q '^func evalResult(' "$dir/eval.go" || { echo "build-consul: hil $ver: Eval is not where expected in eval.go; cannot patch it" >&2; return 1; }
      cat >"$dir/eval_three_results.go" <<'SRC'
package hil

import "github.com/hashicorp/hil/ast"

// Eval evaluates root and returns the value, its HIL type and any error: the
// signature Consul 0.6.4 was written against (patched in by build-consul.sh).
func Eval(root ast.Node, config *EvalConfig) (interface{}, ast.Type, error) {
	return internalEval(root, config)
}
SRC
      ;;
    github.com/inconshreveable/muxado)
      ensure_muxado
      cp -R "$MUXADO_SRC" "$dir"
      chmod -R u+w "$dir"
      find "$dir" -name '*_test.go' -delete
      printf 'module %s\n' "$mod" >"$dir/go.mod" ;;
    *)
      echo "build-consul: $pins/$v.go.mod replaces $mod by ./$2, and no stand-in for it is known" >&2
      return 1 ;;
  esac
}

# wrapper VERSION writes the wrapper module for VERSION into $work.
wrapper() {
  local v="$1"
  cat >"$work/tools.go" <<'SRC'
//go:build tools

package tools

import _ "github.com/hashicorp/consul"
SRC
  case "$kind" in
    pinned)
      cp "$pins/$v.go.mod" "$work/go.mod"
      chmod u+w "$work/go.mod"
      local mod dir
      while read -r mod dir; do
        standin "$mod" "${dir#./}"
      done < <(awk '$1 == "replace" && $3 == "=>" && $4 ~ /^\.\// {print $2, $4}' "$work/go.mod")
      ;;
    plain | newer)
      printf 'module consulbuild\n\ngo 1.20\n\nrequire github.com/hashicorp/consul v%s\n' "$v" >"$work/go.mod"
      ;;
  esac
  if [ "$kind" = newer ]; then
    [ -z "$api_pin" ] || (cd "$work" && go mod edit -require="github.com/hashicorp/consul/api@$api_pin")
    local src x
    src="$(module_dir "github.com/hashicorp/consul@v$v")"
    # Consul's exclude lines, single or in a block, as module@version.
    for x in $(awk '
      /^exclude[[:space:]]*\(/ {block = 1; next}
      block && /^\)/ {block = 0; next}
      block && NF >= 2 {print $1 "@" $2}
      /^exclude[[:space:]]+[^(]/ {print $2 "@" $3}' "$src/go.mod"); do
      (cd "$work" && go mod edit -exclude="$x")
    done
    cp "$src/go.sum" "$work/go.sum"
    chmod u+w "$work/go.sum"
    [ ! -f "$pins/$v.go.sum" ] || cat "$pins/$v.go.sum" >>"$work/go.sum"
  fi
}

build_one() {
  local v="$1" bin="$cache/consul-$1"
  if ! recipe "$v"; then
    echo "build-consul: cannot build Consul \"$v\": supported versions are $SUPPORTED" >&2
    return 2
  fi
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
  local rc=0
  # In a subshell, so that its EXIT trap removes the wrapper however it ends.
  # (Not `( ... ) || rc=$?`: bash ignores set -e inside the left side of ||.)
  set +e
  (
    set -e
    work="$(mktemp -d)"
    trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work" "$bin.tmp"' EXIT
    mkdir "$work/.dl"
    echo "build-consul: building Consul $v ($kind; a few minutes on a cold cache)" >&2
    wrapper "$v"
    t0=$(date +%s)
    (cd "$work" && nice -n 10 go mod tidy >&2)
    t1=$(date +%s)
    (cd "$work" && nice -n 10 go build -tags "$tags" -ldflags "$ldflags" -o "$bin.tmp" github.com/hashicorp/consul >&2)
    t2=$(date +%s)
    echo "build-consul: compiled Consul $v in $((t2 - t0))s (tidy $((t1 - t0))s, build $((t2 - t1))s)" >&2
    is_version "$bin.tmp" "$v" || { echo "build-consul: the build of $v reports \"$("$bin.tmp" version 2>&1 | head -n 1)\", not Consul v$v" >&2; exit 1; }
    mv "$bin.tmp" "$bin"
  )
  rc=$?
  set -e
  [ -z "${lockfd:-}" ] || exec {lockfd}>&-
  [ "$rc" -eq 0 ] || { echo "build-consul: building Consul $v failed" >&2; return "$rc"; }
  echo "$bin"
}

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$cache"
[ $# -gt 0 ] || set -- 1.12.9 1.13.9
for v in "$@"; do build_one "$v"; done
