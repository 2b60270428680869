# Jaeger v2 (traces): built once from the wrapper module tools/jaeger into the tool cache,
# run with observability/jaeger/config.yaml: in-memory storage, OTLP on 127.0.0.1:4317 (gRPC)
# and :4318 (HTTP), UI and query API on http://127.0.0.1:16686. Sourced by lib.sh.

JAEGER_VERSION="1.76.0"
JAEGER_BIN="$CACHE/tools/jaeger-$JAEGER_VERSION/jaeger"
JAEGER_CONFIG="$ROOT/observability/jaeger/config.yaml"
JAEGER_UI_PORT=16686
JAEGER_OTLP_GRPC_PORT=4317
JAEGER_OTLP_HTTP_PORT=4318
export DURABLE_OPS_JAEGER_UI="${DURABLE_OPS_JAEGER_UI:-http://127.0.0.1:$JAEGER_UI_PORT}"

# `go install` refuses Jaeger's module (it has replace directives), so build the tool pinned in
# tools/jaeger/go.mod from inside that module (lib.sh's cached_build: cache, lock, atomic move).
build_jaeger() { cached_build "$JAEGER_BIN" "Jaeger $JAEGER_VERSION" go_build_tool_into jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger; }

jaeger_up() { port_open "$JAEGER_UI_PORT" && port_open "$JAEGER_OTLP_GRPC_PORT" && port_open "$JAEGER_OTLP_HTTP_PORT"; }

ensure_jaeger() {
  jaeger_up && return 0
  [ -x "$JAEGER_BIN" ] || build_jaeger
  say "starting Jaeger (OTLP 127.0.0.1:$JAEGER_OTLP_GRPC_PORT/:$JAEGER_OTLP_HTTP_PORT, UI :$JAEGER_UI_PORT)"
  start_bg jaeger "$JAEGER_BIN" --config "file:$JAEGER_CONFIG"
  wait_for 60 "Jaeger" jaeger_up
}

EXTRA_TOOLS+=(build_jaeger)
EXTRA_SERVICES+=(ensure_jaeger)
