#!/usr/bin/env bash
# The project cluster 'main' (src/stack/services/postgres.sh), for the engine's recovery drills on
# the user's own data (src/activities/main-cluster.ts). It only ever touches the postmaster the
# stack recorded, and restarts it the way the stack does (recorded again, in the list of the
# session that started it, so that session's `npm stop` / test run still stops it).
#   pg-main.sh status           prints "<port> <data folder>"; exit 3 when main is not the postmaster we recorded
#   pg-main.sh stop             fast shutdown of the recorded postmaster (SIGINT); no-op when it is down
#   pg-main.sh crash-delete     the data folder is lost: SIGQUIT (immediate shutdown, as a crash) to the
#                               recorded postmaster, then the data folder is deleted
#   pg-main.sh start            start it (config, recorded postmaster, roles); no-op when it runs
#   pg-main.sh adopt DIR ID     replace main's data folder by DIR (a restored copy, cleanly stopped), then
#                               start; idempotent: DIR gone and main's folder marked with ID = done
# Exit codes: 0 done, 3 main is not managed by this stack, 1 anything else.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Restarts are recorded in the list of the session that started main (else this one's).
owner="$(grep -lx postgres "$RUN_DIR"/started-by-* 2>/dev/null | head -1 || true)"
[ -n "$owner" ] && export DURABLE_OPS_SESSION="${owner##*started-by-}"

managed() {
  # Ours: the recorded postmaster runs, or (after a stop or a crash by this script) the port is
  # free and the data folder is the one postgres.sh set up.
  recorded_alive postgres && return 0
  ! port_open "$PG_PORT" && [ -s "$PG_ADMIN_PASSWORD_FILE" ]
}

main_down() { ! port_open "$PG_PORT"; }

recorded_pid() { local pid; read -r pid <"$RUN_DIR/postgres.pid"; echo "$pid"; }

dedupe_session_list() {
  local list="$RUN_DIR/started-by-${DURABLE_OPS_SESSION:-$$}" tmp
  [ -f "$list" ] || return 0
  tmp="$(mktemp)"; awk '!seen[$0]++' "$list" >"$tmp" && cat "$tmp" >"$list"; rm -f "$tmp"
}

do_start() {
  # Never initdb a new, empty cluster over a lost one: that is what `adopt` (a restore) is for.
  [ -f "$PG_DATA/PG_VERSION" ] || die "main has no data folder ($PG_DATA): restore it (adopt) first"
  ensure_postgres
  dedupe_session_list
}

cmd="${1:-}"
case "$cmd" in
  status)
    managed || { say "main (127.0.0.1:$PG_PORT) is not the postmaster this stack recorded"; exit 3; }
    echo "$PG_PORT $PG_DATA"
    ;;
  stop)
    managed || exit 3
    stop_recorded postgres
    wait_for 60 "PostgreSQL to stop" main_down
    ;;
  crash-delete)
    managed || exit 3
    if recorded_alive postgres; then
      pid="$(recorded_pid)"
      say "drill: immediate shutdown of main (pid $pid), then deleting $PG_DATA"
      kill -QUIT "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
      rm -f "$RUN_DIR/postgres.pid"
    fi
    wait_for 60 "PostgreSQL to stop" main_down
    rm -rf "$PG_DATA"
    ;;
  start)
    managed || exit 3
    do_start
    ;;
  adopt)
    dir="${2:?adopt DIR ID}" id="${3:?adopt DIR ID}"
    managed || exit 3
    marker="$PG_DATA/durable-ops.adopted"
    if [ -f "$dir/PG_VERSION" ]; then
      [ -f "$dir/postmaster.pid" ] && die "$dir: the restored copy is still running; stop it first"
      if recorded_alive postgres; then stop_recorded postgres; fi
      wait_for 60 "PostgreSQL to stop" main_down
      aside="$PG_DATA.replaced-$id"
      rm -rf "$aside"
      [ -e "$PG_DATA" ] && mv "$PG_DATA" "$aside"
      printf '%s\n' "$id" >"$dir/durable-ops.adopted"
      [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/durable-ops.adopted"
      mv "$dir" "$PG_DATA"
      rm -rf "$aside"
      say "main's data folder is now the restored copy ($id)"
    elif ! grep -qx "$id" "$marker" 2>/dev/null; then
      die "adopt: $dir holds no data folder and main was not adopted from $id"
    fi
    do_start
    ;;
  *)
    echo "usage: pg-main.sh status|stop|crash-delete|start|adopt DIR ID" >&2
    exit 1
    ;;
esac
