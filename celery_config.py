"""The Celery configuration both sides share: the API's client and the worker, Beat and Flower.

Both must agree on the broker, the queue, the serializer and the result backend, so one function
builds the app from the settings. The API calls it with its settings; the worker's module,
``celery_app``, adds what only a worker needs.
"""

from urllib.parse import urlsplit

from celery import Celery
from celery.backends.redis import RedisBackend
from celery.utils.time import get_exponential_backoff_interval

from common import topology
from common.settings import URL_SEPARATOR, Settings
from common.tls import celery_ssl

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
        # The price: a second confirmed publish per task (measured in `make bench`).
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
    broker_ssl = celery_ssl(settings)
    if broker_ssl is not None:
        app.conf.broker_use_ssl = broker_ssl
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
    never waits for a result (it reads a task's state when asked), and those round trips are a
    good part of its cost per Celery task. ``.get()`` still works: it subscribes, then reads a
    result that may already be stored.
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
    }
