#!/bin/bash
# The broker's health check in docker-compose.yml: healthy once AMQP and the management UI accept
# connections, on the ports given (docker-compose.secure.yml: the TLS ones) or the plain ones. RabbitMQ opens its listeners only after the definitions are imported, so a service
# that waits for this never meets a broker without its user or queues.
#
# Plain bash rather than `rabbitmq-diagnostics check_port_connectivity`, which says the same but
# starts an Erlang VM for every check: about a second of CPU, every 5 s, per node.
ports=("$@")
[ ${#ports[@]} -gt 0 ] || ports=(5672 15672)
for port in "${ports[@]}"; do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port does not accept connections yet"
        exit 1
    fi
done
