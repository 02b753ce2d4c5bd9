"""``GET /metrics``: the API's figures for Prometheus (prometheus-client's text format).

Every application has a registry of its own, made in the factory: the process-wide default one
would make a second app in the same process (the tests build many) register every metric twice.

/metrics is open even when API_TOKEN is set, as /healthz is: it shows counts and timings, no
task, no setting, no secret, and a Prometheus server is configured to scrape it without a login.
Where the figures themselves are private, the port is kept off the public network (as the
management UI's should be), not behind the token every script shares.

How long the oldest task has waited, per method, is read from the task store, not from
RabbitMQ: the broker reports the age of a queue's head message (the management API's
``head_message_timestamp``) only for messages that carry an AMQP timestamp, which neither the
course's messages nor Celery's do, and only for classic queues. A task PENDING in the store is
exactly a message waiting in its queue (api.store.is_waiting), on both paths and both queue
types, and each store keeps the oldest one at hand.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from api.connection import BrokerConnection
from api.errors import BrokerUnavailable
from api.events import TaskEvents
from api.model import Task
from api.queues import QueueAdmin
from api.store import StoreUnavailable, TaskStore

log = logging.getLogger(__name__)

# The JSON API's routes are labelled "api.<name>": the page has routes of the same names.
ACCEPT_ROUTE = "api.create_tasks"
# Accepting is a store write and a confirmed publish: about a millisecond on a quiet machine.
ACCEPT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(
        self,
        events: TaskEvents,
        connection: BrokerConnection,
        queue_admin: QueueAdmin,
        queues: tuple[str, ...],
        store: TaskStore,
    ) -> None:
        self.registry = registry = CollectorRegistry()
        self._store = store
        self._connection = connection
        self._queue_admin = queue_admin
        self._queues = queues
        self.requests = Counter(
            "api_requests", "HTTP requests answered, by route name and status code",
            ["route", "status"], registry=registry,
        )
        self.tasks_accepted = Counter(
            "api_tasks_accepted", "Tasks accepted and handed to the broker, by method",
            ["method"], registry=registry,
        )
        self.tasks_finished = Counter(
            "api_tasks_finished", "Tasks that reached a final status, by method and status",
            ["method", "status"], registry=registry,
        )
        self.accept_seconds = Histogram(
            "api_task_accept_seconds", "Time to answer an accepted POST /api/tasks (202)",
            buckets=ACCEPT_BUCKETS, registry=registry,
        )
        live = Gauge("api_live_streams", "Live pages (event streams) open now", registry=registry)
        live.set_function(lambda: len(events))
        connected = Gauge("api_broker_connected", "1 while the API's connection to RabbitMQ is up",
                          registry=registry)
        connected.set_function(lambda: connection.connected)
        self.queue_ready = Gauge(
            "api_queue_messages_ready", "Messages waiting in a queue for a consumer, read at the"
            " scrape", ["queue"], registry=registry,
        )
        self.queue_consumers = Gauge(
            "api_queue_consumers", "Consumers of a queue, read at the scrape", ["queue"],
            registry=registry,
        )
        self.oldest_waiting = Gauge(
            "api_oldest_pending_task_age_seconds", "Seconds since the oldest task still PENDING"
            " (accepted, not yet taken by a worker) was accepted, by method; 0 when none waits."
            " Read from the task store at the scrape", ["method"], registry=registry,
        )

    def accepted(self, tasks: list[Task]) -> None:
        """The dispatcher's listener: these tasks were handed to the broker."""
        for task in tasks:
            self.tasks_accepted.labels(task.method).inc()

    def finished(self, task: Task) -> None:
        """The store's listener: this task has just become DONE or ERROR."""
        self.tasks_finished.labels(task.method, task.status).inc()

    async def read_queues(self) -> None:
        """Queue depths as the broker has them now (a passive declare, as the queues panel)."""
        self.queue_ready.clear()
        self.queue_consumers.clear()
        if not self._connection.connected:
            return  # no figure rather than a scrape that waits for the broker
        try:
            counts = await self._queue_admin.counts(list(self._queues))
        except BrokerUnavailable as exc:
            log.debug("no queue depths for /metrics: %s", exc)
            return
        for name, count in counts.items():
            if count is not None:
                self.queue_ready.labels(name).set(count[0])
                self.queue_consumers.labels(name).set(count[1])

    async def read_store(self) -> None:
        """The oldest waiting task's age of each method, as the store has it now."""
        self.oldest_waiting.clear()
        try:
            ages = await self._store.oldest_waiting_ages()
        except StoreUnavailable as exc:
            log.debug("no task ages for /metrics: %s", exc)
            return  # no figure rather than a wrong 0
        for method, age in ages.items():
            self.oldest_waiting.labels(method).set(age)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_label(request: web.Request) -> str:
    """The matched route's name (bounded, unlike the path), or why there is none."""
    route = request.match_info.route
    if route.name is None:
        return "unmatched"  # 404 and 405 from the router: the path is the client's, not ours
    return f"api.{route.name}" if len(request.match_info.apps) > 1 else route.name


def count_requests(metrics: Metrics) -> Middleware:
    """Count every answer by route and status, and time the accepted POST /api/tasks."""

    @web.middleware
    async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.requests.labels(route_label(request), exc.status).inc()
            raise
        except Exception:
            metrics.requests.labels(route_label(request), 500).inc()
            raise
        label = route_label(request)
        metrics.requests.labels(label, response.status).inc()
        if label == ACCEPT_ROUTE and response.status == 202:
            metrics.accept_seconds.observe(time.perf_counter() - started)
        return response

    return counted


def scrape(metrics: Metrics) -> Handler:
    """The handler of ``GET /metrics`` for ``metrics``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await metrics.read_queues()
        await metrics.read_store()
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle
