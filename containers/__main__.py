"""``python -m containers serve|stand-ins|fresh-box``: the compose file on Podman, for a person.

    python -m containers stand-ins   # build the official images' stand-ins (no registry here)
    python -m containers serve       # Podman's API and the health checks, until Ctrl-C
    DOCKER_HOST=unix:///run/rmq-demo/podman.sock docker-compose up --build   # another terminal
    python -m containers fresh-box [--secure]   # the quick start on a bare Debian 12, timed
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from containers import engine, stand_ins
from runner.procfile import ROOT

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


def fresh_box(secure: bool) -> int:
    """The README's quick start in a container of a bare Debian 12 (debootstrap's minbase: no
    Python, no curl, no openssl), on a clone of this repository's HEAD: what a student with a
    new machine meets, timed by containers/fresh-box.sh. Minutes, and the network to Debian's
    mirror and PyPI: a maintainer's check, not part of `make test`."""
    if not stand_ins.exists(f"{stand_ins.BASE_IMAGE}:bookworm"):
        stand_ins.build_base("bookworm")
    with tempfile.TemporaryDirectory(prefix="rmq-demo-fresh-") as tmp:
        clone = Path(tmp) / "demo"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        script = Path(__file__).with_name("fresh-box.sh")
        result = engine.podman(
            "run", "--rm", "--env", f"DEV=make dev{' SECURE=1' if secure else ''}",
            "--volume", f"{clone}:/src:ro", "--volume", f"{script}:/fresh-box.sh:ro",
            # This machine reaches PyPI through its own certificate authority (as the stand-ins).
            "--volume", f"{stand_ins.HOST_CA_BUNDLE}:/host-ca.crt:ro", "--env",
            "PIP_CERT=/host-ca.crt",
            f"{stand_ins.BASE_IMAGE}:bookworm", "bash", "/fresh-box.sh",
            timeout=1800, check=False,
        )
    for line in (result.stdout + (result.stderr if result.returncode else "")).splitlines():
        log.info("%s", line)
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m containers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="Podman's Docker API and health checks")
    serve_parser.add_argument("--socket", type=Path, default=engine.DEFAULT_SOCKET)
    commands.add_parser("stand-ins", help="build the missing official images from Debian packages")
    fresh = commands.add_parser("fresh-box", help="the quick start on a bare Debian 12, timed")
    fresh.add_argument("--secure", action="store_true", help="make dev SECURE=1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        serve(args.socket)
    elif args.command == "fresh-box":
        return fresh_box(args.secure)
    else:
        build_stand_ins()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
