#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside the main node on :5672 (left alone).
#
#   ./rmq/cluster.sh start    # rabbit-1..3@<host>, AMQP :5681-5683, management :15681-15683
#   ./rmq/cluster.sh status   # the members, and which node leads each queue
#   ./rmq/cluster.sh stop     # stop the three nodes and delete their data
#
# `start` is idempotent: a node already running is left as it is, a stopped one (killed, say)
# is started again on its old data and rejoins the cluster by itself.
set -euo pipefail

RMQ_USER="${RMQ_USER:-student}"
RMQ_PASSWORD="${RMQ_PASSWORD:-qwerty}"
NODES=(1 2 3)
HOST="$(hostname -s)"
# Not under /root or the repository: the nodes and rabbitmqctl run as the rabbitmq user.
BASE=/var/lib/rabbitmq/demo-cluster
# The Debian package's cookie: a node lets in only those that know the same one.
COOKIE=/var/lib/rabbitmq/.erlang.cookie

# Every rabbitmq-* command below changes to the rabbitmq user through Debian's wrapper; that
# needs root, and so does writing under /var/lib/rabbitmq.
if [ "$(id -u)" != 0 ]; then
    exec sudo --preserve-env=RMQ_USER,RMQ_PASSWORD "$0" "$@"
fi

node_name() { echo "rabbit-$1@${HOST}"; }
node_dir() { echo "${BASE}/rabbit-$1"; }
amqp_port() { echo $((5680 + $1)); }
management_port() { echo $((15680 + $1)); }
ctl() { local n="$1"; shift; rabbitmqctl -q -n "$(node_name "$n")" "$@"; }
# Whether the node's Erlang VM runs: it is registered with epmd, which answers at once.
running() { epmd -names 2>/dev/null | grep -q "^name rabbit-$1 at port"; }
# shellcheck source=rmq/node-lib.sh
. "$(dirname "$0")/node-lib.sh"

# Starts one node with its own name, ports, config, plugins, data and logs.
start_node() (
    export RABBITMQ_NODE_PORT="$(amqp_port "$1")"
    start_node_in "$(node_dir "$1")" "$(node_name "$1")" $((25680 + $1))
)

install_rabbitmq() {
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        echo "cluster: installing rabbitmq-server from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    fi
    # Written by the first node that boots; three booting at once must not race for it.
    if [ ! -s "$COOKIE" ]; then
        head -c 20 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$COOKIE"
        chown rabbitmq:rabbitmq "$COOKIE"
        chmod 400 "$COOKIE"
    fi
}

write_node_files() {
    local n="$1" dir
    dir="$(node_dir "$n")"
    install -d -o rabbitmq -g rabbitmq "$dir" "${dir}/mnesia" "${dir}/log"
    # Peer discovery: a blank node joins the listed nodes that already run; RabbitMQ takes a
    # lock among them, so the three may boot at the same time and still form one cluster.
    {
        echo "# Node rabbit-${n}, written by rmq/cluster.sh; the AMQP port is RABBITMQ_NODE_PORT."
        echo "management.tcp.port = $(management_port "$n")"
        echo "cluster_formation.peer_discovery_backend = classic_config"
        for peer in "${NODES[@]}"; do
            echo "cluster_formation.classic_config.nodes.${peer} = $(node_name "$peer")"
        done
    } >"${dir}/rabbitmq.conf"
    echo "[rabbitmq_management]." >"${dir}/enabled_plugins"
    chown rabbitmq:rabbitmq "${dir}/rabbitmq.conf" "${dir}/enabled_plugins"
}

start() {
    install_rabbitmq
    for n in "${NODES[@]}"; do
        if running "$n"; then
            continue
        fi
        write_node_files "$n"
        echo "cluster: starting $(node_name "$n")"
        start_node "$n"
    done
    for n in "${NODES[@]}"; do
        # Waits for the pid file the node writes, then for the node to boot completely.
        ctl "$n" wait --timeout 120 "$(node_dir "$n")/rabbit.pid" >/dev/null
    done
    ctl 1 await_online_nodes "${#NODES[@]}" --timeout 120

    # Users and permissions live in the cluster's shared metadata: set once, every node has them.
    if ! ctl 1 list_users | grep -q "^${RMQ_USER}\b"; then
        ctl 1 add_user "$RMQ_USER" "$RMQ_PASSWORD" >/dev/null
    fi
    ctl 1 set_user_tags "$RMQ_USER" administrator >/dev/null
    ctl 1 set_permissions -p / "$RMQ_USER" ".*" ".*" ".*" >/dev/null
    for n in "${NODES[@]}"; do
        echo "cluster: $(node_name "$n") AMQP :$(amqp_port "$n")," \
            "management http://localhost:$(management_port "$n")"
    done
}

stop() {
    local pids=() n pid
    for n in "${NODES[@]}"; do
        if running "$n"; then
            echo "cluster: stopping $(node_name "$n")"
            # `stop` returns before the VM is gone; `shutdown` waits for the process to exit.
            ctl "$n" shutdown >/dev/null &
            pids+=($!)
            continue
        fi
        # A VM that no longer answers (hung, say) cannot be asked to stop. The pid file may be
        # stale and its number reused, so only an Erlang VM of that number is killed.
        pid="$(cat "$(node_dir "$n")/rabbit.pid" 2>/dev/null || true)"
        if [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid")" = beam.smp ]; then
            kill -KILL "$pid"
        fi
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || true
    done
    rm -rf "$BASE"
    echo "cluster: stopped, data removed"
}

status() {
    local n
    for n in "${NODES[@]}"; do
        if running "$n"; then
            echo "Asked $(node_name "$n"):"
            # The members, then those that run (a node after stop_app is one that does not).
            ctl "$n" cluster_status | sed -n '/Disk Nodes/,/Versions/p' | sed '$d'
            echo "Queues on vhost /: name, type, leader, members"
            ctl "$n" list_queues -p / name type leader members
            return 0
        fi
    done
    echo "cluster: no node is running" >&2
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
