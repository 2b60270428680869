#!/usr/bin/env bash
# The stack: installs what is missing and starts what is not running, for `npm start`,
# `npm test` and `npm run bench`. Everything binds 127.0.0.1. Processes we start are recorded
# as "PID BINARY" in $RUN_DIR/<name>.pid, and only those are ever stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${DURABLE_OPS_CACHE:-$HOME/.cache/durable-ops}"
DATA="${DURABLE_OPS_DATA:-$ROOT/.data}"
RUN_DIR="$DATA/run"
LOG_DIR="$DATA/logs"

TEMPORAL_VERSION="1.5.1"
MAILPIT_VERSION="1.33.1"
TEMPORAL_BIN="$CACHE/tools/temporal-$TEMPORAL_VERSION/temporal"
MAILPIT_BIN="$CACHE/tools/mailpit-$MAILPIT_VERSION/mailpit"

TEMPORAL_PORT="${DURABLE_OPS_TEMPORAL_PORT:-7233}"
TEMPORAL_UI_PORT="${DURABLE_OPS_TEMPORAL_UI_PORT:-8233}"
SMTP_PORT="${DURABLE_OPS_SMTP_PORT:-1025}"
MAILPIT_HTTP_PORT="${DURABLE_OPS_MAILPIT_HTTP_PORT:-8025}"
CODEC_PORT="${DURABLE_OPS_CODEC_PORT:-8888}" # the codec server for the UI (src/stack/services/codec.sh)
DOCKER_SOCK="${DURABLE_OPS_DOCKER_SOCKET:-/var/run/docker.sock}"
DEMO_IMAGE="durable-ops/demo-service"

APT_PACKAGES=(docker.io busybox-static docker-compose)
# Extension points: each src/stack/services/*.sh (sourced at the end of this file) may add
# Debian packages to APT_PACKAGES, and names of functions to EXTRA_TOOLS (build tools into the
# cache) and EXTRA_SERVICES (start a service if it is not running).
EXTRA_TOOLS=()
EXTRA_SERVICES=()
# A service may set STOP_SIGNAL[name] (default TERM) for stop_recorded.
declare -gA STOP_SIGNAL=()

export DURABLE_OPS_TEMPORAL_ADDRESS="${DURABLE_OPS_TEMPORAL_ADDRESS:-127.0.0.1:$TEMPORAL_PORT}"
export DURABLE_OPS_SMTP_PORT="$SMTP_PORT"
export DURABLE_OPS_MAILPIT_API="${DURABLE_OPS_MAILPIT_API:-http://127.0.0.1:$MAILPIT_HTTP_PORT}"
export DURABLE_OPS_TEMPORAL_UI="${DURABLE_OPS_TEMPORAL_UI:-http://127.0.0.1:$TEMPORAL_UI_PORT}"
export DURABLE_OPS_DATA="$DATA"
export DURABLE_OPS_CACHE="$CACHE"
export DURABLE_OPS_TEMPORAL_BIN="$TEMPORAL_BIN"

mkdir -p "$RUN_DIR" "$LOG_DIR" "$CACHE/tools"

say() { printf '[durable-ops] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what did not come up within ${secs}s (logs: $LOG_DIR)"
    sleep 0.2
  done
}

# --- installs ----------------------------------------------------------------------------

ensure_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}" "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); run as root or install them: apt-get install -y ${missing[*]}"
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq >"$LOG_DIR/apt.log" 2>&1
  # The packages' own services (system nginx on :80, the system PostgreSQL cluster, ...) must not
  # start: the project runs its own instances on 127.0.0.1. policy-rc.d (Debian's mechanism)
  # forbids service starts during the install; ours only, removed after.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# durable-ops: no service starts during apt-get install\nexit 101\n' >"$policy" && chmod 0755 "$policy"
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1 || rc=$?
  [ -n "$policy" ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || die "apt-get install failed (see $LOG_DIR/apt.log)"
}

