#!/usr/bin/env bash
# Builds the test OpenTelemetry Collector distribution (tests/collector/) into
# target/otelcol-test/otelcol-test, only when its sources changed.
#
# Usage: tests/collector/build.sh [--force]
#
# Progress messages go to stderr; on success the binary's absolute path is the
# only thing printed on stdout, so callers can do
#     OTELCOL=$(tests/collector/build.sh)
# When go is not installed, stdout stays empty and the script exits 0
# (or 1 with OTEL_SLI_REQUIRE_TOOLS=1), so callers can skip collector tests.
#
# A stamp file beside the binary holds a sha256 over go.mod, go.sum, main.go,
# this script and `go version`; when it matches and the binary exists, nothing
# is built. The Go caches are the default ones (GOMODCACHE, GOCACHE under
# $HOME), which outlive a fresh clone of the repo on the same machine:
#   cold (empty caches): ~30 s to download ~190 MB of modules (~0.8 GB unpacked)
#                        + ~4 min to compile on 2 cores (~1.1 GB of GOCACHE)
#   warm GOCACHE, no binary yet (e.g. a fresh clone): ~5 s (link only)
#   stamp matches: no go invocation beyond `go version`, well under a second
# Set GOMODCACHE / GOCACHE in the environment to put the caches elsewhere.
set -euo pipefail

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd -- "$script_dir/../.." && pwd -P)
out_dir="$repo_root/target/otelcol-test"
bin="$out_dir/otelcol-test"
stamp="$out_dir/otelcol-test.stamp"

log() { printf 'otelcol-test: %s\n' "$*" >&2; }

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) log "unknown argument: $1 (usage: $0 [--force])"; exit 2 ;;
esac

if ! command -v go >/dev/null 2>&1; then
  if [[ "${OTEL_SLI_REQUIRE_TOOLS:-0}" == "1" ]]; then
    log "go not found on PATH, and OTEL_SLI_REQUIRE_TOOLS=1: cannot build the test collector"
    exit 1
  fi
  log "go not found on PATH: skipping the test collector build (set OTEL_SLI_REQUIRE_TOOLS=1 to make this an error)"
  exit 0
fi

mkdir -p "$out_dir"

# Several test processes may call this at once: build under a lock.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$out_dir/.build.lock"
  flock 9
fi

hash=$(
  {
    for f in go.mod go.sum main.go build.sh; do
      printf '%s\n' "$f"
      cat "$script_dir/$f"
    done
    go version
  } | sha256sum | cut -d' ' -f1
)

if [[ $force -eq 0 && -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
  log "up to date: $bin"
  printf '%s\n' "$bin"
  exit 0
fi

log "building $bin with $(go version) (several minutes when the Go caches are cold)"
start=$(date +%s)
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(
  cd "$script_dir"
  # -mod=readonly: go.mod/go.sum are never rewritten by a build.
  # -buildvcs=false: the binary must not depend on the git state of the work tree.
  export GOFLAGS="-mod=readonly -buildvcs=false"
  export CGO_ENABLED=0
  go build -trimpath -ldflags='-s -w' -o "$tmp" .
)
mv -f "$tmp" "$bin"
printf '%s\n' "$hash" >"$stamp"
end=$(date +%s)
size=$(du -h "$bin" | cut -f1)
log "built in $((end - start)) s: $bin ($size)"
printf '%s\n' "$bin"
