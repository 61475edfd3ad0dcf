#!/bin/sh
# Rolls a feature flag back when otel-sli's verdict on its rollout is `fail`.
#
#   flag-rollback.sh -- <command that turns the flag off>
#
# Asks otel-sli whether the flag's canary variant is worse than its baseline variant
# (GET /api/v1/canary?service=..&flag=..&baseline=..&canary=..) and, on `fail`, runs the
# command given after `--` (your flag platform's API call, or a `kubectl patch` of a flagd
# ConfigMap; see docs/flags.md). Run it on a schedule (a Kubernetes CronJob, a CI step) for
# as long as the rollout lasts.
#
# Environment:
#   OTEL_SLI        otel-sli admin address (default http://127.0.0.1:9464)
#   SERVICE         service.name of the service evaluating the flag (required)
#   FLAG            feature_flag.key (required)
#   BASELINE        variant compared against (default off)
#   CANARY          variant being rolled out (default on)
#   WINDOW          how far back to look, 1m to 1h (default 10m)
#   OTEL_SLI_TOKEN  bearer token when admin.auth is set (optional)
#
# Exit status: 0 pass or inconclusive (nothing done), 1 fail (the command ran; its own
# failure is reported), 3 no verdict (otel-sli unreachable or the query refused).
set -eu

if [ "${1:-}" != "--" ] || [ "$#" -lt 2 ]; then
  echo "usage: $0 -- <command that turns the flag off>" >&2
  exit 3
fi
shift
: "${SERVICE:?set SERVICE to the service.name evaluating the flag}"
: "${FLAG:?set FLAG to the feature_flag.key}"
OTEL_SLI="${OTEL_SLI:-http://127.0.0.1:9464}"

if ! body=$(curl -fsS --max-time 10 -G "$OTEL_SLI/api/v1/canary" \
  ${OTEL_SLI_TOKEN:+-H "Authorization: Bearer $OTEL_SLI_TOKEN"} \
  --data-urlencode "service=$SERVICE" \
  --data-urlencode "flag=$FLAG" \
  --data-urlencode "baseline=${BASELINE:-off}" \
  --data-urlencode "canary=${CANARY:-on}" \
  --data-urlencode "window=${WINDOW:-10m}"); then
  echo "no verdict for $FLAG of $SERVICE from $OTEL_SLI; nothing done" >&2
  exit 3
fi
# The overall verdict is the response's first "verdict" key.
verdict=$(printf '%s' "$body" | grep -o '"verdict":"[a-z]*"' | head -n 1 | cut -d '"' -f 4)
case "$verdict" in
  fail)
    echo "$FLAG of $SERVICE: fail; rolling back"
    printf '%s\n' "$body" | grep -o '"reasons":\[[^]]*\]' | head -n 1 >&2 || true
    if "$@"; then
      echo "$FLAG of $SERVICE: rolled back"
    else
      echo "$FLAG of $SERVICE: the rollback command failed ($?)" >&2
    fi
    exit 1
    ;;
  pass | inconclusive)
    echo "$FLAG of $SERVICE: $verdict"
    exit 0
    ;;
  *)
    echo "unexpected answer from $OTEL_SLI: $body" >&2
    exit 3
    ;;
esac
