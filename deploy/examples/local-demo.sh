#!/usr/bin/env bash
# Topology 1 on one machine, on loopback: an application (the OpenTelemetry Rust SDK, see
# examples/send_spans.rs) → otel-sli with deploy/examples/topology-1-otel-sli.yaml → a
# "vendor" (a second otel-sli standing in for one: it accepts OTLP and counts it) and a
# real Prometheus (remote write). Prints the SLIs as Prometheus has them and checks that
# the vendor received every span. Exits non-zero if anything is missing.
#
#   deploy/examples/local-demo.sh
#
# Needs: cargo (to build otel-sli and the example sender) and Prometheus with promtool
# (Debian: apt-get install prometheus). Ports: DEMO_PORT_BASE [17000] and the next 8.
# OTEL_SLI and SEND_SPANS may name prebuilt binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."

base=${DEMO_PORT_BASE:-17000}
agent_grpc=$((base)) agent_http=$((base + 1)) agent_admin=$((base + 2))
vendor_grpc=$((base + 3)) vendor_http=$((base + 4)) vendor_admin=$((base + 5))
prom=$((base + 6))
services=checkout,catalog requests=200 error_every=20

for tool in prometheus promtool; do
  command -v "$tool" >/dev/null || { echo "local-demo: $tool not found (apt-get install prometheus)" >&2; exit 2; }
done
if [ -z "${OTEL_SLI:-}" ] || [ -z "${SEND_SPANS:-}" ]; then
  echo "== building otel-sli and examples/send_spans.rs"
  cargo build --quiet --bin otel-sli --example send_spans
fi
OTEL_SLI=${OTEL_SLI:-target/debug/otel-sli}
SEND_SPANS=${SEND_SPANS:-target/debug/examples/send_spans}

work=$(mktemp -d "${TMPDIR:-/tmp}/otel-sli-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits until URL answers 2xx (otel-sli's own probe: no curl needed).
wait_ready() {
  for _ in $(seq 1 300); do
    if "$OTEL_SLI" healthcheck --url "$1" --timeout 1s >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "local-demo: $2 did not become ready ($1); its log:" >&2
  cat "$work/$2.log" >&2
  exit 1
}

echo "== starting the vendor stand-in, Prometheus and otel-sli (logs in $work)"
"$OTEL_SLI" run --otlp-grpc "127.0.0.1:$vendor_grpc" --otlp-http "127.0.0.1:$vendor_http" \
  --admin "127.0.0.1:$vendor_admin" >"$work/vendor.log" 2>&1 &
pids+=($!)

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  # The vendor's own counters, to check what it received (its sli_* series are
  # scraped too; the agent's are told apart by their otel_sli_instance label).
  - job_name: vendor
    static_configs: [{ targets: ["127.0.0.1:$vendor_admin"] }]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
  --web.listen-address="127.0.0.1:$prom" --web.enable-remote-write-receiver \
  >"$work/prometheus.log" 2>&1 &
pids+=($!)

VENDOR_OTLP_ENDPOINT="http://127.0.0.1:$vendor_grpc" VENDOR_API_KEY=demo-key \
  PROMETHEUS_REMOTE_WRITE_URL="http://127.0.0.1:$prom/api/v1/write" REMOTE_WRITE_INTERVAL=2s \
  OTEL_SLI_STORAGE="$work/storage" K8S_NODE_NAME=demo-node \
  "$OTEL_SLI" run --config deploy/examples/topology-1-otel-sli.yaml \
  --otlp-grpc "127.0.0.1:$agent_grpc" --otlp-http "127.0.0.1:$agent_http" \
  --admin "127.0.0.1:$agent_admin" >"$work/otel-sli.log" 2>&1 &
pids+=($!)

wait_ready "http://127.0.0.1:$vendor_admin/readyz" vendor
wait_ready "http://127.0.0.1:$prom/-/ready" prometheus
wait_ready "http://127.0.0.1:$agent_admin/readyz" otel-sli

echo "== sending spans with the OpenTelemetry SDK to otel-sli (OTLP/gRPC, gzip)"
"$SEND_SPANS" --endpoint "http://127.0.0.1:$agent_grpc" --services "$services" \
  --requests "$requests" --error-every "$error_every"
n_services=$(tr ',' '\n' <<<"$services" | wc -l)
features=2
expect_requests=$((n_services * features * requests))
expect_spans=$((2 * expect_requests)) # each request: a SERVER span and a CLIENT child

# One number from Prometheus: the value of an instant query that yields one series.
query() {
  promtool query instant "http://127.0.0.1:$prom" "$1" 2>/dev/null |
    sed -n 's/.*=> \([0-9.e+-]*\) @.*/\1/p' | head -n 1
}

echo "== waiting for Prometheus to hold every request (remote write every 2s)"
got=""
for _ in $(seq 1 60); do
  got=$(query 'sum(sli_requests_total{otel_sli_instance="demo-node"})')
  vendor=$(query 'sum(otel_sli_accepted_spans_total{job="vendor"})')
  if [ "${got:-0}" = "$expect_requests" ] && [ "${vendor:-0}" = "$expect_spans" ]; then break; fi
  sleep 1
done

echo
echo "SLIs in Prometheus (remote-written by otel-sli, otel_sli_instance=\"demo-node\"):"
printf '%-10s %-16s %9s %7s %9s %9s\n' service feature requests errors success p99
for s in ${services//,/ }; do
  for f in "GET /items" "POST /checkout"; do
    sel="otel_sli_instance=\"demo-node\",service=\"$s\",feature=\"$f\""
    r=$(query "sum(sli_requests_total{$sel})")
    e=$(query "sum(sli_errors_total{$sel})")
    ok=$(query "100 * (1 - sum(sli_errors_total{$sel}) / sum(sli_requests_total{$sel}))")
    p99=$(query "histogram_quantile(0.99, sum by (le) (sli_latency_seconds_bucket{$sel}))")
    printf '%-10s %-16s %9s %7s %8.2f%% %8.3fs\n' "$s" "$f" "${r:-?}" "${e:-?}" "${ok:-0}" "${p99:-0}"
  done
done
echo
echo "vendor (forwarded unchanged): ${vendor:-0} spans accepted of $expect_spans sent"

if [ "${got:-0}" != "$expect_requests" ]; then
  echo "local-demo: FAILED: Prometheus holds ${got:-no} requests, expected $expect_requests" >&2
  tail -n 20 "$work/otel-sli.log" >&2
  exit 1
fi
if [ "${vendor:-0}" != "$expect_spans" ]; then
  echo "local-demo: FAILED: the vendor accepted ${vendor:-no} spans, expected $expect_spans" >&2
  tail -n 20 "$work/otel-sli.log" >&2
  exit 1
fi
expect_errors=$((n_services * features * (requests / error_every)))
errors=$(query 'sum(sli_errors_total{otel_sli_instance="demo-node"})')
if [ "${errors:-0}" != "$expect_errors" ]; then
  echo "local-demo: FAILED: Prometheus holds ${errors:-no} errors, expected $expect_errors" >&2
  exit 1
fi
echo "local-demo: OK ($expect_requests requests, $expect_errors errors, $expect_spans spans forwarded)"
