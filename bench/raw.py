"""Baselines from the broker alone, with aio-pika: what RabbitMQ gives without our code.

Both keep what the demo teaches: persistent messages to a durable queue, publisher confirms, and
(for the round trip) manual acks with the consumer's prefetch. The queue is the bench's own, in
the run's scratch vhost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import aio_pika

from common import topology

log = logging.getLogger(__name__)

QUEUE = "bench_raw"
BODY = b'{"task_num": 1, "timeout": 0, "fail": false}'  # the size of a real task message


@dataclasses.dataclass(frozen=True)
class PublishResult:
    rate: float  # confirmed messages per second
    p50_ms: float  # from publish to the broker's confirm
    p99_ms: float


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile: the value below which ``q`` % of ``values`` lie."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def _publish_all(channel: aio_pika.abc.AbstractChannel, count: int, in_flight: int
                       ) -> list[float]:
    """Publish ``count`` persistent messages with at most ``in_flight`` unconfirmed; latencies."""
    exchange = channel.default_exchange
    slots = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def one() -> None:
        async with slots:
            started = time.perf_counter()
            await exchange.publish(
                aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=QUEUE,
            )
            latencies.append(time.perf_counter() - started)

    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(one())
    return latencies


async def publish_alone(rmq_url: str, count: int, in_flight: int) -> PublishResult:
    """Publishing with confirms and nothing else: the ceiling of the rmq accept path."""
    async with await aio_pika.connect(rmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(QUEUE, durable=True)
        started = time.perf_counter()
        latencies = await _publish_all(channel, count, in_flight)
        elapsed = time.perf_counter() - started
        await queue.delete(if_unused=False, if_empty=False)
    return PublishResult(
        rate=count / elapsed,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
    )


async def round_trip(rmq_url: str, count: int, in_flight: int) -> float:
    """Messages per second from the first publish to the last ack, without the API.

    One connection publishes (confirms, ``in_flight`` at a time), another consumes with the
    consumer's prefetch and acks each message by hand, as ``consumer/`` does.
    """
    async with await aio_pika.connect(rmq_url) as publisher, \
            await aio_pika.connect(rmq_url) as consumer:
        publish_channel = await publisher.channel(publisher_confirms=True)
        consume_channel = await consumer.channel()
        await consume_channel.set_qos(prefetch_count=topology.PREFETCH_COUNT)
        queue = await consume_channel.declare_queue(QUEUE, durable=True)
        all_acked = asyncio.Event()
        acked = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal acked
            await message.ack()
            acked += 1
            if acked == count:
                all_acked.set()

        consumer_tag = await queue.consume(on_message)
        started = time.perf_counter()
        await _publish_all(publish_channel, count, in_flight)
        await all_acked.wait()
        elapsed = time.perf_counter() - started
        await queue.cancel(consumer_tag)
        await queue.delete(if_unused=False, if_empty=False)
    return count / elapsed
