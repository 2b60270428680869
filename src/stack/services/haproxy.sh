# HAProxy 2.6 (Debian package haproxy): the load balancer in front of scaled services. Sourced by lib.sh.
#   folder   $DURABLE_OPS_LB_DIR (default $DATA/lb): lb.json (the model: declared backends from
#            config/lb.json + the live servers), haproxy.cfg (rendered from it), haproxy.sock
#   listens  a frontend per declared backend on 127.0.0.1:<frontendPort> (web: 8480), the stats
#            page on 127.0.0.1:8404/stats, the runtime API on haproxy.sock (admin, expose-fd listeners)
# Servers join and leave through the runtime API (src/activities/haproxy.ts), which re-renders
# haproxy.cfg after each change, so a restart comes back with the same set. A reload (a changed
# catalog) drops no request: a new process takes the listening sockets over the stats socket (-x)
# and tells the old one to finish its sessions (-sf).

APT_PACKAGES+=(haproxy)
EXTRA_SERVICES+=(ensure_haproxy)

LB_DIR="${DURABLE_OPS_LB_DIR:-$DATA/lb}"
LB_CATALOG="${DURABLE_OPS_LB_CATALOG:-$ROOT/config/lb.json}"
HAPROXY_BIN="${DURABLE_OPS_HAPROXY_BIN:-/usr/sbin/haproxy}"
export DURABLE_OPS_LB_DIR="$LB_DIR"
export DURABLE_OPS_HAPROXY_SOCKET="$LB_DIR/haproxy.sock"
export DURABLE_OPS_HAPROXY_PORT="${DURABLE_OPS_HAPROXY_PORT:-8480}"
export DURABLE_OPS_HAPROXY_STATS_URL="http://127.0.0.1:8404/stats"
# SIGUSR1: a soft stop (stop listening, finish the sessions); stop_recorded escalates after 10 s.
STOP_SIGNAL[haproxy]=USR1

# Up once the recorded process runs and its runtime API socket exists (a stale one is removed before a start).
haproxy_answers() { recorded_alive haproxy || { tail -20 "$LOG_DIR/haproxy.log" >&2; die "HAProxy exited at start"; }; [ -S "$LB_DIR/haproxy.sock" ]; }

# Render lb.json, haproxy.cfg and nginx.conf from the catalog and the live servers.
lb_render() {
  (cd "$ROOT" && node --import tsx "$ROOT/src/stack/lb.ts" init "$LB_DIR" "$LB_CATALOG") >>"$LOG_DIR/lb.log" 2>&1 || { tail -20 "$LOG_DIR/lb.log" >&2; die "rendering the load-balancer configs failed"; }
}

ensure_haproxy() {
  if recorded_alive haproxy; then return 0; fi
  lb_render
  "$HAPROXY_BIN" -c -q -f "$LB_DIR/haproxy.cfg" >>"$LOG_DIR/haproxy.log" 2>&1 || { tail -20 "$LOG_DIR/haproxy.log" >&2; die "haproxy.cfg is invalid"; }
  rm -f "$LB_DIR/haproxy.sock"
  say "starting HAProxy (frontends from $LB_CATALOG; stats $DURABLE_OPS_HAPROXY_STATS_URL; runtime API $LB_DIR/haproxy.sock)"
  start_bg haproxy "$HAPROXY_BIN" -db -f "$LB_DIR/haproxy.cfg"
  wait_for 20 HAProxy haproxy_answers
}

# Re-read the config with no request dropped: the new process takes the listeners from the old
# one through the stats socket (-x, `expose-fd listeners`), then the old one finishes (-sf).
haproxy_reload() {
  recorded_alive haproxy || { ensure_haproxy; return; }
  local old; old="$(head -1 "$RUN_DIR/haproxy.pid")"
  lb_render
  "$HAPROXY_BIN" -c -q -f "$LB_DIR/haproxy.cfg" >>"$LOG_DIR/haproxy.log" 2>&1 || { tail -20 "$LOG_DIR/haproxy.log" >&2; die "haproxy.cfg is invalid; still running the old one"; }
  say "reloading HAProxy (old pid $old)"
  start_bg haproxy "$HAPROXY_BIN" -db -f "$LB_DIR/haproxy.cfg" -x "$LB_DIR/haproxy.sock" -sf "$old"
  wait_for 20 HAProxy haproxy_answers
}
