"""The API's one AMQP connection: opened once for the whole process, kept open across failures.

A connection per request is the classic mistake: it costs a TCP and AMQP handshake each time and
floods the broker with connections. Here it is opened once, in the background so that the API
serves (and ``/healthz`` tells the truth) even while the broker is still starting, and opened
again, to the next node of a cluster, when it is lost. Publishing (``api.publisher``) and the
queue administration (``api.queues``, the dead letters) each open their channels on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from api.errors import BrokerUnavailable, describe
from common import topology
from common.node_ring import NodeRing
from common.settings import Settings, address, mask_password
from common.tls import client_context, uses_tls

log = logging.getLogger(__name__)

# How long a request waits for a reconnecting broker before the client gets a 503.
CONNECT_WAIT = 2.0
CONNECT_TIMEOUT = 5.0
# What connecting to a node that is down or refuses us may raise.
CONNECT_ERRORS = (TimeoutError, aio_pika.exceptions.AMQPError, OSError)
# What a call on a lost or closing connection may raise: each becomes BrokerUnavailable.
AMQP_ERRORS = (TimeoutError, aio_pika.exceptions.AMQPError, OSError, RuntimeError)


class BrokerConnection:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Checks an amqps:// node's certificate; made once, used by every (re)connect.
        self._ssl_context = client_context(settings.rmq_ca_file)
        self._connection: AbstractConnection | None = None
        self._node: str | None = None
        # Set while a connection is open and the topology declared on it; requests wait on it.
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected.is_set()

    @property
    def node(self) -> str | None:
        """``host:port`` of the node the connection is open to (several with a cluster)."""
        return self._node if self.connected else None

    def start(self) -> None:
        self._keeper = asyncio.create_task(self._stay_connected())

    async def _stay_connected(self) -> None:
        """Connect to the first node that answers; when that connection is lost, to the next.

        aio-pika's robust connection only ever returns to its own URL. This loop walks the
        nodes RMQ_URL lists (common.node_ring), so losing one node of a cluster leaves the API
        publishing; with one URL it simply reconnects there.
        """
        nodes = NodeRing(self._settings.rmq_urls)
        while not self._closing.is_set():
            url = nodes.current
            try:
                connection = await self._connect(url)
            except CONNECT_ERRORS as exc:
                pause = nodes.failed()
                log.warning("broker %s not reachable (%s), %s", mask_password(url),
                            describe(exc),
                            f"retrying in {pause:.1f} s" if pause else "trying the next")
                if pause:
                    await self._sleep_unless_closing(pause)
                continue
            nodes.answered()
            await self._until_lost(connection)
            nodes.lost()
            if not self._closing.is_set():
                log.warning("lost the connection to %s, connecting again%s", mask_password(url),
                            " to the next node" if len(nodes) > 1 else "")

    async def _connect(self, url: str) -> AbstractConnection:
        """Connect to ``url`` and declare the exchanges, queues and bindings there."""
        connection = await aio_pika.connect(
            url, timeout=CONNECT_TIMEOUT,
            ssl_context=self._ssl_context if uses_tls(url) else None,
        )
        try:
            async with connection.channel() as channel:
                await declare_topology(channel, self._settings.rmq_queue_type)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._node = address(url)
        self._ready.set()
        log.info("connected to %s", mask_password(url))
        return connection

    async def _until_lost(self, connection: AbstractConnection) -> None:
        """Return when the broker drops ``connection`` or :meth:`close` is called."""
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        waiters = [asyncio.create_task(lost.wait()), asyncio.create_task(self._closing.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if lost.is_set():
            self._ready.clear()
            self._connection = None
            with contextlib.suppress(*AMQP_ERRORS):
                await connection.close()

    async def _sleep_unless_closing(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def wait_connected(self, timeout: float = CONNECT_WAIT) -> None:
        """Give a (re)connecting broker a few seconds before telling the client it is down."""
        if self.connected:
            return
        if not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
        if not self.connected:
            raise BrokerUnavailable("not connected to RabbitMQ")

    async def open_channel(self, publisher_confirms: bool = False) -> AbstractChannel:
        """A new channel on the connection, once there is one; the caller closes it."""
        await self.wait_connected()
        try:
            return await self._connection.channel(publisher_confirms=publisher_confirms)
        except AMQP_ERRORS as exc:
            raise BrokerUnavailable(f"no channel: {describe(exc)}") from exc

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractChannel]:
        """A short-lived channel for one piece of work: still one connection per process."""
        channel = await self.open_channel()
        try:
            yield channel
        finally:
            with contextlib.suppress(*AMQP_ERRORS):
                await channel.close()

    async def close(self) -> None:
        self._closing.set()
        if self._keeper is not None:
            # Not cancelled: a connect cancelled halfway may leave a connection nobody closes.
            # An attempt ends within CONNECT_TIMEOUT.
            await self._keeper
        if self._connection is not None:
            await self._connection.close()


async def declare_topology(channel: AbstractChannel, queue_type: str) -> None:
    """The exchanges, queues and bindings of common.topology, declared as they are there."""
    exchanges = {
        spec.name: await channel.declare_exchange(spec.name, spec.type, durable=spec.durable)
        for spec in topology.EXCHANGES
    }
    for spec in topology.queues(queue_type):
        queue = await channel.declare_queue(spec.name, durable=spec.durable,
                                            arguments=spec.arguments)
        for binding in topology.BINDINGS:
            if binding.queue == spec.name:
                await queue.bind(exchanges[binding.exchange], binding.routing_key)
