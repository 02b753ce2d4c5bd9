"""The Celery application: ``celery -A celery_app worker --concurrency=3`` (and ``beat``, ``flower``).

Built from the same settings as every other part; the tasks live in ``celery_tasks``. The API
builds its own client with :func:`create_celery_app` from its settings, so that importing this
module reads no environment.
"""

import functools
import logging
from urllib.parse import urlsplit

from celery import Celery
from celery.backends.redis import RedisBackend
from celery.utils.time import get_exponential_backoff_interval
from celery.worker.consumer import Consumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from common import topology
from common.settings import URL_SEPARATOR, Settings

# Kombu's retries of a broker operation, for opening a channel and for the API's publishes alike:
# about 1.5 s in all (kombu's default is 6 s for a channel), so that the API answers 503 quickly
# while the broker is down; four tries, one more than a three-node cluster has nodes.
RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}

# The error lesson: a task sent with fail is retried FAIL_RETRIES times, then ends in ERROR. The
# first pause is FAIL_BACKOFF seconds (the task's retry_backoff); Celery doubles each next one
# itself (exponential backoff), up to FAIL_BACKOFF_MAX. The task turns jitter off, so the pauses
# are exactly these: with Celery's default retry_jitter=True each would be random, 0 to this.
FAIL_RETRIES = 3
FAIL_BACKOFF = 2
FAIL_BACKOFF_MAX = 16


def fail_retry_pauses() -> list[int]:
    """The pauses before each retry of a task sent with fail, in seconds, as Celery computes
    them: [2, 4, 8]. The page's help text quotes them from here."""
    return [get_exponential_backoff_interval(FAIL_BACKOFF, retries, FAIL_BACKOFF_MAX)
            for retries in range(FAIL_RETRIES)]


def create_celery_app(settings: Settings) -> Celery:
    # RMQ_URL may list a cluster's nodes separated by ";": Celery's own failover syntax, so the
    # worker and the API's client move to the next node when theirs is lost.
    broker = URL_SEPARATOR.join(settings.rmq_urls)  # without the spaces a user may put around ";"
    app = Celery("demo", broker=broker, backend=_result_backend(settings.result_backend),
                 include=["celery_tasks"])
    app.conf.update(
        task_default_queue=topology.CELERY_QUEUE,
        **_queue_type_settings(settings.rmq_queue_type),
        # One periodic task for Celery Beat. The schedule lives in the Beat process's memory:
        # nothing to store, and a restarted Beat simply starts counting again.
        beat_schedule={
            "order-a-task": {"task": topology.BEAT_TASK, "schedule": float(settings.beat_interval)}
        },
        beat_scheduler="celery.beat:Scheduler",
        # Task events, so that Flower and `celery events` show each task as it goes.
        worker_send_task_events=True,
        # ...from the moment it is sent, so that Flower shows the tasks waiting in the queue too.
        # The price: a second confirmed publish per task, a fifth of the API's Celery sending
        # rate (two APIs side by side: 556 requests/s without; the README's performance section).
        task_send_sent_event=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Report STARTED, so that AsyncResult shows more than PENDING while the task runs.
        task_track_started=True,
        # Ack after the work, and give the message back if the worker process dies: a killed
        # worker's task is redelivered instead of lost. Safe because process_task is idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Each process reserves one task at a time, so that idle workers get the next ones.
        worker_prefetch_multiplier=1,
        broker_transport_options={
            # Wait for the broker's confirm on every publish: a 202 from the API means the
            # broker has the task, even if it goes down a moment later.
            "confirm_publish": True,
            # Opening a channel. The worker's own reconnect loop (broker_connection_max_retries)
            # is not affected.
            **RETRY_POLICY,
        },
        broker_connection_retry_on_startup=True,
        # Tasks running when the broker connection drops are redelivered anyway (acks_late):
        # stop them rather than finish work whose ack can no longer reach the broker.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        result_expires=3600,
    )
    return app


def _result_backend(url: str) -> str:
    """RESULT_BACKEND as Celery's backend: Redis through :class:`SubscribeOnGetRedisBackend`,
    named in Celery's ``module:Class+URL`` form; ``rpc://`` as it is."""
    if urlsplit(url).scheme == "rpc":
        return url
    return f"{__name__}:{SubscribeOnGetRedisBackend.__name__}+{url}"


class SubscribeOnGetRedisBackend(RedisBackend):
    """Celery's Redis result backend that subscribes to a task's result only when someone
    waits for it (``AsyncResult.get()``), not whenever a task is sent.

    The stock backend subscribes on every send, in case the sender calls ``.get()`` later, and
    unsubscribes when the ``AsyncResult`` is dropped: two Redis round trips per task. The API
    never waits for a result (it reads a task's state when asked), and those round trips cost a
    sixth of its Celery sending rate (two APIs side by side: 435 instead of 363 requests/s; the
    README's performance section). ``.get()`` still works: it subscribes, then reads a result
    that may already be stored.
    """

    def on_task_call(self, producer: object, task_id: str) -> None:
        pass  # the subscription waits for .get()


def _queue_type_settings(queue_type: str) -> dict[str, str]:
    """What Celery needs to keep its queue as the demo's: classic or quorum (RMQ_QUEUE_TYPE)."""
    if queue_type == topology.CLASSIC:
        return {}
    return {
        # The worker sees the quorum queue and switches off global QoS, which quorum queues
        # lack (worker_detect_quorum_queues, on by default): the prefetch is per consumer.
        "task_default_queue_type": topology.QUORUM,
        # Retries with a countdown then wait in the broker (native delayed delivery), not in
        # the worker's memory. Celery does that through topic exchanges only, never direct.
        "task_default_exchange_type": "topic",
        "worker_consumer": f"{__name__}:{ClusterConsumer.__name__}",
    }


class DelayedDeliveryOnce(DelayedDelivery):
    """Native delayed delivery set up through the node the worker is connected to.

    Celery's own step sets it up through every URL of a failover list, and retries a node that
    is down for about 17 s (measured) before the worker consumes again. That happens at every
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


@functools.cache
def __getattr__(name: str) -> Celery:
    """``celery -A celery_app`` looks up ``app`` here: it is built on that first access."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return create_worker_app(Settings.from_env())
