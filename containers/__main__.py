"""``python -m containers serve|stand-ins``: the compose file on Podman, for a person.

    python -m containers stand-ins   # build the official images' stand-ins (no registry here)
    python -m containers serve       # Podman's API and the health checks, until Ctrl-C
    DOCKER_HOST=unix:///run/rmq-demo/podman.sock docker-compose up --build   # another terminal
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from containers import engine, stand_ins

log = logging.getLogger("containers")


def serve(socket: Path) -> None:
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with engine.running_engine(socket) as service:
        log.info("ready: export DOCKER_HOST=%s CONTAINERS_CONF=%s, then docker-compose up --build",
                 service.docker_host, engine.CONTAINERS_CONF)
        stopped.wait()
    log.info("stopped")


def build_stand_ins() -> None:
    config = stand_ins.compose_config(engine.COMPOSE, engine.podman_env())
    built = stand_ins.build_missing(stand_ins.official_images(config))
    log.info("stand-ins built: %s", ", ".join(built) or "none needed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m containers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="Podman's Docker API and health checks")
    serve_parser.add_argument("--socket", type=Path, default=engine.DEFAULT_SOCKET)
    commands.add_parser("stand-ins", help="build the missing official images from Debian packages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        serve(args.socket)
    else:
        build_stand_ins()


if __name__ == "__main__":
    main()
