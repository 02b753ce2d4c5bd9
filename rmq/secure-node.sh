#!/usr/bin/env bash
# The secure mode's RabbitMQ: a node of its own beside the course's node on :5672 (left alone),
# speaking only TLS, with the generated user only.
#
#   ./rmq/secure-node.sh start [DIR]   # rabbit-secure@<host>: AMQPS :5671, management HTTPS :15671
#   ./rmq/secure-node.sh stop          # stop it and delete its data
#
# DIR (default .secure, written by `python -m secure`) holds the certificates and the
# definitions. `start` is idempotent, and a node already running re-reads both: it takes the
# definitions again (a rotated password) and its certificates' files afresh.
set -euo pipefail

HOST="$(hostname -s)"
NODE="rabbit-secure@${HOST}"
# Not under /root or the repository: the node and rabbitmqctl run as the rabbitmq user.
BASE=/var/lib/rabbitmq/demo-secure

if [ "$(id -u)" != 0 ]; then
    exec sudo "$0" "$@"
fi

ctl() { rabbitmqctl -q -n "$NODE" "$@"; }
running() { epmd -names 2>/dev/null | grep -q "^name rabbit-secure at port"; }
# shellcheck source=rmq/node-lib.sh
. "$(dirname "$0")/node-lib.sh"

write_files() {
    local source="$1"
    install -d -o rabbitmq -g rabbitmq -m 700 "$BASE" "${BASE}/mnesia" "${BASE}/log" "${BASE}/tls"
    # Copies the node's user owns: the key readable by it alone.
    install -o rabbitmq -g rabbitmq -m 644 "${source}/ca.pem" "${source}/server.pem" "${BASE}/tls/"
    install -o rabbitmq -g rabbitmq -m 600 "${source}/server.key" "${BASE}/tls/"
    install -o rabbitmq -g rabbitmq -m 600 "${source}/definitions.json" "${BASE}/"
    # The containers' config, with their paths moved to this node's folder.
    sed "s|/etc/rabbitmq/|${BASE}/|g" "$(dirname "$0")/rabbitmq.secure.conf" >"${BASE}/rabbitmq.conf"
    install -o rabbitmq -g rabbitmq -m 644 "$(dirname "$0")/enabled_plugins.secure" \
        "${BASE}/enabled_plugins"
    chown rabbitmq:rabbitmq "${BASE}/rabbitmq.conf"
}

start() {
    local source="${1:-.secure}"
    for file in ca.pem server.pem server.key definitions.json; do
        if [ ! -s "${source}/${file}" ]; then
            echo "secure-node: ${source}/${file} is missing: run python -m secure first" >&2
            exit 1
        fi
    done
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        echo "secure-node: installing rabbitmq-server from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    fi
    write_files "$source"
    if running; then
        # New definitions (a rotated password) and certificate files, without a restart.
        ctl import_definitions "${BASE}/definitions.json" >/dev/null
        ctl eval 'ssl:clear_pem_cache().' >/dev/null
    else
        echo "secure-node: starting ${NODE}"
        start_node_in "$BASE" "$NODE" 25671
        ctl wait --timeout 120 "${BASE}/rabbit.pid" >/dev/null
    fi
    ctl await_startup
    echo "secure-node: ready, AMQPS on :5671, management UI on https://localhost:15671"
}

stop() {
    if running; then
        echo "secure-node: stopping ${NODE}"
        ctl shutdown >/dev/null || true
    fi
    rm -rf "$BASE"
}

case "${1:-}" in
    start) start "${2:-}" ;;
    stop) stop ;;
    *) echo "usage: $0 start [DIR]|stop" >&2; exit 2 ;;
esac
