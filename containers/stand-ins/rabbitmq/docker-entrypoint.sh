#!/bin/bash
# What the official RabbitMQ image's entrypoint does, for the stand-in: the server runs as the
# rabbitmq user and owns its data directory (a new named volume starts owned by root).
set -euo pipefail

if [[ "$1" == rabbitmq* ]] && [ "$(id -u)" = 0 ]; then
    if [ "$1" = rabbitmq-server ]; then
        find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq:rabbitmq '{}' +
    fi
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# Nodes of one cluster share RABBITMQ_ERLANG_COOKIE. The server reads the variable itself; the
# file lets `rabbitmqctl` (run by `docker exec` or a health check) authenticate with it too.
cookie_file=/var/lib/rabbitmq/.erlang.cookie
if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ] && [ ! -e "$cookie_file" ]; then
    (umask 077 && printf '%s' "$RABBITMQ_ERLANG_COOKIE" > "$cookie_file")
fi

exec "$@"
