"""TRUSTED_PROXIES: behind a reverse proxy, the client is the one the proxy names.

Through a proxy every request comes from the proxy's address, and RATE_LIMIT would count all
clients as one. The proxy names the client in ``X-Forwarded-For``, but any client can send that
header too. So it is believed only from a peer TRUSTED_PROXIES lists, and only its last address:
the one that proxy wrote (whatever a client wrote stands before it). One proxy in front of the
API, as in docker-compose.yml.

A proxy given by name (``proxy``, the compose service) is looked up when a peer not known yet
sends the header: it may be the proxy, made anew with a new address. The lookup runs in the
background and that one request counts as the peer's own, because no request may wait for DNS:
a lookup can hang for as long as the resolver's timeouts (40 s was seen while a container's name
was not registered yet). aiohttp's access log still shows the peer, the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)

RESOLVE_EVERY = 1.0  # seconds between two lookups of the proxies' names, at least

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
        self._lookup: asyncio.Task[None] | None = None
        self._looked_up_at: float | None = None

    def trust(self, peer: str) -> bool:
        """Whether ``peer``, the connection's remote address, is one of the proxies."""
        address = _address(peer)
        if address is None:
            return False
        if any(address in network for network in self._networks) or address in self._resolved:
            return True
        self._look_up_soon()
        return False

    async def close(self) -> None:
        if self._lookup is not None:
            self._lookup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lookup

    def _look_up_soon(self) -> None:
        """Look the names up in the background: one lookup at a time, one a second at most."""
        now = self._clock()
        if (not self._names or (self._lookup is not None and not self._lookup.done())
                or (self._looked_up_at is not None and now - self._looked_up_at < RESOLVE_EVERY)):
            return
        self._looked_up_at = now
        self._lookup = asyncio.create_task(self._resolve())

    async def _resolve(self) -> None:
        loop = asyncio.get_running_loop()
        found: set[Address] = set()
        for name in self._names:
            try:
                answers = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except OSError:  # not running, or no such name: nobody to trust by that name
                continue
            found.update(address for *_, sockaddr in answers
                         if (address := _address(sockaddr[0])) is not None)
        if found != self._resolved:
            log.info("TRUSTED_PROXIES: %s", ", ".join(sorted(map(str, found))) or "no address")
            self._resolved = frozenset(found)


def forwarded_client(proxies: TrustedProxies) -> Middleware:
    """The request as from the client its proxy names in X-Forwarded-For, if the proxy is trusted."""

    @web.middleware
    async def client_behind_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
        if forwarded and request.remote is not None and proxies.trust(request.remote):
            client = _address(forwarded[-1].rsplit(",", 1)[-1].strip())
            if client is not None:
                request = request.clone(remote=str(client))
        return await handler(request)

    return client_behind_proxy


def lookups_ctx(proxies: TrustedProxies) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx: a lookup still running when the application stops is cancelled."""

    async def lookups(app: web.Application) -> AsyncIterator[None]:
        yield
        await proxies.close()

    return lookups


def _address(text: str) -> Address | None:
    """An IP address as written, or None (a Unix socket's peer, a port or garbage in the header)."""
    try:
        return ip_address(text)
    except ValueError:
        return None
