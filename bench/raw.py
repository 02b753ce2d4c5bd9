"""Baselines from the broker alone, with aio-pika: what RabbitMQ gives without our code.

Both keep what the demo teaches: persistent messages to a durable queue, publisher confirms, and
(for the round trip) manual acks with the consumer's prefetch. The queue is the bench's own, in
the run's scratch vhost.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import time

import aio_pika
import pika
from pika.adapters.blocking_connection import BlockingChannel

from common import topology
from runner.broker import management_session, scratch_vhost, with_vhost
from runner.cli import tool_settings

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


@dataclasses.dataclass(frozen=True)
class ConnectionReuse:
    count: int  # messages published each way
    reused_rate: float  # messages per second, one connection for all of them
    per_message_rate: float  # messages per second, a new connection for each (the course's code)

    @property
    def ratio(self) -> float:
        return self.reused_rate / self.per_message_rate


def _confirming_channel(connection: pika.BlockingConnection) -> BlockingChannel:
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def connection_reuse(rmq_url: str, count: int) -> ConnectionReuse:
    """``count`` persistent, confirmed messages with pika: one connection, then one per message.

    The second way is the course's original publisher (connect, publish, close for every task):
    each message pays the TCP and AMQP handshakes, a channel, and the close.
    """
    parameters = pika.URLParameters(rmq_url)
    properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    connection = pika.BlockingConnection(parameters)
    try:
        channel = _confirming_channel(connection)
        channel.queue_declare(QUEUE, durable=True)
        started = time.perf_counter()
        for _ in range(count):
            channel.basic_publish("", QUEUE, BODY, properties)
        reused = time.perf_counter() - started

        started = time.perf_counter()
        for _ in range(count):
            one = pika.BlockingConnection(parameters)
            try:
                _confirming_channel(one).basic_publish("", QUEUE, BODY, properties)
            finally:
                one.close()
        per_message = time.perf_counter() - started
        channel.queue_delete(QUEUE)
    finally:
        connection.close()
    return ConnectionReuse(count, count / reused, count / per_message)


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.raw``: the connection-reuse figures of docs/rabbitmq.md, in a scratch vhost."""
    parser = argparse.ArgumentParser(prog="python -m bench.raw", description=main.__doc__)
    parser.add_argument("--count", type=int, default=500, help="messages each way (1..10000)")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 10_000:
        parser.error("--count: from 1 to 10000")
    base = tool_settings()
    with management_session(base) as management, scratch_vhost(base, management) as vhost:
        result = connection_reuse(with_vhost(base.rmq_url, vhost), args.count)
    log.info("%d messages, pika, persistent, publisher confirms:", result.count)
    log.info("  one connection for all:      %7.0f msg/s", result.reused_rate)
    log.info("  a new connection per message: %7.0f msg/s", result.per_message_rate)
    log.info("  ratio: %.0f x", result.ratio)


if __name__ == "__main__":
    main()
