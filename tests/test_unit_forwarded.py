"""TrustedProxies: which peers may name the client, a proxy's name looked up again when needed."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import ip_network

import pytest

from api.forwarded import RESOLVE_EVERY, TrustedProxies


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """What the running loop's getaddrinfo answers, by name; each lookup is counted under ``"?"``."""
    answers: dict[str, list[str]] = {"?": []}

    async def getaddrinfo(host: str, port: object, **_: object) -> list:
        answers["?"].append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))
                for address in answers[host]]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    return answers


async def test_addresses_and_networks_are_trusted_and_nothing_else() -> None:
    proxies = TrustedProxies((ip_network("10.0.0.0/8"), ip_network("::1/128")), ())
    assert await proxies.trust("10.89.0.7")
    assert await proxies.trust("::1")
    assert not await proxies.trust("192.168.1.10")
    # A Unix socket's peer, or nothing an address.
    assert not await proxies.trust("")


async def test_a_name_is_looked_up_again_for_a_new_peer_at_most_every_few_seconds(
    dns: dict[str, list[str]],
) -> None:
    clock = Clock()
    proxies = TrustedProxies((), ("proxy",), clock)
    # Not running yet: nobody is trusted, and the next peer waits for the next lookup.
    assert not await proxies.trust("10.89.0.7")
    dns["proxy"] = ["10.89.0.7"]
    assert not await proxies.trust("10.89.0.7")
    clock.now += RESOLVE_EVERY
    assert await proxies.trust("10.89.0.7")
    assert await proxies.trust("10.89.0.7")
    assert dns["?"] == ["proxy", "proxy"]
    # The container was made again, with another address.
    dns["proxy"] = ["10.89.0.12"]
    clock.now += 1
    assert not await proxies.trust("10.89.0.12")
    clock.now += RESOLVE_EVERY
    assert await proxies.trust("10.89.0.12")
    assert not await proxies.trust("10.89.0.7")
    assert dns["?"] == ["proxy", "proxy", "proxy"]
