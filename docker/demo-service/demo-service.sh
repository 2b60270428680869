#!/bin/sh
# Serves a page and /health on 127.0.0.1:$PORT (+ $SLOT for Swarm replicas).
# Runs httpd as a child of this shell (PID 1), so a crash of the server is a crash of the
# container, and `docker stop` is graceful. `crash [CODE]` (docker exec) crashes it on demand.
# Control files in $CONTROL_DIR (a mounted folder, or `docker exec`):
#   crash-on-start  exit 3 at start (a crash loop)
#   unhealthy       /health answers 404 until the file is removed
#   start-delay     seconds to wait before serving (a slow start)
#   slow-stop       seconds a graceful stop takes (a slow drain)
set -eu
port="${PORT:-8080}"
if [ -n "${SLOT:-}" ]; then port=$((port + SLOT)); fi
ctl="${CONTROL_DIR:-/control}"
mkdir -p /www "$ctl"
echo "starting demo-service on 127.0.0.1:$port (slot ${SLOT:-none}, pid $$)"
if [ -e "$ctl/crash-on-start" ]; then
  echo "crash-on-start is set: exiting with code 3" >&2
  exit 3
fi
if [ -s "$ctl/start-delay" ]; then sleep "$(cat "$ctl/start-delay")"; fi
printf '<html><body><h1>demo-service</h1><p>host %s port %s</p></body></html>\n' "$(hostname)" "$port" >/www/index.html
echo ok >/www/health
# A static /metrics, so Prometheus sees the service: up{service=...} is 0 when it is down.
printf '# HELP demo_service_up The demo service is serving.\n# TYPE demo_service_up gauge\ndemo_service_up 1\n' >/www/metrics
# Health follows the control file.
(
  while :; do
    if [ -e "$ctl/unhealthy" ]; then rm -f /www/health; else [ -e /www/health ] || echo ok >/www/health; fi
    sleep 1
  done
) &
echo "$port" >/tmp/port
rm -f /tmp/crash-code
httpd -f -v -p "127.0.0.1:$port" -h /www &
child=$!
echo "$child" >/tmp/httpd.pid
# A graceful stop (docker stop) exits 0; anything else that ends httpd is a crash.
graceful_stop() {
  if [ -s "$ctl/slow-stop" ]; then echo "draining for $(cat "$ctl/slow-stop")s"; sleep "$(cat "$ctl/slow-stop")"; fi
  kill -TERM "$child" 2>/dev/null || true
  wait "$child" 2>/dev/null || true
  echo "stopped"
  exit 0
}
trap graceful_stop TERM INT
rc=0
wait "$child" || rc=$?
code="$(cat /tmp/crash-code 2>/dev/null || echo "$rc")"
echo "httpd exited with $rc: crashing with exit code $code" >&2
exit "$code"
