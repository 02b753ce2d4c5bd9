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

PREFETCH_COUNT = 3


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
QUEUES = (
    Queue(QUEUE, arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}),
    Queue(DEAD_LETTER_QUEUE),
)
BINDINGS = (Binding(EXCHANGE, QUEUE), Binding(DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE))
