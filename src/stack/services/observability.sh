# Prometheus and Alertmanager from Debian (packages prometheus, prometheus-alertmanager), on
# 127.0.0.1 only. Sourced by lib.sh. Configs are generated from the committed templates in
# observability/ with the configured ports:
#   Prometheus    http://127.0.0.1:${DURABLE_OPS_PROMETHEUS_PORT:-9090}, data in $DATA/prometheus,
#                 file_sd targets in $DATA/prometheus/targets/*.json, rules observability/prometheus/rules.yml
#   Alertmanager  http://127.0.0.1:${DURABLE_OPS_ALERTMANAGER_PORT:-9093}, data in $DATA/alertmanager,
#                 no cluster listener; webhook -> http://127.0.0.1:${DURABLE_OPS_RECEIVER_PORT:-9466}/alertmanager
# The worker's /metrics is http://127.0.0.1:${DURABLE_OPS_METRICS_PORT:-9464}/metrics.

APT_PACKAGES+=(prometheus prometheus-alertmanager)
EXTRA_SERVICES+=(ensure_alertmanager ensure_prometheus)

PROMETHEUS_PORT="${DURABLE_OPS_PROMETHEUS_PORT:-9090}"
ALERTMANAGER_PORT="${DURABLE_OPS_ALERTMANAGER_PORT:-9093}"
METRICS_PORT="${DURABLE_OPS_METRICS_PORT:-9464}"
RECEIVER_PORT="${DURABLE_OPS_RECEIVER_PORT:-9466}"
OBS_DIR="$ROOT/observability"
export DURABLE_OPS_PROMETHEUS_URL="${DURABLE_OPS_PROMETHEUS_URL:-http://127.0.0.1:$PROMETHEUS_PORT}"
export DURABLE_OPS_ALERTMANAGER_URL="${DURABLE_OPS_ALERTMANAGER_URL:-http://127.0.0.1:$ALERTMANAGER_PORT}"

# Write FILE from the template with the configured ports (only if it changed).
obs_render() { # obs_render TEMPLATE OUTPUT
  local tmp; tmp="$(mktemp "$2.XXXX")"
  sed -e "s#127\.0\.0\.1:9464#127.0.0.1:$METRICS_PORT#g" \
      -e "s#127\.0\.0\.1:9093#127.0.0.1:$ALERTMANAGER_PORT#g" \
      -e "s#127\.0\.0\.1:9466/#127.0.0.1:$RECEIVER_PORT/#g" \
      -e "s#^  - rules\.yml\$#  - $OBS_DIR/prometheus/rules.yml#" \
      -e "s#unix:///var/run/docker.sock#unix://$DOCKER_SOCK#" \
      "$1" >"$tmp"
  if cmp -s "$tmp" "$2"; then rm -f "$tmp"; else mv "$tmp" "$2"; fi
}

ensure_alertmanager() {
  if port_open "$ALERTMANAGER_PORT"; then return 0; fi
  mkdir -p "$DATA/alertmanager"
  obs_render "$OBS_DIR/alertmanager/alertmanager.yml" "$DATA/alertmanager/alertmanager.yml"
  say "starting Alertmanager on 127.0.0.1:$ALERTMANAGER_PORT (webhook -> 127.0.0.1:$RECEIVER_PORT)"
  start_bg alertmanager /usr/bin/prometheus-alertmanager \
    --config.file="$DATA/alertmanager/alertmanager.yml" --storage.path="$DATA/alertmanager" \
    --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" --cluster.listen-address=
  wait_for 30 "Alertmanager" port_open "$ALERTMANAGER_PORT"
}

ensure_prometheus() {
  if port_open "$PROMETHEUS_PORT"; then return 0; fi
  mkdir -p "$DATA/prometheus/targets" "$DATA/prometheus/tsdb"
  obs_render "$OBS_DIR/prometheus/prometheus.yml" "$DATA/prometheus/prometheus.yml"
  say "starting Prometheus on 127.0.0.1:$PROMETHEUS_PORT"
  start_bg prometheus /usr/bin/prometheus \
    --config.file="$DATA/prometheus/prometheus.yml" --storage.tsdb.path="$DATA/prometheus/tsdb" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle
  wait_for 60 "Prometheus" port_open "$PROMETHEUS_PORT"
}
