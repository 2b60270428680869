#!/usr/bin/env bash
# npm test: set up what the tests need (reusing a running stack), then lint, typecheck, and
# the unit, replay and integration tests on the real stack. Stops what it started.
#   npm test                      everything
#   npm test -- test/unit/...     some files
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export DURABLE_OPS_SESSION="test-$$"
trap 'stop_started_by "$DURABLE_OPS_SESSION"' EXIT

ensure_installed
ensure_services
cd "$ROOT"

say "lint"
npx eslint . --max-warnings 0
say "typecheck"
npx tsc --noEmit

export DURABLE_OPS_WORKFLOW_BUNDLE="$DATA/cache/workflow-bundle.js"
export DURABLE_OPS_LOG_LEVEL="${DURABLE_OPS_LOG_LEVEL:-warn}"
mkdir -p "$DATA/cache"
npx tsx test/helpers/bundle.ts "$DURABLE_OPS_WORKFLOW_BUNDLE"

if [ "$#" -gt 0 ]; then files=("$@"); else mapfile -t files < <(find test -name '*.test.ts' | sort); fi
say "running ${#files[@]} test files"
node --import tsx --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec "${files[@]}"
