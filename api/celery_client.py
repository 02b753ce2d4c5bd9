"""Sending tasks to Celery from the event loop without blocking it.

Celery's client is synchronous (``delay()`` talks to the broker and waits for its confirm before
it returns), so every Celery call of the API runs in a thread: the loop stays free. With Redis as
the result backend any thread may send and read, and several sends wait for their confirms at
once, one thread per connection of Celery's pool. The ``rpc://`` backend delivers results to the
thread that sent the task, so with it there is one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from amqp.exceptions import AMQPError
from celery import Celery, chain, chord, group, uuid
from celery.backends.rpc import BacklogLimitExceeded, RPCBackend
from celery.canvas import Signature
from celery.events.dispatcher import EventDispatcher
from kombu.exceptions import OperationalError

from api.errors import BrokerUnavailable, describe
from api.model import WorkflowKind
from celery_config import RETRY_POLICY
from common import topology
from common.logs import task_log
from common.messages import TaskMessage

log = logging.getLogger(__name__)

# Publishes retry as celery_config.RETRY_POLICY says: with the broker down, a request fails in
# about two seconds, not hangs. Except where Celery ignores it: after a connection broke, the
# rpc:// backend re-declares its reply queue with unbounded retries (celery/celery#6911). Past
# this, the client gets a 503; if that send completes once the broker is back, the worker finds
# the task unknown and skips it.
SEND_TIMEOUT = 5.0
STATE_PASSES = 10  # up to 10,000 waiting results
STATE_TIMEOUT = 2.0


class CeleryClient:
    def __init__(self, app: Celery, broker_ready: Callable[[], Awaitable[None]]) -> None:
        """``broker_ready()`` returns once the broker is reachable, or raises BrokerUnavailable.

        Celery's own client finds a lost broker only by hanging (see SEND_TIMEOUT), so it asks
        something that notices at once before each send.
        """
        self._app = app
        self._broker_ready = broker_ready
        # Each sending thread holds one of the pool's connections while it waits for a confirm.
        threads = 1 if isinstance(app.backend, RPCBackend) else app.conf.broker_pool_limit
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="celery-client")
        # Calls beyond the threads wait here, not in the executor's queue: SEND_TIMEOUT then
        # counts from when a thread takes the call, even for the last task of a big batch.
        self._threads = asyncio.Semaphore(threads)
        self._thread = threading.local()

    async def _run(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def send(self, message: TaskMessage) -> str:
        """Queue ``process_task`` and return its Celery task id."""
        celery_id = await self._call(self._send, message)
        task_log(log, message.task_num).info("sent to Celery as %s", celery_id)
        return celery_id

    def _send(self, message: TaskMessage) -> str:
        # process_task.delay(**kwargs), by the task's name: the API does not import the
        # worker's code, just as a service in production would not.
        result = self._app.send_task(
            topology.PROCESS_TASK,
            kwargs=message.to_dict(),
            retry=True,
            retry_policy=RETRY_POLICY,
            event_dispatcher=self._event_dispatcher(),
        )
        # Only the id leaves this thread: a dropped AsyncResult takes the result backend's lock
        # (celery_config.SubscribeOnGetRedisBackend: nothing to unsubscribe from, as nobody waited),
        # which belongs here, not on the event loop.
        return result.id

    async def send_workflow(
        self, kind: WorkflowKind, members: list[TaskMessage], summary: int | None
    ) -> dict[int, str]:
        """Send a chain, a group or a chord (``summary``: its body's task number) as one canvas;
        return the Celery task id of every task number."""
        ids = await self._call(self._send_workflow, kind, members, summary)
        log.info("tasks %s: sent to Celery as a %s", ", ".join(map(str, ids)), kind)
        return ids

    def _event_dispatcher(self) -> EventDispatcher:
        """This thread's own sender of task-sent events (what Flower shows as "sent").

        Celery's default one is shared by all threads and publishes under a lock, waiting there
        for the broker's confirm: with it, the threads would send one task at a time.
        """
        dispatcher = getattr(self._thread, "events", None)
        if dispatcher is None:
            # Not enabled: it publishes only through the producer send_task hands it.
            dispatcher = self._thread.events = self._app.events.Dispatcher(enabled=False)
        return dispatcher

    def _send_workflow(
        self, kind: WorkflowKind, members: list[TaskMessage], summary: int | None
    ) -> dict[int, str]:
        ids = {message.task_num: uuid() for message in members}
        # Immutable (.si): a member does not take its predecessor's result as an argument.
        signatures = [
            self._signature(topology.PROCESS_TASK, ids[message.task_num], message.to_dict(),
                            immutable=True)
            for message in members
        ]
        if kind is WorkflowKind.CHAIN:
            canvas = chain(*signatures)
        elif kind is WorkflowKind.GROUP:
            canvas = group(signatures)
        else:
            ids[summary] = uuid()
            # The body gets the list of the members' results as its first argument.
            body = self._signature(topology.SUMMARY_TASK, ids[summary], {"task_num": summary})
            canvas = chord(signatures, body)
        canvas.apply_async(retry=True, retry_policy=RETRY_POLICY)
        return ids

    def _signature(self, name: str, task_id: str, kwargs: dict, **options) -> Signature:
        return self._app.signature(name, kwargs=kwargs, task_id=task_id, **options)

    async def _call(self, func, *args):
        """``func(*args)`` in a Celery thread, after checking the broker is there."""
        await self._broker_ready()
        try:
            async with self._threads:
                return await asyncio.wait_for(self._run(func, *args), SEND_TIMEOUT)
        except TimeoutError:
            # First: TimeoutError is an OSError too, and SEND_TIMEOUT deserves its own words.
            raise BrokerUnavailable("Celery could not reach the broker in time") from None
        except (OperationalError, AMQPError, OSError) as exc:
            # AMQPError: a channel error, such as NOT_FOUND for a queue whose only node is down.
            raise BrokerUnavailable(f"Celery could not reach the broker ({describe(exc)})") from exc

    @property
    def runs_chords(self) -> bool:
        """A chord's body waits for results of other processes: rpc:// cannot deliver those."""
        return not isinstance(self._app.backend, RPCBackend)

    async def state(self, celery_id: str) -> dict[str, Any]:
        """Celery's own view of the task: ``state`` (PENDING, STARTED, RETRY, SUCCESS, FAILURE)
        and ``result``, the return value or the error; both None, and ``error`` saying why, if
        it cannot be read now (Redis away: the worker then waits for it too)."""
        try:
            return await asyncio.wait_for(self._run(self._state, celery_id), STATE_TIMEOUT)
        except Exception as exc:  # a page must not fail because Celery's result store did
            log.warning("celery state of %s unavailable: %r", celery_id, exc)
            return {"state": None, "result": None,
                    "error": f"Celery's result backend cannot be read: {describe(exc)}"}

    def _state(self, celery_id: str) -> dict[str, Any]:
        # rpc:// results wait in one reply queue until somebody reads them, and one read looks
        # at no more than 1000 of them. After a big batch the task asked for may lie deeper:
        # each pass sets aside what it read for later questions, so a few passes reach it.
        for _ in range(STATE_PASSES - 1):
            with contextlib.suppress(BacklogLimitExceeded):
                return self._read(celery_id)
        return self._read(celery_id)

    def _read(self, celery_id: str) -> dict[str, Any]:
        result = self._app.AsyncResult(celery_id)
        state, value = result.state, result.result
        # A failed or retried task's result is the exception: shown as text.
        shown = value if value is None or isinstance(value, int | str) else repr(value)
        return {"state": state, "result": shown}

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
