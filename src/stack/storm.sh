#!/usr/bin/env bash
# npm run storm -- --minutes N: the long storm (test/helpers/storm.ts) on the real stack, with its
# own worker process on a private task queue. Reuses a running stack; stops what it started.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export DURABLE_OPS_SESSION="storm-$$"
trap 'stop_started_by "$DURABLE_OPS_SESSION"' EXIT
ensure_installed
ensure_services
cd "$ROOT"
export DURABLE_OPS_WORKFLOW_BUNDLE="$DATA/cache/workflow-bundle-storm.js"
export DURABLE_OPS_LOG_LEVEL="${DURABLE_OPS_LOG_LEVEL:-warn}"
mkdir -p "$DATA/cache"
npx tsx test/helpers/bundle.ts "$DURABLE_OPS_WORKFLOW_BUNDLE"
npx tsx bench/storm.ts "$@"
