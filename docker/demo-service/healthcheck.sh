#!/bin/sh
# Docker HEALTHCHECK: the same /health the engine probes.
port="$(cat /tmp/port 2>/dev/null || echo "${PORT:-8080}")"
exec wget -q -T 5 -O /dev/null "http://127.0.0.1:$port/health"
