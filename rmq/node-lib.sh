# Sourced by rmq/cluster.sh and rmq/secure-node.sh: a RabbitMQ node of its own on this machine,
# beside Debian's default node.

# start_node_in DIR NODENAME DIST_PORT: start a node whose config (DIR/rabbitmq.conf), plugins
# (DIR/enabled_plugins), data, logs and pid file all live in DIR. rabbitmq-server reads them from
# the environment, which Debian's switch to the rabbitmq user keeps; other RABBITMQ_* variables
# the caller exports (RABBITMQ_NODE_PORT, say) are kept too. Returns at once: the node boots in
# the background, its output in DIR/log/detached.log.
start_node_in() (
    local dir="$1"
    export RABBITMQ_NODENAME="$2"
    export RABBITMQ_DIST_PORT="$3"
    export RABBITMQ_CONFIG_FILE="${dir}/rabbitmq.conf"
    export RABBITMQ_ENABLED_PLUGINS_FILE="${dir}/enabled_plugins"
    export RABBITMQ_MNESIA_BASE="${dir}/mnesia"
    export RABBITMQ_LOG_BASE="${dir}/log"
    export RABBITMQ_PID_FILE="${dir}/rabbit.pid"
    rabbitmq-server -detached >>"${dir}/log/detached.log" 2>&1
)
