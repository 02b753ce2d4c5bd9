"""TrustedProxies: which peers may name the client; a proxy's name looked up again, never while a
request waits."""

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
    """What the running loop's getaddrinfo answers, by name; each lookup is counted under ``"?"``,
    and a lookup of ``"slow"`` waits until ``dns["slow"]`` is filled."""
    answers: dict[str, list[str]] = {"?": []}

    async def getaddrinfo(host: str, port: object, **_: object) -> list:
        answers["?"].append(host)
        while host == "slow" and host not in answers:
            await asyncio.sleep(0.01)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))
                for address in answers[host]]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    return answers


async def looked_up() -> None:
    """Let a background lookup of the fake DNS finish."""
    for _ in range(100):
        await asyncio.sleep(0)


async def test_addresses_and_networks_are_trusted_and_nothing_else() -> None:
    proxies = TrustedProxies((ip_network("10.0.0.0/8"), ip_network("::1/128")), ())
    assert proxies.trust("10.89.0.7")
    assert proxies.trust("::1")
    assert not proxies.trust("192.168.1.10")
    # A Unix socket's peer, or nothing an address.
    assert not proxies.trust("")


async def test_a_name_is_looked_up_in_the_background_when_a_new_peer_comes(
    dns: dict[str, list[str]],
) -> None:
    clock = Clock()
    proxies = TrustedProxies((), ("proxy",), clock)
    dns["proxy"] = ["10.89.0.7"]
    # The first request answers at once, as from the peer itself; the lookup follows.
    assert not proxies.trust("10.89.0.7")
    await looked_up()
    assert proxies.trust("10.89.0.7")
    assert dns["?"] == ["proxy"]
    # The container was made again, with another address: known a lookup later, one a second.
    dns["proxy"] = ["10.89.0.12"]
    clock.now += RESOLVE_EVERY / 2
    assert not proxies.trust("10.89.0.12")
    await looked_up()
    assert dns["?"] == ["proxy"]
    clock.now += RESOLVE_EVERY
    assert not proxies.trust("10.89.0.12")
    await looked_up()
    assert proxies.trust("10.89.0.12")
    assert not proxies.trust("10.89.0.7")
    await proxies.close()


async def test_a_lookup_that_hangs_holds_no_request_and_starts_no_second_one(
    dns: dict[str, list[str]],
) -> None:
    clock = Clock()
    proxies = TrustedProxies((), ("slow",), clock)
    assert not proxies.trust("10.89.0.7")
    clock.now += 10 * RESOLVE_EVERY
    assert not proxies.trust("10.89.0.7")
    await looked_up()
    assert dns["?"] == ["slow"]
    dns["slow"] = ["10.89.0.7"]
    await asyncio.sleep(0.05)
    assert proxies.trust("10.89.0.7")
    await proxies.close()


async def test_closing_cancels_a_lookup_still_running(dns: dict[str, list[str]]) -> None:
    proxies = TrustedProxies((), ("slow",))
    proxies.trust("10.89.0.7")
    await proxies.close()
    assert not proxies.trust("10.89.0.7")
    await proxies.close()
