"""Counting and emptying the demo's queues, each on a short-lived channel of the connection."""

from __future__ import annotations

import logging

import aio_pika

from api.connection import AMQP_ERRORS, BrokerConnection
from api.errors import BrokerUnavailable, describe

log = logging.getLogger(__name__)


class QueueAdmin:
    def __init__(self, connection: BrokerConnection) -> None:
        self._connection = connection

    async def counts(self, names: list[str]) -> dict[str, tuple[int, int] | None]:
        """(ready messages, consumers) of each queue, exact now; None for a queue not declared.

        A passive declare asks the broker itself, which answers at once; the management API's
        statistics lag five to ten seconds behind.
        """
        counts: dict[str, tuple[int, int] | None] = {}
        for name in names:
            # A passive declare of a missing queue closes its channel: one channel per queue.
            async with self._connection.channel() as channel:
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    counts[name] = None
                    continue
                except AMQP_ERRORS as exc:
                    raise BrokerUnavailable(f"queue.declare failed: {describe(exc)}") from exc
            result = queue.declaration_result
            counts[name] = (result.message_count, result.consumer_count)
        return counts

    async def purge(self, name: str) -> int:
        """Delete every message waiting in queue ``name``; how many there were (0: no queue).

        Messages delivered to a worker and not yet acked are not waiting: they stay.
        """
        try:
            async with self._connection.channel() as channel:
                try:
                    queue = await channel.get_queue(name)  # a passive declare
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    return 0  # never declared: Celery's queue before its first worker or task
                result = await queue.purge()
        except AMQP_ERRORS as exc:
            raise BrokerUnavailable(f"queue.purge failed: {describe(exc)}") from exc
        log.info("queue %s purged: %s messages", name, result.message_count)
        return result.message_count
