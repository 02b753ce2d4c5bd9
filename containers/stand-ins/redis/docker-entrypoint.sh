#!/bin/sh
# What the official Redis image's entrypoint does, for the stand-in: options alone mean
# redis-server; protected mode is off unless a config file sets it (so other containers connect
# without a password), placed first so that options given later still win; the server runs as
# the redis user.
set -eu

case "${1:-}" in
    -*|*.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ]; then
    shift
    config=
    if [ -f "${1:-}" ]; then
        config=$1
        shift
    fi
    if [ -n "$config" ] && grep -q '^protected-mode' "$config"; then
        set -- redis-server "$config" "$@"
    else
        set -- redis-server ${config:+"$config"} --protected-mode no "$@"
    fi
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis '{}' +
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi

exec "$@"
