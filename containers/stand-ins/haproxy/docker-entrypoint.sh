#!/bin/sh
# What the official HAProxy image's entrypoint does, for the stand-in: options alone mean
# haproxy; haproxy runs in the foreground (-db) as a master process (-W) that reloads on SIGUSR2.
set -e

case "${1:-}" in
    -*) set -- haproxy "$@" ;;
esac

if [ "${1:-}" = haproxy ]; then
    shift
    set -- haproxy -W -db "$@"
fi

exec "$@"
