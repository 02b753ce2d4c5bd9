"""Publishing task messages to RabbitMQ directly, each one confirmed by the broker.

Every publish of the process goes through one channel with publisher confirms, on the process's
one connection (``api.connection``). The channel is opened by the first publish after each
(re)connect, and replaced when the broker starts refusing messages on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aio_pika
from aio_pika.abc import AbstractExchange

from api.connection import AMQP_ERRORS, BrokerConnection
from api.errors import BrokerUnavailable, describe
from common import topology
from common.logs import task_log
from common.messages import TaskMessage

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0


class Publisher:
    def __init__(self, connection: BrokerConnection) -> None:
        self._connection = connection
        self._exchange: AbstractExchange | None = None
        # One channel is opened however many publishes find none.
        self._opening = asyncio.Lock()
        self._renewing: asyncio.Task[None] | None = None

    async def publish(self, message: TaskMessage, routing_key: str = "") -> None:
        """Publish a persistent message and wait for the broker's confirm, or raise."""
        exchange = await self._publishing_exchange()
        amqp_message = aio_pika.Message(
            message.to_json(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(message.task_num),
        )
        try:
            # mandatory=False: a fanout ignores the routing key, so it can never be unroutable
            # while test_direct is bound; with it, a broker restart would report spurious returns.
            await exchange.publish(
                amqp_message, routing_key=routing_key, mandatory=False, timeout=PUBLISH_TIMEOUT
            )
        except aio_pika.exceptions.DeliveryError as exc:
            # A nack: a queue did not take the message. When a quorum queue's leader has just
            # died, a channel may go on being nacked long after a new leader is elected; a
            # fresh channel finds the new leader.
            self._renew_channel(exchange)
            raise BrokerUnavailable("the broker refused the message (nack)") from exc
        except AMQP_ERRORS as exc:
            raise BrokerUnavailable(f"publish failed: {describe(exc)}") from exc
        task_log(log, message.task_num).info("published to %s", topology.EXCHANGE)

    async def _publishing_exchange(self) -> AbstractExchange:
        """The exchange on the publishing channel; a new channel after a reconnect."""
        await self._connection.wait_connected()
        if (exchange := self._exchange) is not None and not exchange.channel.is_closed:
            return exchange
        async with self._opening:
            if self._exchange is None or self._exchange.channel.is_closed:
                self._exchange = await self._open_exchange()
            return self._exchange

    async def _open_exchange(self) -> AbstractExchange:
        channel = await self._connection.open_channel(publisher_confirms=True)
        try:
            return await channel.get_exchange(topology.EXCHANGE)  # a passive declare
        except AMQP_ERRORS as exc:
            raise BrokerUnavailable(f"no publishing channel: {describe(exc)}") from exc

    def _renew_channel(self, refused: AbstractExchange) -> None:
        """Publish through a new channel from now on, unless that is already under way."""
        if self._exchange is not refused or self._renewing is not None:
            return
        self._renewing = asyncio.create_task(self._replace_channel(refused))
        self._renewing.add_done_callback(lambda _: setattr(self, "_renewing", None))

    async def _replace_channel(self, refused: AbstractExchange) -> None:
        # Publishes go on through the refused channel until the new one is open: some of them
        # may still be confirmed.
        async with self._opening:
            if self._exchange is not refused:
                return  # reconnected meanwhile, with a channel of its own
            try:
                self._exchange = await self._open_exchange()
            except BrokerUnavailable as exc:
                log.warning("publishes were refused (nack), and %s", exc)
                return
        log.warning("publishes were refused (nack): publishing through a new channel")
        with contextlib.suppress(*AMQP_ERRORS):
            await refused.channel.close()
