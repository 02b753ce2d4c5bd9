"""The real broker as the runner uses it: scratch vhosts, queue state, the local node's control."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import requests

from common.settings import URL_SEPARATOR, Settings, split_urls
from common.tls import pika_parameters

SCRATCH_PREFIX = "test-"
STALE_AFTER = 3600.0  # seconds: no test or bench run lasts this long


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run rabbitmqctl against the local node (through sudo when not root); fail with its output."""
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    result = subprocess.run(
        [*as_root, "rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"rabbitmqctl {' '.join(args)}: {result.stdout}{result.stderr}"
    return result


def connect(rmq_url: str, ca_file: str = "") -> pika.BlockingConnection:
    """A connection to the first node of ``rmq_url`` (one URL or several) that answers;
    ``ca_file`` checks an amqps:// broker (RMQ_CA_FILE)."""
    return pika.BlockingConnection([pika_parameters(url, ca_file) for url in split_urls(rmq_url)])


def queue_state(rmq_url: str, queue: str, ca_file: str = "") -> tuple[int, int]:
    """(messages ready, consumers) of a queue, exact and immediate: a passive declare."""
    connection = connect(rmq_url, ca_file)
    try:
        result = connection.channel().queue_declare(queue, passive=True)
        return result.method.message_count, result.method.consumer_count
    finally:
        connection.close()


def purge(rmq_url: str, *queues: str, ca_file: str = "") -> None:
    connection = connect(rmq_url, ca_file)
    try:
        channel = connection.channel()
        for queue in queues:
            try:
                channel.queue_purge(queue)
            except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nothing to purge
                channel = connection.channel()
    finally:
        connection.close()


def with_vhost(rmq_url: str, vhost: str) -> str:
    """``rmq_url`` on another vhost: each URL of a ";"-separated list of nodes."""
    return URL_SEPARATOR.join(
        urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe="")))
        for url in split_urls(rmq_url)
    )


def management_session(settings: Settings) -> requests.Session:
    """A session for the management API, logged in as ``settings`` say (over https, the broker's
    certificate checked against RMQ_CA_FILE, as every client checks it)."""
    session = requests.Session()
    session.auth = (settings.rmq_user, settings.rmq_password)
    if settings.rmq_ca_file:
        session.verify = settings.rmq_ca_file
        # Else REQUESTS_CA_BUNDLE, where it is set, would win over the session's own CA
        # (psf/requests#4726); the environment's proxies and .netrc go with it: a broker of
        # this machine or its network needs neither.
        session.trust_env = False
    return session


def management_url(settings: Settings, path: str) -> str:
    """The first node's management API: enough for set-up and clean-up of a test."""
    return settings.rmq_management_urls[0].rstrip("/") + "/api/" + path


@contextlib.contextmanager
def scratch_vhost(base_settings: Settings, management: requests.Session) -> Iterator[str]:
    """A new, empty vhost on the real broker, deleted afterwards with everything in it.

    Its name carries its birth time, so that vhosts left by a run that was killed can be swept
    away later (see :func:`sweep_stale_vhosts`).
    """
    name = f"{SCRATCH_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:6]}"
    quoted = quote(name, safe="")
    management.put(management_url(base_settings, f"vhosts/{quoted}"), timeout=10).raise_for_status()
    management.put(
        management_url(base_settings, f"permissions/{quoted}/{quote(base_settings.rmq_user)}"),
        json={"configure": ".*", "write": ".*", "read": ".*"},
        timeout=10,
    ).raise_for_status()
    try:
        yield name
    finally:
        management.delete(management_url(base_settings, f"vhosts/{quoted}"), timeout=30)


def sweep_stale_vhosts(base_settings: Settings, management: requests.Session) -> list[str]:
    """Delete scratch vhosts older than an hour: a test or bench run killed midway leaves its own."""
    response = management.get(management_url(base_settings, "vhosts"), timeout=10)
    response.raise_for_status()
    stale = []
    for vhost in response.json():
        name = vhost["name"]
        born = name.removeprefix(SCRATCH_PREFIX).split("-")[0]
        old = born.isdigit() and time.time() - int(born) > STALE_AFTER
        if name.startswith(SCRATCH_PREFIX) and old:
            management.delete(
                management_url(base_settings, f"vhosts/{quote(name, safe='')}"), timeout=30
            )
            stale.append(name)
    return stale
