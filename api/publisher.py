"""Publishing to RabbitMQ directly: one aio-pika connection for the whole process.

A connection per request is the classic mistake: it costs a TCP and AMQP handshake each time and
floods the broker with connections. Here the connection is opened once, in the background so that
the API serves (and ``/healthz`` tells the truth) even while the broker is still starting, and
opened again, to the next node of a cluster, when it is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from api.errors import BrokerUnavailable, describe
from common import topology
from common.messages import TaskMessage
from common.node_ring import NodeRing
from common.settings import Settings, address, mask_password

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0
# How long a publish waits for a reconnecting broker before the client gets a 503.
CONNECT_WAIT = 2.0
CONNECT_TIMEOUT = 5.0
# What connecting to a node that is down or refuses us may raise.
CONNECT_ERRORS = (TimeoutError, aio_pika.exceptions.AMQPError, OSError)
# What a call on a lost or closing connection may raise: each becomes BrokerUnavailable.
AMQP_ERRORS = (TimeoutError, aio_pika.exceptions.AMQPError, OSError, RuntimeError)


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._node: str | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @property
    def connected(self) -> bool:
        return (
            self._connection is not None
            and self._exchange is not None
            and self._connection.connected.is_set()
        )

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
        connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchanges = {
                spec.name: await channel.declare_exchange(
                    spec.name, spec.type, durable=spec.durable
                )
                for spec in topology.EXCHANGES
            }
            for spec in topology.queues(self._settings.rmq_queue_type):
                queue = await channel.declare_queue(
                    spec.name, durable=spec.durable, arguments=spec.arguments
                )
                for binding in topology.BINDINGS:
                    if binding.queue == spec.name:
                        await queue.bind(exchanges[binding.exchange], binding.routing_key)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._exchange = exchanges[topology.EXCHANGE]
        self._node = address(url)
        log.info("publisher connected to %s", mask_password(url))
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
            self._connection = self._exchange = None
            with contextlib.suppress(*AMQP_ERRORS):
                await connection.close()

    async def _sleep_unless_closing(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def wait_connected(self, timeout: float = CONNECT_WAIT) -> None:
        """Give a (re)connecting broker a few seconds before telling the client it is down."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.connected:
            if loop.time() >= deadline or self._closing.is_set():
                raise BrokerUnavailable("not connected to RabbitMQ")
            await asyncio.sleep(0.1)

    async def publish(self, message: TaskMessage, routing_key: str = "") -> None:
        """Publish a persistent message and wait for the broker's confirm, or raise."""
        await self.wait_connected()
        amqp_message = aio_pika.Message(
            message.to_json(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(message.task_num),
        )
        exchange = self._exchange
        try:
            # mandatory=False: a fanout ignores the routing key, so it can never be unroutable
            # while test_direct is bound; with it, a broker restart would report spurious returns.
            await exchange.publish(
                amqp_message, routing_key=routing_key, mandatory=False, timeout=PUBLISH_TIMEOUT
            )
        except aio_pika.exceptions.DeliveryError as exc:
            # A nack: a queue did not take the message. When a quorum queue's leader has just
            # died, a new channel may go on being nacked until it is replaced (RabbitMQ 3.10,
            # measured: 90 s and more); a fresh one finds the new leader within two seconds.
            self._renew_channel(exchange)
            raise BrokerUnavailable("the broker refused the message (nack)") from exc
        except AMQP_ERRORS as exc:
            raise BrokerUnavailable(f"publish failed: {describe(exc)}") from exc
        log.info("task %s: published to %s", message.task_num, topology.EXCHANGE)

    def _renew_channel(self, refused: AbstractExchange) -> None:
        """Publish through a new channel from now on, unless that is already under way."""
        if self._exchange is not refused or self._renewing is not None:
            return
        self._renewing = asyncio.create_task(self._open_publishing_channel(refused))
        self._renewing.add_done_callback(lambda _: setattr(self, "_renewing", None))

    async def _open_publishing_channel(self, refused: AbstractExchange) -> None:
        connection = self._connection
        if connection is None:
            return  # lost meanwhile: the reconnect loop opens a new connection and channel
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(topology.EXCHANGE)  # a passive declare
        except AMQP_ERRORS as exc:
            log.warning("no new publishing channel: %r", exc)
            return
        if self._exchange is refused:
            self._exchange, stale = exchange, refused.channel
            log.warning("publishes were refused (nack): publishing through a new channel")
        else:
            stale = channel  # reconnected meanwhile, with a channel of its own
        with contextlib.suppress(*AMQP_ERRORS):
            await stale.close()

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractChannel]:
        """A short-lived channel on the same connection, for work other than publishing.

        The dead-letter panel gets, acks and purges with it: still one connection per process.
        """
        await self.wait_connected()
        try:
            channel = await self._connection.channel()
        except AMQP_ERRORS as exc:
            raise BrokerUnavailable(f"no channel: {describe(exc)}") from exc
        try:
            yield channel
        finally:
            await channel.close()

    async def queue_counts(self, names: list[str]) -> dict[str, tuple[int, int] | None]:
        """(ready messages, consumers) of each queue, exact now; None for a queue not declared.

        A passive declare asks the broker itself, which answers at once; the management API's
        statistics lag five to ten seconds behind.
        """
        counts: dict[str, tuple[int, int] | None] = {}
        for name in names:
            # A passive declare of a missing queue closes its channel: one channel per queue.
            async with self.channel() as channel:
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    counts[name] = None
                    continue
                except AMQP_ERRORS as exc:
                    raise BrokerUnavailable(f"queue.declare failed: {exc!r}") from exc
            result = queue.declaration_result
            counts[name] = (result.message_count, result.consumer_count)
        return counts

    async def purge(self, name: str) -> int:
        """Delete every message waiting in queue ``name``; how many there were (0: no queue).

        Messages delivered to a worker and not yet acked are not waiting: they stay.
        """
        try:
            async with self.channel() as channel:
                try:
                    queue = await channel.get_queue(name)  # a passive declare
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    return 0  # never declared: Celery's queue before its first worker or task
                result = await queue.purge()
        except AMQP_ERRORS as exc:
            raise BrokerUnavailable(f"queue.purge failed: {describe(exc)}") from exc
        log.info("queue %s purged: %s messages", name, result.message_count)
        return result.message_count

    async def close(self) -> None:
        self._closing.set()
        if self._keeper is not None:
            # Not cancelled: a connect cancelled halfway may leave a connection nobody closes.
            # An attempt ends within CONNECT_TIMEOUT.
            await self._keeper
        if self._connection is not None:
            await self._connection.close()
