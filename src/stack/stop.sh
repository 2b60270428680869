#!/usr/bin/env bash
# npm stop: stop what npm start started (by the PIDs it recorded), keeping the data.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stop_recorded worker
stop_pg_instances
stop_started_by start
say "stopped; data kept in $DATA"
