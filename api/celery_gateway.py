"""Sending tasks to Celery from the event loop without blocking it.

Celery's client is synchronous (``delay()`` talks to the broker before it returns), and its
``rpc://`` result backend delivers results to the thread that sent the task. So every Celery call
of the API runs in one dedicated thread: the loop stays free and results find their way back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from celery import Celery
from celery.backends.rpc import BacklogLimitExceeded
from kombu.exceptions import OperationalError

from api.publisher import BrokerUnavailable
from celery_tasks import process_task
from common.messages import TaskMessage

log = logging.getLogger(__name__)

# Bounded broker retries: with the broker down, a request fails in about two seconds, not hangs.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
# ...except where Celery ignores them: after a connection broke, the rpc:// backend re-declares
# its reply queue with unbounded retries (celery/celery#6911). Past this, the client gets a 503;
# if that send completes once the broker is back, the worker finds the task unknown and skips it.
SEND_TIMEOUT = 5.0
STATE_PASSES = 10  # up to 10,000 waiting results


class CeleryGateway:
    def __init__(self, app: Celery) -> None:
        self._app = app
        # One thread, made the Celery "current app" so that the shared task resolves to our app.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="celery-client", initializer=app.set_current
        )

    async def _run(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def send(self, message: TaskMessage) -> str:
        """Queue ``process_task`` and return its Celery task id."""
        try:
            result = await asyncio.wait_for(self._run(self._send, message), SEND_TIMEOUT)
        except OperationalError as exc:
            raise BrokerUnavailable(f"Celery could not reach the broker: {exc}") from exc
        except TimeoutError:
            raise BrokerUnavailable("Celery could not reach the broker in time") from None
        log.info("task %s: sent to Celery as %s", message.task_num, result.id)
        return result.id

    @staticmethod
    def _send(message: TaskMessage):
        return process_task.apply_async(
            kwargs={"task_num": message.task_num, "timeout": message.timeout, "fail": message.fail},
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )

    async def state(self, celery_id: str) -> str:
        """Celery's own view of the task (PENDING, STARTED, RETRY, SUCCESS, FAILURE)."""
        return await self._run(self._state, celery_id)

    def _state(self, celery_id: str) -> str:
        # rpc:// results wait in one reply queue until somebody reads them, and one read looks
        # at no more than 1000 of them. After a big batch the task asked for may lie deeper:
        # each pass sets aside what it read for later questions, so a few passes reach it.
        for _ in range(STATE_PASSES - 1):
            with contextlib.suppress(BacklogLimitExceeded):
                return self._app.AsyncResult(celery_id).state
        return self._app.AsyncResult(celery_id).state

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
