# Swarm mode on the local engine (for Docker secrets and replicated services), advertised on
# 127.0.0.1 only. Services the project creates use host networking, so no overlay traffic.
# Sourced by lib.sh. Swarm state persists with the engine; nothing to stop.

EXTRA_SERVICES+=(ensure_swarm)

ensure_swarm() {
  local state
  state="$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true)"
  [ "$state" = "active" ] && return 0
  say "initialising Swarm mode (advertise 127.0.0.1)"
  docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >"$LOG_DIR/swarm.log" 2>&1 || { cat "$LOG_DIR/swarm.log" >&2; die "docker swarm init failed"; }
}
