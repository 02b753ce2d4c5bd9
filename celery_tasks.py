"""Celery tasks: thin, plain JSON arguments, the same task lifecycle as the consumer's."""

from __future__ import annotations

import functools
import time
from datetime import datetime

from celery import Task, shared_task
from celery.app.task import Context
from celery.exceptions import Retry
from celery.signals import task_retry
from celery.utils.log import get_task_logger

from callback_client import StatusReporter, make_worker_id
from celery_config import FAIL_BACKOFF, FAIL_BACKOFF_MAX, FAIL_RETRIES
from common import topology
from common.logs import task_log
from common.messages import InvalidField, TaskMessage, parse_task_num
from common.settings import Settings
from common.statuses import TaskStatus
from task_lifecycle import REFUSED_PAUSE, Ending, run_task

log = get_task_logger(__name__)


BEAT_WORK_SECONDS = 1.0  # how long each task that Beat orders works


class SimulatedFailure(RuntimeError):
    """Raised on purpose when a task was sent with ``fail``: the retry and error lesson."""


class FailedForGood(RuntimeError):
    """A task sent with ``fail`` failed its last retry: not retried again, it ends in ERROR."""


class ReportNotRecorded(RuntimeError):
    """The API did not record the task's status report: it refused the token (CALLBACK_TOKEN
    differs), or it (or its store) was away past the report's retries. Retried every
    REFUSED_PAUSE for as long as that lasts, so that the task is not lost."""


@functools.cache
def reporter() -> StatusReporter:
    # Created on first use inside each pool process, after the fork: an HTTP session must not be
    # shared between processes.
    return StatusReporter(Settings.from_env(), make_worker_id("celery"))


class ReportingTask(Task):
    """Reports what the API cannot see otherwise: each retry (see report_retry), and the end."""

    def tries(self, request: Context | None = None) -> dict[str, int]:
        """Which try this is, of how many: the same fields on every report of the task."""
        retries = (request or self.request).retries
        return {"attempt": retries + 1, "max_attempts": FAIL_RETRIES + 1}

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # Called once the retries are used up (not after each attempt). The arguments are
        # whatever the sender put in the message, checked or not: task_log quotes what is not a
        # number, so that no value can start a line of its own in the log.
        task_num = kwargs.get("task_num")
        task_log(log, task_num, reporter().worker_id).error("failed for good (%r)", exc)
        try:
            task_num = parse_task_num(task_num)
        except InvalidField:
            return  # no task of the API's: there is nobody to tell
        reporter().report(task_num, TaskStatus.ERROR, **self.tries())


@task_retry.connect
def report_retry(sender: ReportingTask, request: Context, reason: Retry | None = None,
                 **_: object) -> None:
    """A try failed and Celery scheduled the next: report when, so that the page can count down.

    ``reason.when`` is Celery's own countdown (seconds), or an eta.
    """
    task_num = request.kwargs.get("task_num")
    task = task_log(log, task_num, reporter().worker_id)
    if reason is None:
        # Celery cancelled the running task because the broker connection dropped
        # (worker_cancel_long_running_tasks_on_connection_loss) and sends no reason: no try was
        # scheduled. The broker delivers the message again, and that run reports itself.
        task.debug("cancelled on a lost broker connection")
        return
    when = reason.when
    next_try_at = when.timestamp() if isinstance(when, datetime) else time.time() + when
    if isinstance(reason.exc, ReportNotRecorded):
        # Repeats for every task until the token is fixed or the API is back: the reporter's
        # own lines say why; a line per retry would bury them.
        task.debug("report not recorded, retrying in %.0f s", next_try_at - time.time())
        return
    tries = sender.tries(request)
    task.warning("attempt %s of %s failed (%r), next in %.0f s", tries["attempt"],
                 tries["max_attempts"], reason.exc, next_try_at - time.time())
    reporter().report(task_num, TaskStatus.IN_PROGRESS, next_try_at=next_try_at, **tries)


@shared_task(
    bind=True,
    base=ReportingTask,
    name=topology.PROCESS_TASK,
    # A task sent with fail is retried after 2, 4, then 8 seconds (celery_config.fail_retry_pauses:
    # exact, as jitter is off), and stops after FAIL_RETRIES by itself. No limit here
    # (max_retries=None): a refused report is retried, on its own schedule below, until the token
    # is fixed.
    autoretry_for=(SimulatedFailure,),
    max_retries=None,
    retry_backoff=FAIL_BACKOFF,
    retry_backoff_max=FAIL_BACKOFF_MAX,
    retry_jitter=False,
)
def process_task(self: ReportingTask, task_num: int, timeout: float, fail: bool = False) -> str:
    """Simulate ``timeout`` seconds of work on task ``task_num``, reporting its progress."""
    # The consumer's own checks: a task sent around the API (from a shell, say) with a bad
    # argument fails at once with the reason, instead of sleeping for a day.
    message = TaskMessage.from_dict({"task_num": task_num, "timeout": timeout, "fail": fail})
    ending = run_task(message, reporter(), work_for, redelivered=redelivered(self), **self.tries())
    if ending is Ending.UNRECORDED:
        # After the consumer's pause, not the growing backoff: until its countdown ends, a
        # retried task waits unacked in this worker's memory, out of every other worker's reach.
        raise self.retry(
            exc=ReportNotRecorded(f"task {task_num}: the API did not record the status report"),
            countdown=REFUSED_PAUSE,
        )
    if ending is Ending.FAILED:
        if self.request.retries >= FAIL_RETRIES:
            raise FailedForGood(f"task {task_num} was sent with fail=true")  # on_failure: ERROR
        raise SimulatedFailure(f"task {task_num} was sent with fail=true")  # Celery retries it
    return ending.value


@shared_task(bind=True, base=ReportingTask, name=topology.SUMMARY_TASK)
def summarize(self: ReportingTask, results: list[str], task_num: int) -> int:
    """A chord's body: runs once every member has finished, gets their results, counts DONE."""
    run_task(TaskMessage(task_num, timeout=0), reporter(), work_for, redelivered=redelivered(self))
    return results.count(Ending.DONE.value)


@shared_task(name=topology.BEAT_TASK)
def beat_tick() -> int:
    """Celery Beat sends this on its schedule: ask the API for one task, numbered like any."""
    task_num = reporter().order_task(BEAT_WORK_SECONDS)
    task_log(log, task_num, reporter().worker_id).info("ordered by Celery Beat")
    return task_num


def redelivered(task: Task) -> bool:
    """With acks_late, a task whose worker died before the ack comes back flagged by the broker."""
    return bool((task.request.delivery_info or {}).get("redelivered"))


def work_for(seconds: float) -> bool:
    """The simulated work. A Celery task is never asked to stop halfway, so it always ends."""
    time.sleep(seconds)
    return True
