#!/usr/bin/env bash
# Install (if missing) and start a native Redis on 127.0.0.1:6379: Celery's result backend, and
# the shared task store of several API processes (make dev APIS=2).
# Idempotent: run it as often as you like. Used by `make dev` and `make test`.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis: installing redis-server from Debian"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "redis: starting redis-server"
    # An append-only file (fsync once a second): the shared task store (make dev APIS=2) keeps
    # its tasks and its counter across a restart of Redis; Celery's results expire anyway.
    as_root mkdir -p /var/lib/redis
    as_root redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly yes \
        --dir /var/lib/redis --logfile /tmp/redis-demo.log >/dev/null
    for _ in $(seq 30); do
        redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
        sleep 0.5
    done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
echo "redis: ready on 127.0.0.1:6379"
