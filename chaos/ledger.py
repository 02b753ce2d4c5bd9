"""The check after the run: every task the API accepted, as the store and the workers' logs tell
its end. Plain data in, plain data out, so it is tested without a broker."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from common.statuses import TaskStatus
from common.tasks import Method

# task_lifecycle.run_task logs one line as each run of a task starts its work...
WORKING = re.compile(r"task (\d+): working ")
# The API logs each status its store took (api/json_api.py), once the change is stored; a report
# it refused with 409 logs "a DONE task cannot become DONE" instead.
DONE_RECORDED = re.compile(r"task (\d+): DONE, worker=")


def count(pattern: re.Pattern[str], text: str) -> Counter[int]:
    return Counter(int(number) for number in pattern.findall(text))


def expected_runs(task: Mapping[str, Any]) -> int:
    """A task sent with fail runs once per Celery try (its retries are the lesson), else once."""
    if task["fail"] and task["method"] == Method.CELERY:
        return task["max_attempts"] or 1
    return 1


@dataclasses.dataclass
class Ledger:
    accepted: int = 0
    done: int = 0
    error: int = 0
    stuck: list[int] = dataclasses.field(default_factory=list)  # neither DONE nor ERROR
    lost: list[int] = dataclasses.field(default_factory=list)  # the store does not know them
    # ERROR though not sent with fail, or DONE though sent with it: an end without its reason.
    unexplained: list[int] = dataclasses.field(default_factory=list)
    done_twice: list[int] = dataclasses.field(default_factory=list)  # DONE recorded twice
    ran_again: list[int] = dataclasses.field(default_factory=list)  # worked on more than planned
    redelivered: list[int] = dataclasses.field(default_factory=list)  # redeliveries > 0
    # (task, seconds from accepted to its end): the slowest of those not sent with fail.
    longest: tuple[int, float] | None = None

    def problems(self) -> list[str]:
        """What fails the run, each with the tasks it is about."""
        found = []
        for name, tasks in (
            ("not finished (neither DONE nor ERROR)", self.stuck),
            ("accepted with a 202 but unknown to the store", self.lost),
            ("ended without their reason (ERROR not sent with fail, or DONE sent with it)",
             self.unexplained),
            ("recorded DONE more than once", self.done_twice),
        ):
            if tasks:
                shown = ", ".join(map(str, tasks[:50])) + (" ..." if len(tasks) > 50 else "")
                found.append(f"{len(tasks)} task(s) {name}: {shown}")
        return found


def check(accepted: list[int], tasks: Mapping[int, dict[str, Any] | None], log_text: str
          ) -> Ledger:
    """``tasks``: each accepted number as ``GET /api/tasks/N`` last answered (None: 404);
    ``log_text``: every service's log (supervisor's)."""
    runs, done_lines = count(WORKING, log_text), count(DONE_RECORDED, log_text)
    ledger = Ledger(accepted=len(accepted))
    for number in sorted(accepted):
        task = tasks.get(number)
        if task is None:
            ledger.lost.append(number)
            continue
        status = TaskStatus(task["status"])
        if not status.is_final:
            ledger.stuck.append(number)
            continue
        if status is TaskStatus.DONE:
            ledger.done += 1
        else:
            ledger.error += 1
        if (status is TaskStatus.ERROR) != bool(task["fail"]):
            ledger.unexplained.append(number)
        if done_lines[number] > 1:
            ledger.done_twice.append(number)
        if runs[number] > expected_runs(task):
            ledger.ran_again.append(number)
        if task["redeliveries"]:
            ledger.redelivered.append(number)
        took = task["finished_at"] - task["created_at"]
        # A task sent with fail waits out Celery's retries (2 + 4 + 8 s) on purpose.
        if not task["fail"] and (ledger.longest is None or took > ledger.longest[1]):
            ledger.longest = (number, took)
    return ledger
