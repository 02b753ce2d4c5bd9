#!/bin/sh
# Control the services of a running `make dev`: ./ctl status, ./ctl stop consumer:consumer-0,
# ./ctl start consumer:*, ./ctl signal KILL celery_worker:celery_worker-0, ./ctl tail -f api
cd "$(dirname "$0")" || exit 1
if [ ! -S .state/supervisor.sock ]; then
    echo "ctl: make dev is not running (no .state/supervisor.sock)" >&2
    exit 1
fi
exec .venv/bin/supervisorctl --configuration .state/supervisord.conf "$@"
