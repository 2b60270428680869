#!/usr/bin/env bash
# npm start: install what is missing, start what is not running (Docker engine, Temporal dev
# server + UI, Mailpit), then the engine (worker + Docker event bridge). Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export DURABLE_OPS_SESSION=start

ensure_installed
ensure_services
start_pg_instances

if recorded_alive worker; then
  say "worker already running (pid $(head -1 "$RUN_DIR/worker.pid"))"
else
  say "starting the worker and the Docker event bridge (log: $LOG_DIR/worker.log)"
  cd "$ROOT"
  [ -f "$LOG_DIR/worker.log" ] && mv "$LOG_DIR/worker.log" "$LOG_DIR/worker.log.1"
  start_bg worker "$(command -v node)" --import tsx "$ROOT/src/workers/main.ts"
  worker_ready() {
    recorded_alive worker || { tail -20 "$LOG_DIR/worker.log" >&2; die "the worker exited at start"; }
    grep -q '"msg":"worker started"' "$LOG_DIR/worker.log"
  }
  wait_for 120 "the worker" worker_ready
fi

say "installing the schedules (config/rotations.json, backups.json, drills.json)"
npx tsx "$ROOT/src/starters/schedules.ts" >>"$LOG_DIR/schedules.log" 2>&1 || say "warning: schedules not installed (see $LOG_DIR/schedules.log)"

cat <<EOT

durable-ops is running.
  Temporal UI   $DURABLE_OPS_TEMPORAL_UI        (runbooks: task queue ${DURABLE_OPS_TASK_QUEUE:-durable-ops})
  Temporal gRPC $DURABLE_OPS_TEMPORAL_ADDRESS
  Mail (alerts) $DURABLE_OPS_MAILPIT_API        (SMTP 127.0.0.1:$SMTP_PORT)
  Metrics       http://127.0.0.1:${DURABLE_OPS_METRICS_PORT:-9464}/metrics   (breakers: /breakers)
  Prometheus    $DURABLE_OPS_PROMETHEUS_URL
  Alertmanager  $DURABLE_OPS_ALERTMANAGER_URL
  Jaeger API    http://127.0.0.1:16686/api/traces?service=durable-ops-worker
  Codec server  $DURABLE_OPS_CODEC_URL        (UI decoding: sign in at /login with ${DURABLE_OPS_CODEC_TOKEN_FILE:-$DATA/codec/token})
  HAProxy       http://127.0.0.1:$DURABLE_OPS_HAPROXY_PORT (web)   stats $DURABLE_OPS_HAPROXY_STATS_URL   runtime API $DURABLE_OPS_HAPROXY_SOCKET
  Nginx         http://127.0.0.1:$DURABLE_OPS_NGINX_PORT (web)   configs rendered in $DURABLE_OPS_LB_DIR
  Demo image    ${DURABLE_OPS_DEMO_IMAGE}
  Logs          $LOG_DIR
Stop with: npm stop
EOT
