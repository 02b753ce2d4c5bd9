"""TRUSTED_PROXIES: behind a reverse proxy, the client is the one the proxy names.

Through a proxy every request comes from the proxy's address, and RATE_LIMIT would count all
clients as one. The proxy names the client in ``X-Forwarded-For``, but any client can send that
header too. So it is believed only from a peer TRUSTED_PROXIES lists, and only its last address:
the one that proxy wrote (whatever a client wrote stands before it). One proxy in front of the
API, as in docker-compose.yml.

A proxy given by name (``proxy``, the compose service) is looked up again when a peer not yet
known sends the header, at most every RESOLVE_EVERY seconds: a recreated container has a new
address. aiohttp's access log still shows the peer, the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)

RESOLVE_EVERY = 5.0  # seconds between two lookups of the proxies' names, at most

Address = IPv4Address | IPv6Address


class TrustedProxies:
    def __init__(
        self,
        networks: tuple[IPv4Network | IPv6Network, ...],
        names: tuple[str, ...],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._networks = networks
        self._names = names
        self._clock = clock
        self._resolved: frozenset[Address] = frozenset()
        self._resolved_at: float | None = None

    async def trust(self, peer: str) -> bool:
        """Whether ``peer``, the connection's remote address, is one of the proxies."""
        address = _address(peer)
        if address is None:
            return False
        if any(address in network for network in self._networks) or address in self._resolved:
            return True
        now = self._clock()
        if not self._names or (
            self._resolved_at is not None and now - self._resolved_at < RESOLVE_EVERY
        ):
            return False
        self._resolved_at = now
        self._resolved = await self._resolve()
        return address in self._resolved

    async def _resolve(self) -> frozenset[Address]:
        loop = asyncio.get_running_loop()
        found: set[Address] = set()
        for name in self._names:
            try:
                answers = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except OSError as exc:  # not running yet, or no such name
                log.info("TRUSTED_PROXIES: %s does not resolve (%s)", name, exc)
                continue
            found.update(address for *_, sockaddr in answers
                         if (address := _address(sockaddr[0])) is not None)
        log.info("TRUSTED_PROXIES: %s", ", ".join(sorted(map(str, found))) or "no address")
        return frozenset(found)


def forwarded_client(proxies: TrustedProxies) -> Middleware:
    """The request as from the client its proxy names in X-Forwarded-For, if the proxy is trusted."""

    @web.middleware
    async def client_behind_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
        if forwarded and request.remote is not None and await proxies.trust(request.remote):
            client = _address(forwarded[-1].rsplit(",", 1)[-1].strip())
            if client is not None:
                request = request.clone(remote=str(client))
        return await handler(request)

    return client_behind_proxy


def _address(text: str) -> Address | None:
    """An IP address as written, or None (a Unix socket's peer, a port or garbage in the header)."""
    try:
        return ip_address(text)
    except ValueError:
        return None
