"""Celery tasks: thin, plain JSON arguments, the same task lifecycle as the consumer's."""

from __future__ import annotations

import functools
import logging
import time

from celery import Task, shared_task
from celery.utils.log import get_task_logger

from callback_client import StatusReporter, make_worker_id
from common import topology
from common.messages import InvalidField, TaskMessage, parse_task_num
from common.settings import Settings
from common.statuses import TaskStatus
from task_lifecycle import Ending, run_task

log = get_task_logger(__name__)


FAIL_RETRIES = 3  # the error lesson: a task sent with fail is retried three times, then ERROR


class SimulatedFailure(RuntimeError):
    """Raised on purpose when a task was sent with ``fail``: the retry and error lesson."""


class FailedForGood(RuntimeError):
    """A task sent with ``fail`` failed its last retry: not retried again, it ends in ERROR."""


class ReportRefused(RuntimeError):
    """The API refused the worker's status report (401: CALLBACK_TOKEN differs). Retried for as
    long as it takes to fix the token, so that the task is not lost meanwhile."""


@functools.cache
def reporter() -> StatusReporter:
    # Created on first use inside each pool process, after the fork: an HTTP session must not be
    # shared between processes.
    return StatusReporter(Settings.from_env(), make_worker_id("celery"))


class ReportingTask(Task):
    # The arguments are whatever the sender put in the message, checked or not: logged with
    # %r, so that no value can start a line of its own in the log.
    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        # A refused report repeats for every task until the token is fixed: the reporter's
        # ERROR, once a minute, says it; a line per retry would bury it.
        log.log(
            logging.DEBUG if isinstance(exc, ReportRefused) else logging.WARNING,
            "task %r: attempt %s failed (%r), retrying, worker=%s",
            kwargs.get("task_num"), self.request.retries + 1, exc, reporter().worker_id,
        )

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # Called once the retries are used up (not after each attempt).
        task_num = kwargs.get("task_num")
        log.error("task %r: failed for good (%r), worker=%s", task_num, exc, reporter().worker_id)
        try:
            task_num = parse_task_num(task_num)
        except InvalidField:
            return  # no task of the API's: there is nobody to tell
        reporter().report(task_num, TaskStatus.ERROR)


@shared_task(
    bind=True,
    base=ReportingTask,
    name=topology.PROCESS_TASK,
    # Retried after 2, 4, 8, then every 16 seconds. Without a limit here (max_retries=None): a
    # refused report is retried until the token is fixed; a task sent with fail stops after
    # FAIL_RETRIES by itself.
    autoretry_for=(SimulatedFailure, ReportRefused),
    max_retries=None,
    retry_backoff=2,
    retry_backoff_max=16,
    retry_jitter=False,
)
def process_task(self: Task, task_num: int, timeout: float, fail: bool = False) -> str:
    """Simulate ``timeout`` seconds of work on task ``task_num``, reporting its progress."""
    # The consumer's own checks: a task sent around the API (from a shell, say) with a bad
    # argument fails at once with the reason, instead of sleeping for a day.
    message = TaskMessage.from_dict({"task_num": task_num, "timeout": timeout, "fail": fail})
    # With acks_late, a task whose worker died before the ack comes back flagged by the broker.
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    ending = run_task(message, reporter(), work_for, redelivered=redelivered)
    if ending is Ending.UNAUTHORIZED:
        raise ReportRefused(f"task {task_num}: the API refused the status report (401)")
    if ending is Ending.FAILED:
        if self.request.retries >= FAIL_RETRIES:
            raise FailedForGood(f"task {task_num} was sent with fail=true")  # on_failure: ERROR
        raise SimulatedFailure(f"task {task_num} was sent with fail=true")  # Celery retries it
    return ending.value


def work_for(seconds: float) -> bool:
    """The simulated work. A Celery task is never asked to stop halfway, so it always ends."""
    time.sleep(seconds)
    return True