# cached_build BIN WHAT BUILDER [ARGS...]: build BIN once into the cache (its path carries the
# version), under a lock, atomically: BUILDER OUTDIR ARGS... must leave $(basename BIN) in OUTDIR.
cached_build() {
  local bin="$1" what="$2" builder="$3"; shift 3
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || die "Go is needed to build $what"
  local dir name log
  dir="$(dirname "$bin")"; name="$(basename "$bin")"; log="$LOG_DIR/build-$name.log"
  mkdir -p "$dir"
  (
    flock 9
    [ -x "$bin" ] && exit 0
    say "building $what into $dir (first time only; several minutes)"
    local tmp; tmp="$(mktemp -d "$dir/.build.XXXX")"
    "$builder" "$tmp" "$@" >"$log" 2>&1 || { rm -rf "$tmp"; die "building $what failed (see $log)"; }
    mv "$tmp/$name" "$bin"
    rm -rf "$tmp"
  ) 9>"$dir/.lock"
}

# A module `go install` accepts (no replace directives).
go_install_into() { (cd /tmp && GOBIN="$1" GOFLAGS=-mod=mod go install "$2"); }

# A module pinned in tools/<dir>/go.mod (replace directives, godebug lines): built from there.
go_build_tool_into() { (cd "$ROOT/tools/$2" && GOWORK=off go build -mod=mod -trimpath -o "$1/$3" "$4"); }

# go_tool BIN MODULE@VERSION
go_tool() { cached_build "$1" "$2" go_install_into "$2"; }

ensure_tools() {
  go_tool "$TEMPORAL_BIN" "github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_VERSION" &
  local p1=$!
  go_tool "$MAILPIT_BIN" "github.com/axllent/mailpit@v$MAILPIT_VERSION" &
  local p2=$!
  wait "$p1" && wait "$p2"
  local fn
  for fn in "${EXTRA_TOOLS[@]}"; do "$fn"; done
}

ensure_node_modules() {
  cd "$ROOT"
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "installing node modules (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error >"$LOG_DIR/npm-ci.log" 2>&1 || { cat "$LOG_DIR/npm-ci.log" >&2; die "npm ci failed"; }
  fi
}

# --- processes ---------------------------------------------------------------------------

# Is the process recorded in pidfile NAME alive and still the very command we started?
# The pidfile holds the PID on line 1 and the exact command line on line 2.
recorded_alive() {
  local f="$RUN_DIR/$1.pid" pid cmd
  [ -f "$f" ] || return 1
  { IFS= read -r pid; IFS= read -r cmd; } <"$f" || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  local actual
  actual="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
  [ "${actual% }" = "$cmd" ]
}

# start_bg NAME BINARY ARGS...: start detached, record its PID and command line.
start_bg() {
  local name="$1"; shift
  setsid nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  local pid=$!
  printf '%s\n%s\n' "$pid" "$*" >"$RUN_DIR/$name.pid"
  echo "$name" >>"$RUN_DIR/started-by-${DURABLE_OPS_SESSION:-$$}"
  # Until setsid and nohup have exec'd the command, the PID's command line is theirs and
  # recorded_alive would call the new process dead: wait for the exec (a few ms; at most 3 s).
  local _
  for _ in $(seq 1 60); do
    recorded_alive "$name" && break
    [ -d "/proc/$pid" ] || break
    sleep 0.05
  done
}

