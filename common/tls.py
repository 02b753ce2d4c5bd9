"""TLS to the broker: one way every client checks RabbitMQ's certificate.

An ``amqps://`` URL (and an ``https://`` management URL) is verified against the certificate
authority in RMQ_CA_FILE, or the system's trusted ones when it is empty: the certificate must be
signed by it and name the host the client connected to. Nothing here turns a check off; a broker
that fails it is refused like one that does not answer.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import pika

from common.settings import Settings

AMQPS = "amqps"


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme in (AMQPS, "https")


def client_context(ca_file: str) -> ssl.SSLContext:
    """A context that checks the broker's certificate and name against ``ca_file``
    (RMQ_CA_FILE; empty: the system's authorities)."""
    return ssl.create_default_context(cafile=ca_file or None)


def pika_parameters(url: str, ca_file: str) -> pika.URLParameters:
    """pika's parameters for ``url``; for amqps://, checked with :func:`client_context`.

    pika's own default for amqps:// trusts only the system's authorities: RMQ_CA_FILE would be
    ignored.
    """
    parameters = pika.URLParameters(url)
    if uses_tls(url):
        parameters.ssl_options = pika.SSLOptions(client_context(ca_file), parameters.host)
    return parameters


def celery_ssl(settings: Settings) -> dict[str, Any] | None:
    """Celery's ``broker_use_ssl`` (py-amqp's options), or None for a plain broker."""
    if not any(uses_tls(url) for url in settings.rmq_urls):
        return None
    return {
        "ca_certs": settings.rmq_ca_file or None,
        "cert_reqs": ssl.CERT_REQUIRED,
        # None: kombu puts the host it connects to here, so the name is checked (having made
        # localhost 127.0.0.1 first: secure/make-certs.sh names both). It fills it in once, in
        # this dict: over a list of TLS nodes, a later node's certificate must name the first.
        "server_hostname": None,
    }
