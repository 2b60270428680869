#!/usr/bin/env bash
# npm run bench: the auto-restart benchmark (Docker's restart policy vs the durable-ops
# supervisor). Reuses a running stack, starts its own worker + event bridge on a private task
# queue, and stops what it started.
#   npm run bench                  10 rounds
#   npm run bench -- --rounds 20
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export DURABLE_OPS_SESSION="bench-$$"
export DURABLE_OPS_TASK_QUEUE="bench-$$"
trap 'stop_started_by "$DURABLE_OPS_SESSION"' EXIT

ensure_installed
ensure_services
cd "$ROOT"

say "starting a worker + Docker event bridge on task queue $DURABLE_OPS_TASK_QUEUE (log: $LOG_DIR/bench-worker.log)"
: >"$LOG_DIR/bench-worker.log"
start_bg bench-worker "$(command -v node)" --import tsx "$ROOT/src/workers/main.ts"
# Ready once the worker runs and the bridge follows the engine's events (fail fast if it exits).
bench_worker_ready() {
  recorded_alive bench-worker || die "the bench worker exited (see $LOG_DIR/bench-worker.log)"
  grep -q '"msg":"worker started"' "$LOG_DIR/bench-worker.log" && grep -q '"msg":"docker event stream connected"' "$LOG_DIR/bench-worker.log"
}
wait_for 120 "the bench worker" bench_worker_ready

npx tsx bench/restart.ts "$@"

# The alert path (Prometheus -> Alertmanager -> durable-ops) next to the Docker event path. It
# runs its own worker, bridge, receiver, Prometheus and Alertmanager, so the bench worker (and
# its event bridge, which would signal the alert-path supervisor too) stops first.
stop_recorded bench-worker
npx tsx bench/alert-path.ts

# Credential rotation under a continuously querying consumer, next to the raw steps.
npx tsx bench/rotation.ts

# Backup + restore of a ~1 GB pgbench database (scale: DURABLE_OPS_BENCH_BACKUP_SCALE, default 70)
# through the runbooks next to raw pg_basebackup/start and pg_dump/pg_restore. Own worker and
# instances (127.0.0.1:18800-18899), removed at the end.
npx tsx bench/backup.ts

# Horizontal scaling 1 -> 5 -> 1 under load through HAProxy: scaleService (health-gated, drained)
# next to plain `docker service scale`. Runs its own HAProxy (127.0.0.1:19250-19259) and worker.
npx tsx bench/scale.ts

# Recovery drills (delete-data-folder, drop-table, corrupt-backup) on drill copies: measured RTO and
# RPO against the seed's targets. Own worker; drill copies on 127.0.0.1:18800-18899, removed by the drills.
npx tsx bench/drill.ts
