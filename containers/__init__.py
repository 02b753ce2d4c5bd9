"""Podman as the engine of `docker compose` where Docker is not installed (docs/setup.md: "Docker").

The compose file is the one a Docker user runs; nothing here changes it. :mod:`containers.engine`
serves Podman's Docker-compatible API and runs the containers' health checks (Podman leaves them
to systemd, which a container or a bare Debian box may lack); :mod:`containers.stand_ins` builds,
from Debian packages, the official images the file names when no image registry is reachable.
``python -m containers`` does both for a person; ``make compose-test`` for the tests.
"""
