"""The one sequence both workers run for a task: report IN_PROGRESS, work, report DONE.

The consumer (pika) and the Celery task call :func:`run_task` and act on what it returns; each
keeps only what is its own: acks and rejects for the consumer, retries for Celery. Reporting
ERROR is theirs too, because they decide when a failure is final (at once for the consumer,
after the last retry for Celery).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from callback_client import Outcome, StatusReporter
from common.logs import task_log
from common.messages import TaskMessage
from common.statuses import TaskStatus

log = logging.getLogger(__name__)

# A task whose result the API did not record (a wrong CALLBACK_TOKEN, or the API or its store
# away) goes back to its queue after this pause, in either worker: it would come back at once and
# must not spin, and it must not be held (unacked, out of other workers' reach) much longer.
REFUSED_PAUSE = 5.0


class Ending(enum.Enum):
    """How one run of a task ended, which tells the worker what to do with its message."""

    DONE = "done"
    # Sent with ``fail``: the error lesson. The worker rejects the message or retries the task.
    FAILED = "failed"
    # Nobody waits for the result (the task already ended, or the API forgot it): settle the
    # message without working. This is what makes a redelivered message safe to run again.
    SKIPPED = "skipped"
    # The worker is stopping: leave the message unsettled, the broker redelivers it.
    INTERRUPTED = "interrupted"
    # Nothing this run did was recorded: the API refused the worker's token (401), so the task
    # was not worked on, or the API did not record its result (refused, or away past the
    # report's retries). The worker puts it back for later, after a pause: it runs again.
    UNRECORDED = "unrecorded"


def run_task(
    message: TaskMessage,
    reporter: StatusReporter,
    work: Callable[[float], bool],
    *,
    redelivered: bool = False,
    attempt: int | None = None,
    max_attempts: int | None = None,
) -> Ending:
    """Run one task; ``work(seconds)`` does the (simulated) work, False if it was cut short.

    ``redelivered``: the broker says an earlier delivery of this message was never acked (its
    worker died, or lost its connection). The page shows it; the run is the same. ``attempt``
    of ``max_attempts``: which try this is, where the worker retries (Celery).
    """
    task_num = message.task_num
    task = task_log(log, task_num, reporter.worker_id)
    if redelivered:
        task.info("redelivered")
    tries = {"attempt": attempt, "max_attempts": max_attempts}
    outcome = reporter.report(
        task_num, TaskStatus.IN_PROGRESS, redelivered=redelivered or None, **tries
    )
    if outcome is Outcome.UNAUTHORIZED:
        # DEBUG: every task meets it until the token is fixed; the reporter's ERROR says why.
        task.debug("not started, the API refused the report")
        return Ending.UNRECORDED
    if outcome.work_unwanted:
        task.info("skipped (%s)", outcome.value)
        return Ending.SKIPPED
    task.info("working %.1f s", message.timeout)
    if not work(message.timeout):
        task.info("interrupted by shutdown, will be redelivered")
        return Ending.INTERRUPTED
    if message.fail:
        task.warning("failed on purpose")
        return Ending.FAILED
    done = reporter.report(task_num, TaskStatus.DONE, **tries)
    if done.not_recorded:
        # The token changed while the task ran, or the API (or its store) is away: its result is
        # not recorded, so it runs again rather than stay IN_PROGRESS on the page forever.
        task.info("done, but the API did not record it (%s); back to the queue", done.value)
        return Ending.UNRECORDED
    # ALREADY_FINAL: another delivery of the same message finished first (at least once), or
    # this very report was recorded and its retry, after a lost answer, heard 409.
    recorded = ", DONE already recorded" if done is Outcome.ALREADY_FINAL else ""
    task.info("done%s", recorded)
    return Ending.DONE
