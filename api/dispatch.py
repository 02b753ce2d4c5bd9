"""Accepting tasks: store each one as PENDING, then hand it to RabbitMQ or to Celery."""

from __future__ import annotations

import dataclasses
import logging

from aiohttp import web

from api.publisher import BrokerUnavailable
from api.store import Method, Task
from api.typedefs import celery_key, publisher_key, store_key
from api.validation import TaskRequest
from common.messages import TaskMessage

log = logging.getLogger(__name__)


class DispatchFailed(RuntimeError):
    """The broker took none or only some of the tasks; ``sent`` lists those it took."""

    def __init__(self, reason: str, sent: list[Task]) -> None:
        super().__init__(reason)
        self.sent = sent


async def submit(app: web.Application, request: TaskRequest) -> list[Task]:
    store = app[store_key]
    sent: list[Task] = []
    for _ in range(request.count):
        task = store.create(request.method, request.timeout, request.fail)
        # The client is told about the task as it was accepted (PENDING): a fast worker may
        # already have reported IN_PROGRESS by the time the broker confirms the publish.
        accepted = dataclasses.replace(task)
        message = TaskMessage(task.task_num, request.timeout, request.fail)
        try:
            if request.method is Method.RMQ:
                await app[publisher_key].publish(message, request.routing_key)
            else:
                # Both paths share one broker, and the publisher's connection notices at once
                # when it goes away; Celery's client would only find out by hanging.
                await app[publisher_key].wait_connected()
                accepted.celery_id = await app[celery_key].send(message)
                store.set_celery_id(task.task_num, accepted.celery_id)
        except BrokerUnavailable as exc:
            # Not in any queue, so no worker will ever report on it: forget it rather than
            # show a task stuck in PENDING forever.
            store.discard(task.task_num)
            log.warning("task %s: not sent via %s: %s", task.task_num, request.method, exc)
            raise DispatchFailed(str(exc), sent) from exc
        sent.append(accepted)
    return sent
