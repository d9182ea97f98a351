#!/usr/bin/env bash
# test.sh — the project's whole test run, on a fresh machine: installs or
# builds what the tests need (Debian's openssh-server, iptables and systemctl (a
# systemd stand-in, unpacked into the cache, not installed), the MPL-2.0 Consul
# binaries from the Go module proxy, cached outside the repository), then
# checks and runs both Go modules: the root module (the library, the CLI and
# their unit tests, which need no Consul binary and no sshd) and tests/ (its
# own module: every test against real Consul agents or a real sshd, see
# tests/README.md). Nothing is skipped. Extra arguments go to every
# `go test` (e.g. -run, -v).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go'))"
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; exit 1; fi

if [ -x scripts/ensure-sshd.sh ]; then
  echo "== sshd"
  scripts/ensure-sshd.sh
fi

if [ -x scripts/ensure-systemctl.sh ]; then
  echo "== systemctl stand-in (Debian's systemctl package, unpacked into the cache)"
  scripts/ensure-systemctl.sh
fi

if [ -x scripts/ensure-iptables.sh ]; then
  echo "== iptables"
  scripts/ensure-iptables.sh
fi

echo "== consul binaries"
# Every version the tests run, one at a time, in the order of scripts/consul-versions
# (cached binaries are reused; a cold build takes a few minutes each).
mapfile -t versions < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' scripts/consul-versions)
scripts/build-consul.sh "${versions[@]}"

for mod in . tests; do
  echo "== go mod tidy ($mod)"
  (cd "$mod" && go mod tidy -diff)

  echo "== go vet ($mod)"
  (cd "$mod" && go vet ./...)

  echo "== staticcheck ($mod; honnef.co/go/tools, pinned)"
  (cd "$mod" && go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...)
done

echo "== go test (root module: unit tests)"
go test -count=1 -timeout 30m "$@" ./...

echo "== go test (tests/: real Consul agents and sshd)"
cd tests
# The leadership-transfer tests assert that no write fails for a second in
# a row; Raft's timing on 2 cores is only that good when no other cluster
# runs beside them, so they run after the rest, alone.
alone=github.com/seed-e5e14ead/consul-upgrade/tests/e2e/transfer
# The fault scenarios of tests/robustness (t.Parallel) run after the
# rest, up to four at a time and with nothing else beside them: a real
# cluster mostly waits (stabilization times, gate timeouts, a lock's TTL),
# one after another they take about 25 min, and the tests with second-scale
# command timeouts (tests/e2e/ssh) must not run under that load.
faults=github.com/seed-e5e14ead/consul-upgrade/tests/robustness
mapfile -t pkgs < <(go list ./... | grep -v -x -e "$alone" -e "$faults")
go test -count=1 -timeout 60m "$@" "${pkgs[@]}"
go test -count=1 -timeout 30m -parallel 4 "$@" "$faults"
go test -count=1 -timeout 20m "$@" "$alone"
