#!/bin/sh
# `docker exec <container> crash [CODE]`: kill the server so the container exits with CODE
# (default 137), as a real crash would (Docker's restart policy treats it as a failure).
echo "${1:-137}" >/tmp/crash-code
kill -KILL "$(cat /tmp/httpd.pid)"
