"""Generate ``rmq/definitions.json``, which RabbitMQ imports at boot, from ``common.topology``.

The file declares the vhost, the course user with a salted password hash (never the password
itself), its permissions, and exactly the exchanges, queues and bindings the services declare,
so whichever side comes first, nobody gets PRECONDITION_FAILED.

    python -m rmq.definitions                  # rewrite the committed file: the course defaults
    python -m rmq.definitions --queue-type quorum   # rmq/definitions.quorum.json, for a cluster
    RMQ_URL=amqp://student:secret@localhost:5672/ \
        python -m rmq.definitions --from-env --output rmq/definitions.local.json

Rewriting a file whose hash already matches the password keeps its salt, so regenerating an
up-to-date file changes nothing and ``git diff`` stays quiet.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import topology
from common.settings import Settings

log = logging.getLogger(__name__)

DEFINITIONS_PATH = Path(__file__).with_name("definitions.json")
# The cluster's nodes (compose profile "cluster") load the quorum queues' definitions.
QUORUM_DEFINITIONS_PATH = Path(__file__).with_name("definitions.quorum.json")
# The committed file of each queue type.
PATHS = {topology.CLASSIC: DEFINITIONS_PATH, topology.QUORUM: QUORUM_DEFINITIONS_PATH}
HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
SALT_LENGTH = 4
# The course user opens the management UI, and the API reads queue statistics from its HTTP API.
USER_TAGS = ["administrator"]


def hash_password(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    if salt is None:
        salt = secrets.token_bytes(SALT_LENGTH)
    if len(salt) != SALT_LENGTH:
        raise ValueError(f"RabbitMQ salts are {SALT_LENGTH} bytes, got {len(salt)}")
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def salt_of(password_hash: str) -> bytes:
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except binascii.Error:
        raise ValueError("the password hash is not base64") from None
    if len(raw) != SALT_LENGTH + hashlib.sha256().digest_size:
        raise ValueError("the password hash is not a salted SHA-256")
    return raw[:SALT_LENGTH]


def check_password(password: str, password_hash: str) -> bool:
    expected = hash_password(password, salt_of(password_hash))
    return hmac.compare_digest(expected, password_hash)


def build_definitions(
    user: str, password_hash: str, vhost: str = "/", queue_type: str = topology.CLASSIC
) -> dict[str, Any]:
    """The whole document: who may log in, and the topology every service declares."""
    return {
        "users": [
            {
                "name": user,
                "password_hash": password_hash,
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": USER_TAGS,
                "limits": {},
            }
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
        ],
        "exchanges": [
            {
                "name": exchange.name,
                "vhost": vhost,
                "type": exchange.type,
                "durable": exchange.durable,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for exchange in topology.EXCHANGES
        ],
        "queues": [
            {
                "name": queue.name,
                "vhost": vhost,
                "durable": queue.durable,
                "auto_delete": False,
                "arguments": dict(queue.arguments),
            }
            for queue in topology.queues(queue_type)
        ],
        "bindings": [
            {
                "source": binding.exchange,
                "vhost": vhost,
                "destination": binding.queue,
                "destination_type": "queue",
                "routing_key": binding.routing_key,
                "arguments": {},
            }
            for binding in topology.BINDINGS
        ],
    }


def render(definitions: dict[str, Any]) -> str:
    return json.dumps(definitions, indent=2, ensure_ascii=False) + "\n"


def definitions_for(settings: Settings, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Definitions for the user, password and vhost of ``settings.rmq_url``, with the queues
    of ``settings.rmq_queue_type``.

    The salt of ``previous`` is reused when its hash is already right for this user and password.
    """
    user, password = settings.rmq_user, settings.rmq_password
    password_hash = _matching_hash(previous or {}, user, password) or hash_password(password)
    return build_definitions(user, password_hash, settings.rmq_vhost, settings.rmq_queue_type)


def _matching_hash(previous: dict[str, Any], user: str, password: str) -> str | None:
    for entry in previous.get("users", []):
        candidate = entry.get("password_hash")
        if entry.get("name") != user or not isinstance(candidate, str):
            continue
        try:
            if check_password(password, candidate):
                return candidate
        except ValueError:
            continue
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rmq.definitions", description="Write the broker's boot-time definitions."
    )
    parser.add_argument(
        "--output", "-o", type=Path,
        help=f"default: {DEFINITIONS_PATH.name}, or {QUORUM_DEFINITIONS_PATH.name} for quorum",
    )
    parser.add_argument(
        "--from-env",
        action="store_true",
        help="take the user, password, vhost and queue type from RMQ_URL and RMQ_QUEUE_TYPE"
        " instead of the course defaults",
    )
    parser.add_argument("--queue-type", choices=topology.QUEUE_TYPES, help="overrides the above")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # The default ignores the environment on purpose: the committed file must not pick up
    # whatever RMQ_URL happens to be exported in the shell that regenerates it.
    settings = Settings.from_env_or_exit() if args.from_env else Settings()
    if args.queue_type:
        settings = dataclasses.replace(settings, rmq_queue_type=args.queue_type)
    if args.output is None:
        args.output = PATHS[settings.rmq_queue_type]
    previous = None
    if args.output.exists():
        try:
            previous = json.loads(args.output.read_text(encoding="utf-8"))
        except ValueError:
            log.warning("%s is not valid JSON; writing it afresh", args.output)
    args.output.write_text(render(definitions_for(settings, previous)), encoding="utf-8")
    log.info("wrote %s for user %r on vhost %r, %s queues",
             args.output, settings.rmq_user, settings.rmq_vhost, settings.rmq_queue_type)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
