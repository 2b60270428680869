#!/usr/bin/env bash
# npm start: install what is missing, start what is not running (Docker engine, Temporal dev
# server + UI, Mailpit), then the engine (worker + Docker event bridge). Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export DURABLE_OPS_SESSION=start

ensure_installed
ensure_services

if recorded_alive worker; then
  say "worker already running (pid $(cut -d' ' -f1 "$RUN_DIR/worker.pid"))"
else
  say "starting the worker and the Docker event bridge (log: $LOG_DIR/worker.log)"
  cd "$ROOT"
  start_bg worker "$(command -v node)" --import tsx "$ROOT/src/workers/main.ts"
  wait_for 120 "the worker" grep -q '"msg":"worker started"' "$LOG_DIR/worker.log"
fi

cat <<EOT

durable-ops is running.
  Temporal UI   $DURABLE_OPS_TEMPORAL_UI        (runbooks: task queue ${DURABLE_OPS_TASK_QUEUE:-durable-ops})
  Temporal gRPC $DURABLE_OPS_TEMPORAL_ADDRESS
  Mail (alerts) $DURABLE_OPS_MAILPIT_API        (SMTP 127.0.0.1:$SMTP_PORT)
  Demo image    ${DURABLE_OPS_DEMO_IMAGE}
  Logs          $LOG_DIR
Stop with: npm stop
EOT
