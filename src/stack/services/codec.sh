# Payload encryption: the codec keys and the codec server for the Temporal UI. Sourced by lib.sh.
#   keys    $DATA/codec/keys.json (0600, one fresh AES-256 key "k1" the first time; see src/codec/codec.ts)
#   token   $DATA/codec/token     (0600, the codec server's bearer token, generated once)
#   server  http://127.0.0.1:$CODEC_PORT (POST /encode, /decode; sign-in page /login), src/codec/main.ts;
#           the dev server's UI points at it (--ui-codec-endpoint in ensure_temporal).

CODEC_DIR="$DATA/codec"
export DURABLE_OPS_CODEC_PORT="$CODEC_PORT"
export DURABLE_OPS_CODEC_URL="http://127.0.0.1:$CODEC_PORT"
export DURABLE_OPS_CODEC_CORS_ORIGINS="${DURABLE_OPS_CODEC_CORS_ORIGINS:-http://127.0.0.1:$TEMPORAL_UI_PORT,http://localhost:$TEMPORAL_UI_PORT}"

# private_file FILE CONTENT: create FILE (0600) unless it exists; never replaces one.
private_file() {
  [ -e "$1" ] && return 0
  (
    umask 077
    local tmp; tmp="$(mktemp "$1.XXXX")"
    printf '%s\n' "$2" >"$tmp"
    mv -n "$tmp" "$1"
    rm -f "$tmp"
  )
}

ensure_codec_secrets() {
  (umask 077 && mkdir -p "$CODEC_DIR")
  chmod 700 "$CODEC_DIR"
  if [ -z "${DURABLE_OPS_CODEC_KEY:-}" ] && [ -z "${DURABLE_OPS_CODEC_KEYS_FILE:-}" ]; then
    private_file "$CODEC_DIR/keys.json" "{ \"current\": \"k1\", \"keys\": { \"k1\": \"$(head -c 32 /dev/urandom | base64 -w0)\" } }"
  fi
  [ -n "${DURABLE_OPS_CODEC_TOKEN_FILE:-}" ] || private_file "$CODEC_DIR/token" "$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
}

ensure_codec_server() {
  ensure_codec_secrets
  port_open "$CODEC_PORT" && return 0
  say "starting the codec server on 127.0.0.1:$CODEC_PORT (token: ${DURABLE_OPS_CODEC_TOKEN_FILE:-$CODEC_DIR/token})"
  (cd "$ROOT" && start_bg codec-server "$(command -v node)" --import tsx "$ROOT/src/codec/main.ts")
  codec_ready() {
    port_open "$CODEC_PORT" && return 0
    local pid; pid="$(head -1 "$RUN_DIR/codec-server.pid")"
    [ -d "/proc/$pid" ] || { tail -20 "$LOG_DIR/codec-server.log" >&2; die "the codec server exited at start"; }
    return 1
  }
  wait_for 30 "the codec server" codec_ready
}

EXTRA_SERVICES+=(ensure_codec_server)
