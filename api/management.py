"""A small client of RabbitMQ's management HTTP API, for the queues and dead-letter panels.

The server asks, not the browser: the credentials stay here, and the page gets plain JSON.
One ``aiohttp.ClientSession`` serves the whole process (opened in a ``cleanup_ctx``), with
short timeouts: a slow or absent management plugin must not hold the page up.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import aiohttp

from api.errors import describe
from common.node_ring import NodeRing
from common.settings import Settings
from common.tls import client_context

log = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=2)
# Peeked bodies are cut to this many bytes by the broker: enough to read and to parse any
# task message, and a queue of huge messages cannot fill the API's memory.
PEEK_TRUNCATE = 10_000


class ManagementUnavailable(RuntimeError):
    """The management API did not answer, or not with what we asked for."""


class ManagementClient:
    def __init__(self, settings: Settings) -> None:
        # One node's, or each node's of a cluster: any of them answers for the whole cluster.
        self._base_urls = NodeRing(
            url.rstrip("/") + "/api" for url in settings.rmq_management_urls
        )
        # "/" is a valid vhost name, and the default: in a URL path it must read %2F.
        self._vhost = quote(settings.rmq_vhost, safe="")
        self._authorization = aiohttp.encode_basic_auth(settings.rmq_user, settings.rmq_password)
        self._session: aiohttp.ClientSession | None = None
        self._ca_file = settings.rmq_ca_file
        self._last_error: str | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"Authorization": self._authorization}, timeout=TIMEOUT,
            # Used for https:// URLs only: the broker's certificate checked as AMQPS checks it.
            connector=aiohttp.TCPConnector(ssl=client_context(self._ca_file)),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def unacknowledged(self, names: list[str]) -> dict[str, int | None]:
        """Messages delivered and not yet acked, per queue: only the statistics know it.

        They lag five to ten seconds, and are None for a queue the broker has not sampled yet.
        """
        columns = "name,messages_unacknowledged"
        found = await self._request("GET", f"/queues/{self._vhost}", params={"columns": columns})
        if found is None:
            raise ManagementUnavailable("the vhost does not exist")
        by_name = {queue["name"]: queue.get("messages_unacknowledged") for queue in found}
        return {name: by_name.get(name) for name in names}

    async def peek(self, queue: str, count: int) -> list[dict[str, Any]]:
        """Up to ``count`` messages from the head of ``queue``, left in it (requeued at once).

        The management UI's "Get messages" button: fine for a look, not a way to consume.
        """
        body = {
            "count": count,
            "ackmode": "ack_requeue_true",
            "encoding": "auto",
            "truncate": PEEK_TRUNCATE,
        }
        path = f"/queues/{self._vhost}/{quote(queue, safe='')}/get"
        found = await self._request("POST", path, json=body)
        return [] if found is None else found  # None: the queue is not declared yet

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer, or None for 404; raises ManagementUnavailable otherwise.

        A node that does not answer at all is skipped for the next; the one that answered is
        asked first from then on. One request tries each node once and never pauses: the
        panels' next poll is the pause.
        """
        if self._session is None:
            raise ManagementUnavailable("the client is not open")
        for _ in range(len(self._base_urls)):
            try:
                result = await _ask(self._session, method, self._base_urls.current + path,
                                    **kwargs)
            except ManagementUnavailable as exc:
                self._note_failure(str(exc))
                raise
            except (TimeoutError, aiohttp.ClientError) as exc:
                self._note_failure(describe(exc))
                self._base_urls.failed()
                continue
            self._base_urls.answered()
            if self._last_error is not None:
                log.info("management API at %s answers again", self._base_urls.current)
                self._last_error = None
            return result
        raise ManagementUnavailable(self._last_error)

    def _note_failure(self, reason: str) -> None:
        # Every open page polls every two seconds: log when it breaks, not at every poll.
        if self._last_error is None:
            log.warning("management API at %s unavailable: %s", self._base_urls.current, reason)
        self._last_error = reason


async def _ask(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with session.request(method, url, **kwargs) as answer:
        if answer.status == 404:
            return None
        if answer.status in (401, 403):
            raise ManagementUnavailable(f"HTTP {answer.status}: login or rights refused")
        if answer.status >= 400:
            raise ManagementUnavailable(f"HTTP {answer.status}")
        try:
            return await answer.json()
        except ValueError as exc:
            raise ManagementUnavailable(f"not JSON: {exc}") from exc
