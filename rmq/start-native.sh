#!/usr/bin/env bash
# Install (if missing) and start a native RabbitMQ with the management UI and the course's user.
# Idempotent: run it as often as you like. Used by `make dev` and `make test`.
set -euo pipefail

RMQ_USER="${RMQ_USER:-student}"
RMQ_PASSWORD="${RMQ_PASSWORD:-qwerty}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# Debian puts rabbitmq-server and rabbitmqctl in /usr/sbin, which a user's PATH leaves out.
PATH="$PATH:/usr/sbin:/sbin"

# Each Debian package here brings the command of its name: the broker, and curl, which asks the
# management UI below whether it is up (a fresh Debian may lack it).
missing=()
for package in rabbitmq-server curl; do
    command -v "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "rmq: installing ${missing[*]} from Debian"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! as_root rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    echo "rmq: starting rabbitmq-server"
    as_root rabbitmq-server -detached
    for _ in $(seq 60); do
        as_root rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break
        sleep 1
    done
    as_root rabbitmq-diagnostics -q ping >/dev/null
fi
# Waits until the node has booted completely (plugins and listeners included).
as_root rabbitmqctl -q await_startup

if ! as_root rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1; then
    as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null
fi

if ! as_root rabbitmqctl -q list_users | grep -q "^${RMQ_USER}\b"; then
    echo "rmq: creating user ${RMQ_USER}"
    as_root rabbitmqctl -q add_user "$RMQ_USER" "$RMQ_PASSWORD"
fi
# Administrator: the management UI shows everything, and tests may create vhosts of their own.
as_root rabbitmqctl -q set_user_tags "$RMQ_USER" administrator
as_root rabbitmqctl -q set_permissions -p / "$RMQ_USER" ".*" ".*" ".*"

# The management listener comes up a moment after the plugin is enabled.
for _ in $(seq 30); do
    curl -fsS -u "$RMQ_USER:$RMQ_PASSWORD" -o /dev/null http://localhost:15672/api/overview && break
    sleep 1
done
echo "rmq: ready, AMQP on :5672, management UI on http://localhost:15672 (${RMQ_USER})"
