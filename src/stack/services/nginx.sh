# Nginx (Debian package nginx): the same replica set as HAProxy, as an `upstream` per declared
# backend (least_conn, weights) served on 127.0.0.1:<nginxPort> (web: 8490). Sourced by lib.sh,
# after haproxy.sh (same folder, $DURABLE_OPS_LB_DIR). nginx.conf is rendered from lb.json
# (src/activities/lb-config.ts), validated with `nginx -t -c`, and reloaded by a HUP to the
# recorded master (src/activities/nginx.ts does it after each scaling step).

APT_PACKAGES+=(nginx)
EXTRA_SERVICES+=(ensure_nginx)

NGINX_BIN="${DURABLE_OPS_NGINX_BIN:-/usr/sbin/nginx}"
export DURABLE_OPS_NGINX_PORT="${DURABLE_OPS_NGINX_PORT:-8490}"
# SIGQUIT: a graceful shutdown (workers finish their requests).
STOP_SIGNAL[nginx]=QUIT

nginx_ready() { [ -s "$LB_DIR/nginx.pid" ] && [ "$(cat "$LB_DIR/nginx.pid")" = "$(head -1 "$RUN_DIR/nginx.pid")" ]; }

ensure_nginx() {
  if recorded_alive nginx; then return 0; fi
  recorded_alive haproxy || lb_render
  "$NGINX_BIN" -t -q -e "$LB_DIR/nginx-error.log" -c "$LB_DIR/nginx.conf" >>"$LOG_DIR/nginx.log" 2>&1 || { tail -20 "$LOG_DIR/nginx.log" >&2; die "nginx.conf is invalid"; }
  say "starting Nginx (upstreams from $LB_DIR/lb.json)"
  start_bg nginx "$NGINX_BIN" -e "$LB_DIR/nginx-error.log" -c "$LB_DIR/nginx.conf"
  wait_for 20 Nginx nginx_ready
  # The master retitles itself ("nginx: master process ..."): record that title as its command line,
  # so recorded_alive / stop_recorded still recognise exactly this process.
  local pid title; pid="$(head -1 "$RUN_DIR/nginx.pid")"
  title="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
  printf '%s\n%s\n' "$pid" "${title% }" >"$RUN_DIR/nginx.pid"
}

# Re-render and reload (HUP to the recorded master) after a change of the catalog.
nginx_reload() {
  recorded_alive nginx || { ensure_nginx; return; }
  lb_render
  "$NGINX_BIN" -t -q -e "$LB_DIR/nginx-error.log" -c "$LB_DIR/nginx.conf" >>"$LOG_DIR/nginx.log" 2>&1 || { tail -20 "$LOG_DIR/nginx.log" >&2; die "nginx.conf is invalid; still running the old one"; }
  kill -HUP "$(head -1 "$RUN_DIR/nginx.pid")"
}
