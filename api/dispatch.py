"""Accepting tasks: store each one as PENDING, then hand it to RabbitMQ or to Celery."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import aiorwlock

from api.celery_client import CeleryClient
from api.errors import BrokerUnavailable
from api.model import Role, Task, TaskRequest, WorkflowKind, WorkflowRequest
from api.publisher import Publisher
from api.store import TaskStore
from common import topology
from common.logs import task_log
from common.messages import InvalidField, TaskMessage
from common.tasks import Method

log = logging.getLogger(__name__)


class DispatchFailed(BrokerUnavailable):
    """The broker took none or only some of the tasks; ``sent`` lists those it took."""

    def __init__(self, reason: str, sent: list[Task], asked: int) -> None:
        if sent:
            message_ru = (f"Брокер недоступен: отправлено {len(sent)} из {asked},"
                          " остальные задачи не отправлены")
        else:
            message_ru = ("Брокер недоступен, задачи не отправлены. Попробуйте ещё раз через"
                          " несколько секунд")
        super().__init__(reason, message_ru, tasks=[task.to_dict() for task in sent])
        self.sent = sent
        self.asked = asked


# Unconfirmed publishes of one request: the broker confirms them in groups, so each costs the
# API less CPU than one at a time (`make bench`, "publishing alone").
IN_FLIGHT = 32

# The queue each method's tasks wait in for a worker.
QUEUE_OF = {Method.RMQ: topology.QUEUE, Method.CELERY: topology.CELERY_QUEUE}


class Dispatcher:
    def __init__(self, store: TaskStore, publisher: Publisher, celery: CeleryClient) -> None:
        self._store = store
        self._publisher = publisher
        self._celery = celery
        # Per queue: any number of requests create and send tasks at once (readers), while
        # paused() is held by one (the writer). fast: an uncontended lock is taken without a
        # pass through the event loop, on every accepted request.
        self._sending = {method: aiorwlock.RWLock(fast=True) for method in Method}
        self._accept_listeners: list[Callable[[list[Task]], None]] = []

    def add_accept_listener(self, listener: Callable[[list[Task]], None]) -> None:
        """Call ``listener(tasks)`` with the tasks the broker took, after each submit: the
        metrics count them."""
        self._accept_listeners.append(listener)

    def _accepted(self, tasks: list[Task]) -> None:
        for listener in self._accept_listeners:
            listener(tasks)

    async def submit(self, request: TaskRequest) -> list[Task]:
        """Create ``request.count`` tasks and send them all; the tasks as they were accepted.

        Raises StoreFull, before creating any, if the store has no room for them all, and
        DispatchFailed, listing the tasks that did go out, if the broker took only some or none.
        """
        async with self._sending[request.method].reader:
            return await self._submit(request)

    async def _submit(self, request: TaskRequest) -> list[Task]:
        # All or none: StoreFull if there is no room for every task.
        tasks = await self._store.create_many(
            request.count,
            request.method,
            request.timeout,
            request.fail,
            replay_of=request.replay_of,
            source=request.source,
        )
        # The client is told about each task as it was accepted (PENDING): a fast worker may
        # already have reported IN_PROGRESS by the time the broker confirms the publish.
        accepted = [dataclasses.replace(task) for task in tasks]
        # Together, not one after another: the broker confirms them in groups instead of one
        # round trip per task. At most IN_FLIGHT at a time: the gain stops there, the memory
        # each unconfirmed message holds does not.
        window = asyncio.Semaphore(IN_FLIGHT)
        failures: list[tuple[Task, BrokerUnavailable]] = []

        async def send(task: Task) -> bool:
            """True once the broker has ``task``; False if it failed or was not tried."""
            async with window:
                if failures:  # the broker is gone: do not make each of the rest wait for it
                    return False
                try:
                    await self._send(task, request.routing_key)
                except BrokerUnavailable as exc:
                    failures.append((task, exc))
                    return False
                return True

        # A bug (anything but BrokerUnavailable) propagates as it is: the middleware logs it.
        sent_flags = await asyncio.gather(*map(send, accepted))
        if not failures:
            self._accepted(accepted)
            return accepted
        sent = []
        for task, was_sent in zip(accepted, sent_flags, strict=True):
            if was_sent:
                sent.append(task)
            else:
                # Not in any queue, so no worker will ever report on it: forget it rather than
                # show a task stuck in PENDING forever.
                await self._store.discard(task.task_num)
        self._accepted(sent)
        first, exc = failures[0]
        task_log(log, first.task_num).warning(
            "not sent via %s: %s (%s of the request's %s tasks not sent)",
            request.method, exc, request.count - len(sent), request.count)
        raise DispatchFailed(exc.reason, sent, request.count) from exc

    async def submit_workflow(self, request: WorkflowRequest) -> tuple[str, list[Task]]:
        """Create a workflow's tasks and send them to Celery as one canvas; all or nothing."""
        if request.kind is WorkflowKind.CHORD and not self._celery.runs_chords:
            raise InvalidField(
                "kind",
                "a chord needs a result backend every process can read (RESULT_BACKEND=redis://…)",
                "аккорду нужен общий бэкенд результатов (RESULT_BACKEND=redis://…)",
            )
        async with self._sending[Method.CELERY].reader:
            return await self._submit_workflow(request)

    async def _submit_workflow(self, request: WorkflowRequest) -> tuple[str, list[Task]]:
        workflow_id = uuid.uuid4().hex[:12]
        shared = dict(method=Method.CELERY, workflow_id=workflow_id, workflow_kind=request.kind)
        drafts = [
            dict(shared, timeout=request.timeout, fail=position == request.fail_member,
                 role=Role.MEMBER)
            for position in range(1, request.count + 1)
        ]
        if request.kind is WorkflowKind.CHORD:
            drafts.append(dict(shared, timeout=0, role=Role.SUMMARY))
        # All or none: a workflow cut short by a full store would never finish.
        tasks = await self._store.create_each(drafts, chain=request.kind is WorkflowKind.CHAIN)
        members = [task for task in tasks if task.role is Role.MEMBER]
        summary = tasks[-1] if request.kind is WorkflowKind.CHORD else None
        accepted = [dataclasses.replace(task) for task in tasks]
        try:
            celery_ids = await self._celery.send_workflow(
                request.kind,
                [TaskMessage(task.task_num, task.timeout, task.fail) for task in members],
                summary.task_num if summary else None,
            )
        except BrokerUnavailable as exc:
            for task in tasks:
                await self._store.discard(task.task_num)
            log.warning("workflow %s: not sent: %s", workflow_id, exc)
            raise DispatchFailed(exc.reason, [], len(tasks)) from exc
        for task in accepted:
            task.celery_id = celery_ids[task.task_num]
            await self._store.set_celery_id(task.task_num, task.celery_id)
        self._accepted(accepted)
        return workflow_id, accepted

    @contextlib.asynccontextmanager
    async def paused(self, method: Method) -> AsyncIterator[None]:
        """No task of ``method`` is created or sent while this is held: it waits for those
        under way, and new requests wait for it. A purge forgets exactly the tasks whose
        messages it removed."""
        async with self._sending[method].writer:
            yield

    async def _send(self, task: Task, routing_key: str) -> None:
        message = TaskMessage(task.task_num, task.timeout, task.fail)
        if task.method is Method.RMQ:
            await self._publisher.publish(message, routing_key)
        else:
            task.celery_id = await self._celery.send(message)
            await self._store.set_celery_id(task.task_num, task.celery_id)
