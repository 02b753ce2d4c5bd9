"""The broker topology, described once as data.

The API (aio-pika), the consumer (pika), Celery and ``rmq/definitions.json`` all declare exactly
these names and arguments, so whichever process starts first, none fails with PRECONDITION_FAILED.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# The course publishes to a fanout exchange: every bound queue gets a copy, the routing key is ignored.
EXCHANGE = "to_direct"
QUEUE = "test_direct"
# Messages rejected with requeue=False go through this exchange into the dead-letter queue.
DEAD_LETTER_EXCHANGE = "test_direct_dlx"
DEAD_LETTER_QUEUE = "test_direct_rejected"
# Celery keeps to its own queue on the same broker. The API sends the task by this name and
# never imports the worker's code: in production the two are separate deployments.
CELERY_QUEUE = "celery"
PROCESS_TASK = "celery_tasks.process_task"
SUMMARY_TASK = "celery_tasks.summarize"  # a chord's body
BEAT_TASK = "celery_tasks.beat_tick"  # what Celery Beat sends on its schedule

# Tasks one worker runs at once: the consumer's task threads, a Celery worker's pool processes.
CONCURRENCY = 3
# Unacked messages the broker hands the consumer: one for each of its task threads, so that the
# rest of the queue stays with the broker for other consumers.
PREFETCH_COUNT = CONCURRENCY

# The queue types RMQ_QUEUE_TYPE may name.
CLASSIC = "classic"
QUORUM = "quorum"
QUEUE_TYPES = (CLASSIC, QUORUM)
# A quorum queue counts deliveries: a message whose consumers died (or that was requeued) this
# many times goes to the dead letters instead of crashing consumers forever. A classic queue
# cannot count, so there a poison message loops.
DELIVERY_LIMIT = 5


@dataclasses.dataclass(frozen=True)
class Exchange:
    name: str
    type: str = "fanout"
    durable: bool = True


@dataclasses.dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)
    durable: bool = True


@dataclasses.dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str = ""


EXCHANGES = (Exchange(EXCHANGE), Exchange(DEAD_LETTER_EXCHANGE))


def queues(queue_type: str = CLASSIC) -> tuple[Queue, ...]:
    """The demo's own queues, classic or quorum (RMQ_QUEUE_TYPE).

    A queue's type is fixed when it is declared: a vhost that has the classic ones answers a
    quorum declaration with PRECONDITION_FAILED, so quorum mode needs a fresh vhost or cluster.
    """
    dead_lettered = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    if queue_type == CLASSIC:
        return Queue(QUEUE, arguments=dead_lettered), Queue(DEAD_LETTER_QUEUE)
    quorum = {"x-queue-type": QUORUM}
    main = {
        **quorum,
        **dead_lettered,
        "x-delivery-limit": DELIVERY_LIMIT,
        # By default a quorum queue dead-letters at most once: a message is lost if the
        # dead-letter queue's node is down at that moment. At least once keeps it until the
        # dead-letter queue confirms, which needs reject-publish when the queue is full.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    return Queue(QUEUE, arguments=main), Queue(DEAD_LETTER_QUEUE, arguments=quorum)
BINDINGS = (Binding(EXCHANGE, QUEUE), Binding(DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE))
