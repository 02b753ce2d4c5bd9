"""The Celery application: ``celery -A celery_app worker`` (and ``beat``, ``flower``).

``celery -A celery_app`` finds ``app`` here, built from the environment like every other
process's settings; the tasks live in ``celery_tasks``. What the API shares with the workers is
in ``celery_config``: the API never imports this module, whose every line is for the worker.
"""

import contextlib
import logging
import os
import sys
from typing import Any, TextIO

import celery.apps.worker
from celery import Celery, signals
from celery.utils.log import get_multiprocessing_logger
from celery.worker.consumer import Consumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from celery_config import create_celery_app
from common import topology
from common.logs import configure_logging, json_formatter
from common.settings import JSON_LOGS, Settings


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
    if settings.log_format == JSON_LOGS:
        _log_json(app, settings)
    return app


def _log_json(app: Celery, settings: Settings) -> None:
    """LOG_FORMAT=json in the worker, its pool processes, Beat and Flower: every line they print
    is a JSON object, Celery's own lines ("Task ... received") included.

    The text format keeps Celery's own lines as they are ("[time: INFO/ForkPoolWorker-1] ...").
    For JSON, the root logger is configured here, when ``celery -A celery_app`` imports the app:
    before Flower's own setup, which then adds no handler of its own (tornado adds one only to a
    root logger that has none). A receiver of ``setup_logging`` tells the worker and Beat that
    logging is taken care of: Celery then neither hijacks the root logger nor sets its formats;
    the pool processes are forked with it. Their banners are printed, not logged: quiet. What
    the worker says from its signal handlers is written straight to the stream (see _say_json).
    """
    configure_logging(settings)
    signals.setup_logging.connect(_logging_configured, weak=False)
    app.Worker = _quiet(app.Worker)
    app.Beat = _quiet(app.Beat)
    celery.apps.worker.safe_say = _say_json


def _logging_configured(**_: Any) -> None:
    """Celery's setup_logging, after configure_logging: only the pool's own logger ("Process
    'ForkPoolWorker-1' ... exited with ...") is left, which propagates nowhere and would be
    printed bare by Python's last-resort handler. Its errors become root's lines, as Celery
    itself keeps only its errors."""
    pool = get_multiprocessing_logger()
    pool.propagate = True
    pool.setLevel(logging.ERROR)


_SAID = json_formatter()


def _say_json(msg: str, f: TextIO = sys.__stderr__) -> None:
    """Celery's ``safe_say`` as a JSON line: "worker: Warm shutdown (MainProcess)" and the like,
    said from a signal handler with one ``os.write``, where logging (its handlers' locks) has
    no place, as Celery's own function does."""
    record = logging.makeLogRecord({"name": celery.apps.worker.__name__, "msg": msg,
                                    "levelname": "INFO", "levelno": logging.INFO})
    with contextlib.suppress(OSError, ValueError):
        os.write(f.fileno(), f"{_SAID.format(record)}\n".encode())


def _quiet(program: type) -> type:
    """``celery worker`` or ``celery beat`` as if given ``--quiet``: no banner on stdout."""

    class Quiet(program):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "quiet": True})

    Quiet.__name__ = Quiet.__qualname__ = program.__name__
    return Quiet


def _one_line_retries(record: logging.LogRecord) -> bool:
    """Celery logs each retry of a result-backend operation with the whole traceback, every few
    seconds per process while Redis is away: one line with the reason says as much."""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
        record.args, record.exc_info, record.exc_text = None, None, None
    return True


app = create_worker_app(Settings.from_env_or_exit())
