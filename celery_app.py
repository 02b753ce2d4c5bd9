"""The Celery application: ``celery -A celery_app worker`` (and ``beat``, ``flower``).

``celery -A celery_app`` finds ``app`` here, built from the environment like every other
process's settings; the tasks live in ``celery_tasks``. What the API shares with the workers is
in ``celery_config``: the API never imports this module, whose every line is for the worker.
"""

import logging

from celery import Celery
from celery.worker.consumer import Consumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from celery_config import create_celery_app
from common import topology
from common.settings import Settings


class DelayedDeliveryOnce(DelayedDelivery):
    """Native delayed delivery set up through the node the worker is connected to.

    Celery's own step sets it up through every URL of a failover list, and retries a node that
    is down for many seconds before the worker consumes again. That happens at every
    reconnect, which is exactly when a node is down. The nodes of one cluster share their
    exchanges and queues, so declaring them through one node is enough.
    """

    def start(self, c: Consumer) -> None:
        queue_type = c.app.conf.broker_native_delayed_delivery_queue_type
        declare_native_delayed_delivery_exchanges_and_queues(c.connection, queue_type)
        for queue in c.app.amqp.queues.values():
            bind_queue_to_native_delayed_delivery_exchange(c.connection, queue)


class ClusterConsumer(Consumer):
    """Celery's worker consumer with :class:`DelayedDeliveryOnce` in place of its own step."""

    class Blueprint(Consumer.Blueprint):
        default_steps = [
            f"{__name__}:{DelayedDeliveryOnce.__name__}" if step.endswith(":DelayedDelivery")
            else step
            for step in Consumer.Blueprint.default_steps
        ]


def create_worker_app(settings: Settings) -> Celery:
    """The app of the processes ``celery -A celery_app`` starts (worker, Beat, Flower).

    A worker stores each task's state and result in the result backend, before the task's body
    (STARTED) and after it. With Redis away, Celery's default is to fail such a task "outside
    its body": its body never runs, its message is acked, and the task is lost. Here storing is
    retried (with a backoff up to 10 s) for as long as Redis is away: the task waits, unacked,
    and runs once Redis is back. Not in the API's client: it only reads results, and a read
    that waited out an outage would hold a request; it shows "unknown" instead.
    """
    app = create_celery_app(settings)
    if settings.rmq_queue_type == topology.QUORUM:
        # Celery's delayed delivery (the retries' countdowns, on quorum queues) set up through
        # one node instead of every node of the failover list.
        app.conf.worker_consumer = f"{__name__}:{ClusterConsumer.__name__}"
    # As many pool processes as the consumer has task threads (Celery's default: one a CPU).
    app.conf.worker_concurrency = topology.CONCURRENCY
    app.conf.update(
        result_backend_always_retry=True,
        # Celery's first pauses are 10 ms, 20 ms...: from half a second, a line a second or so.
        result_backend_base_sleep_between_retries_ms=500,
    )
    logging.getLogger("celery.backends.base").addFilter(_one_line_retries)
    return app


def _one_line_retries(record: logging.LogRecord) -> bool:
    """Celery logs each retry of a result-backend operation with the whole traceback, every few
    seconds per process while Redis is away: one line with the reason says as much."""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
        record.args, record.exc_info, record.exc_text = None, None, None
    return True


app = create_worker_app(Settings.from_env())
