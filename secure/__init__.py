"""The secure mode's files: strong credentials, the broker's certificates, its definitions.

``python -m secure`` writes them into ``.secure/`` (git-ignored) the first time and keeps them
afterwards; ``--rotate`` makes new credentials. ``SECURE=1 make dev`` and the compose override
docker-compose.secure.yml read them:

- ``secrets.json``: the broker user's password, API_TOKEN, CALLBACK_TOKEN and Flower's password
  (readable by the owner only);
- ``secure.env`` for ``make dev`` and ``compose.env`` for ``docker compose --env-file``: every
  setting of the checklist (common.settings.Settings.validate_secure), the secrets included;
- ``definitions.json``: the broker's user, made from the same password (rmq.definitions), with
  the demo's topology; the course's student is not in it, so the broker refuses it;
- ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key``: a certificate authority of the
  demo's own and the broker's certificate (secure/make-certs.sh, openssl).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import subprocess
from pathlib import Path

from common.settings import Settings
from rmq.definitions import definitions_for, render
from runner.procfile import ROOT

log = logging.getLogger(__name__)

SECURE_DIR = ROOT / ".secure"
MAKE_CERTS = Path(__file__).with_name("make-certs.sh")
SECURE_NODE = ROOT / "rmq" / "secure-node.sh"
# Not the course's student: a name of its own makes plain that the credentials are new.
RMQ_USER = "demo"
AMQPS_PORT = 5671
MANAGEMENT_PORT = 15671
# Per client, on the requests that change state: a class clicking through the page stays far
# below it, a script hammering the API does not.
RATE_LIMIT = "60/minute"
# Where the containers find the certificate authority (docker-compose.secure.yml mounts it).
CONTAINER_CA_FILE = "/run/secure/ca.pem"


@dataclasses.dataclass(frozen=True)
class Secrets:
    rmq_password: str
    api_token: str
    callback_token: str
    # Flower's web UI and API, which can revoke tasks and stop workers (FLOWER_BASIC_AUTH).
    flower_password: str

    @classmethod
    def new(cls) -> Secrets:
        # 32 random bytes each, URL-safe: they go into a URL and env files unquoted.
        return cls(*(secrets.token_urlsafe(32) for _ in dataclasses.fields(cls)))


def ensure(directory: Path = SECURE_DIR, rotate: bool = False,
           names: tuple[str, ...] = ()) -> Secrets:
    """Write what is missing in ``directory`` (everything, the first time); ``rotate``: new secrets.

    ``names``: host names or addresses the broker is also reached under (a teacher's machine),
    put into its certificate when that is made.
    """
    directory.mkdir(mode=0o700, exist_ok=True)
    # The machine's other users cannot reach the files in it, whatever the files' own modes.
    directory.chmod(0o700)
    secrets_path = directory / "secrets.json"
    kept = {} if rotate or not secrets_path.exists() else json.loads(secrets_path.read_text())
    # A secret the file lacks (one a newer version added) is made; the others are kept.
    found = Secrets(**{**dataclasses.asdict(Secrets.new()), **kept})
    if dataclasses.asdict(found) != kept:
        secrets_path.touch(mode=0o600)
        secrets_path.write_text(json.dumps(dataclasses.asdict(found), indent=2) + "\n")
        log.info("secure: credentials written to %s", secrets_path)
    made = subprocess.run([str(MAKE_CERTS), str(directory), *names], capture_output=True,
                          text=True)
    if made.returncode != 0:
        raise RuntimeError(f"{MAKE_CERTS.name} failed: {made.stderr.strip() or made.stdout}")
    # The broker in a container reads the key as a user of its own: the directory, not the
    # file, keeps it from the machine's other users.
    (directory / "server.key").chmod(0o644)
    _write_definitions(directory / "definitions.json", found)
    for name, values in (("secure.env", native_env(found, directory)),
                         ("compose.env", compose_env(found, directory))):
        path = directory / name
        path.touch(mode=0o600)
        path.write_text("# Written by python -m secure; holds secrets: never commit it.\n"
                        + "".join(f"{key}={value}\n" for key, value in values.items()))
    return found


def native_env(found: Secrets, directory: Path) -> dict[str, str]:
    """``make dev``'s settings: the secure node on this machine (rmq/secure-node.sh)."""
    return {
        **_common_env(found),
        "RMQ_URL": _amqps_url(found, "localhost"),
        "RMQ_CA_FILE": str(directory / "ca.pem"),
        "RMQ_MANAGEMENT_URL": f"https://localhost:{MANAGEMENT_PORT}/",
        "RMQ_MANAGEMENT_PUBLIC_URL": f"https://localhost:{MANAGEMENT_PORT}/",
    }


def compose_env(found: Secrets, directory: Path) -> dict[str, str]:
    """docker-compose.secure.yml's variables: the broker is the service rmq."""
    return {
        **_common_env(found),
        "RMQ_URL": _amqps_url(found, "rmq"),
        "RMQ_CA_FILE": CONTAINER_CA_FILE,
        "RMQ_MANAGEMENT_URL": f"https://rmq:{MANAGEMENT_PORT}/",
        "RMQ_MANAGEMENT_PUBLIC_URL": f"https://localhost:{MANAGEMENT_PORT}/",
        # The files the override mounts, relative to the compose file.
        "SECURE_DIR": os.path.relpath(directory, ROOT),
    }


def _common_env(found: Secrets) -> dict[str, str]:
    return {
        "SECURE": "1",
        "API_TOKEN": found.api_token,
        "CALLBACK_TOKEN": found.callback_token,
        "RATE_LIMIT": RATE_LIMIT,
        "LOG_FORMAT": "json",
        # Read by Flower itself.
        "FLOWER_BASIC_AUTH": f"{RMQ_USER}:{found.flower_password}",
    }


def _amqps_url(found: Secrets, host: str) -> str:
    return f"amqps://{RMQ_USER}:{found.rmq_password}@{host}:{AMQPS_PORT}/"


def _write_definitions(path: Path, found: Secrets) -> None:
    previous = json.loads(path.read_text()) if path.exists() else None
    settings = Settings(rmq_url=_amqps_url(found, "localhost"))
    path.write_text(render(definitions_for(settings, previous)))


def read_env(path: Path) -> dict[str, str]:
    """An env file this module wrote, as a mapping (Settings.from_env takes it)."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def node_running() -> bool:
    """Whether rmq/secure-node.sh's node runs (it is registered with epmd)."""
    names = subprocess.run(["epmd", "-names"], capture_output=True, text=True).stdout
    return "name rabbit-secure at port" in names


def start_node(directory: Path = SECURE_DIR) -> None:
    """Start the secure node with ``directory``'s files, or make a running one take them."""
    subprocess.run([str(SECURE_NODE), "start", str(directory)], check=True, capture_output=True,
                   timeout=180)


def stop_node() -> None:
    subprocess.run([str(SECURE_NODE), "stop"], check=True, capture_output=True, timeout=120)
