#!/usr/bin/env bash
# Smoke test of the test Collector: builds it (if needed), runs it with
# smoke.yaml, sends one span as OTLP/JSON over HTTP and checks that
#   - the prometheus exporter serves traces_span_metrics_calls_total for it,
#   - the span went through load_balancing and otlp_http to the backend
#     receiver and was written by the file exporter,
# then stops the Collector. Needs curl. Bounded: gives up after ~30 s.
#
# Ports can be moved with the OTELCOL_* variables that smoke.yaml reads.
set -euo pipefail

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
bin=$("$script_dir/build.sh")
if [[ -z "$bin" ]]; then
  echo "smoke: no collector binary (go missing); skipped"
  exit 0
fi

work=$(mktemp -d)
export OTELCOL_FILE_PATH="$work/out.jsonl"
http_port=${OTELCOL_OTLP_HTTP_PORT:-14318}
prom_port=${OTELCOL_PROM_PORT:-18889}
tel_port=${OTELCOL_TELEMETRY_PORT:-18888}

"$bin" --config "$script_dir/smoke.yaml" >"$work/collector.log" 2>&1 &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "smoke: FAIL: $*" >&2
  echo "--- collector log (tail)" >&2
  tail -n 40 "$work/collector.log" >&2 || true
  exit 1
}

for _ in $(seq 1 100); do
  grep -q "Everything is ready" "$work/collector.log" && break
  kill -0 "$pid" 2>/dev/null || fail "collector exited during start-up"
  sleep 0.1
done
grep -q "Everything is ready" "$work/collector.log" || fail "collector not ready after 10 s"

now=$(date +%s%N)
body=$(cat <<EOF
{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"smoke-svc"}}]},
 "scopeSpans":[{"scope":{"name":"smoke"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
 "spanId":"eee19b7ec3c1b174","name":"GET /smoke","kind":2,
 "startTimeUnixNano":"$((now - 25000000))","endTimeUnixNano":"$now","status":{"code":2}}]}]}]}
EOF
)
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
  -H 'Content-Type: application/json' --data "$body" \
  "http://127.0.0.1:$http_port/v1/traces") || fail "POST /v1/traces failed"
[[ "$code" == "200" ]] || fail "POST /v1/traces answered HTTP $code"

ok=0
for _ in $(seq 1 100); do
  # (capture first: `curl | grep -q` fails under pipefail when grep exits early)
  scrape=$(curl -sS --max-time 2 "http://127.0.0.1:$prom_port/metrics" 2>/dev/null || true)
  if grep -q '^traces_span_metrics_calls_total{.*service_name="smoke-svc".*span_name="GET /smoke".*status_code="STATUS_CODE_ERROR".*} 1$' <<<"$scrape"; then
    ok=1
    break
  fi
  sleep 0.2
done
[[ $ok -eq 1 ]] || fail "no traces_span_metrics_calls_total for the span on :$prom_port"

# load_balancing (gRPC) and otlp_http each deliver the span to otlp/backend -> file.
ok=0
for _ in $(seq 1 50); do
  n=$(grep -c '"name":"GET /smoke"' "$OTELCOL_FILE_PATH" 2>/dev/null || true)
  if [[ "${n:-0}" -ge 2 ]]; then ok=1; break; fi
  sleep 0.2
done
[[ $ok -eq 1 ]] || fail "span did not reach the file exporter twice (got ${n:-0})"

self=$(curl -sS --max-time 2 "http://127.0.0.1:$tel_port/metrics" || true)
grep -q '^otelcol_exporter_sent_spans{exporter="load_balancing"} 1$' <<<"$self" ||
  fail "self-metrics on :$tel_port lack otelcol_exporter_sent_spans for load_balancing"

echo "smoke: collector OK: span metrics scraped, span delivered via load_balancing and otlp_http"
