#!/bin/sh
# Docker HEALTHCHECK: the same /health the engine probes. (No `-T`: Debian's static busybox
# wget segfaults with it; Docker's own --timeout bounds the check.)
port="$(cat /tmp/port 2>/dev/null || echo "${PORT:-8080}")"
exec wget -q -O /dev/null "http://127.0.0.1:$port/health"