# stop_recorded NAME: stop only the process we recorded, if it is still that process.
stop_recorded() {
  local name="$1" f="$RUN_DIR/$1.pid" pid
  if recorded_alive "$name"; then
    read -r pid <"$f"
    say "stopping $name (pid $pid)"
    kill -"${STOP_SIGNAL[$name]:-TERM}" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

docker_up() { docker -H "unix://$DOCKER_SOCK" info >/dev/null 2>&1; }

ensure_dockerd() {
  docker_up && return 0
  recorded_alive dockerd || {
    [ "$(id -u)" -eq 0 ] || die "no Docker engine answers on $DOCKER_SOCK and starting dockerd needs root"
    say "starting dockerd"
    start_bg dockerd /usr/sbin/dockerd --host "unix://$DOCKER_SOCK"
  }
  wait_for 60 dockerd docker_up
}

ensure_temporal() {
  if port_open "$TEMPORAL_PORT"; then return 0; fi
  say "starting Temporal dev server on 127.0.0.1:$TEMPORAL_PORT (UI :$TEMPORAL_UI_PORT)"
  start_bg temporal "$TEMPORAL_BIN" server start-dev \
    --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
    --ui-codec-endpoint "http://127.0.0.1:$CODEC_PORT" \
    --db-filename "$DATA/temporal.db" --log-level warn \
    --search-attribute Service=Keyword --search-attribute Runbook=Keyword \
    --dynamic-config-value 'history.timerProcessorMaxTimeShift="10ms"'
  wait_for 60 "Temporal" port_open "$TEMPORAL_PORT"
  wait_for 60 "Temporal namespace" "$TEMPORAL_BIN" operator namespace describe --address "127.0.0.1:$TEMPORAL_PORT" --namespace default --output none
}

ensure_mailpit() {
  if port_open "$SMTP_PORT" && port_open "$MAILPIT_HTTP_PORT"; then return 0; fi
  say "starting Mailpit (SMTP 127.0.0.1:$SMTP_PORT, UI :$MAILPIT_HTTP_PORT)"
  start_bg mailpit "$MAILPIT_BIN" --smtp "127.0.0.1:$SMTP_PORT" --listen "127.0.0.1:$MAILPIT_HTTP_PORT" \
    --database "$DATA/mailpit.db" --disable-version-check
  wait_for 30 "Mailpit" port_open "$MAILPIT_HTTP_PORT"
}

# The demo service image, built locally FROM scratch with Debian's static busybox, tagged by
# the hash of its build context so a change rebuilds it.
ensure_demo_image() {
  local ctx="$ROOT/docker/demo-service" hash tmp
  hash="$( (cd "$ctx" && cat Dockerfile ./*.sh; sha256sum /bin/busybox) | sha256sum | cut -c1-12)"
  export DURABLE_OPS_DEMO_IMAGE="$DEMO_IMAGE:$hash"
  docker image inspect "$DURABLE_OPS_DEMO_IMAGE" >/dev/null 2>&1 && return 0
  say "building $DURABLE_OPS_DEMO_IMAGE"
  tmp="$(mktemp -d)"
  cp -r "$ctx/." "$tmp/"
  cp /bin/busybox "$tmp/busybox"
  DOCKER_BUILDKIT=0 docker build -q -t "$DURABLE_OPS_DEMO_IMAGE" -t "$DEMO_IMAGE:latest" "$tmp" >"$LOG_DIR/demo-image.log" 2>&1 || { cat "$LOG_DIR/demo-image.log" >&2; rm -rf "$tmp"; die "building the demo image failed"; }
  rm -rf "$tmp"
}

ensure_installed() {
  ensure_apt_packages "$@"
  ensure_node_modules
  ensure_tools
}

ensure_services() {
  ensure_dockerd
  ensure_temporal
  ensure_mailpit
  ensure_demo_image
  local fn
  for fn in "${EXTRA_SERVICES[@]}"; do "$fn"; done
}

# Stop what this session (npm start, or one npm test run) started.
stop_started_by() {
  local list="$RUN_DIR/started-by-$1"
  [ -f "$list" ] || return 0
  tac "$list" | while read -r name; do stop_recorded "$name"; done
  rm -f "$list"
}

for _svc in "$ROOT"/src/stack/services/*.sh; do
  [ -e "$_svc" ] && source "$_svc"
done
unset _svc
