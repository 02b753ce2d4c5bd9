"""The in-memory task store, as in the course, made safe for a long run.

It is bounded, and only finished tasks make room: the one that finished first is evicted first.
A task somebody still waits for is never dropped; when every task in memory is unfinished, new
ones are refused (:class:`StoreFull`) instead. Task numbers never repeat, not even across API
restarts: a late message from an earlier run must not update a new task of the same number.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api import workflows
from api.errors import ApiError
from api.model import StatusReport, Task
from common.statuses import TaskStatus, can_transition
from common.tasks import Method

log = logging.getLogger(__name__)


class UnknownTask(LookupError):
    pass


class TransitionNotAllowed(ValueError):
    def __init__(self, current: TaskStatus, new: TaskStatus) -> None:
        super().__init__(f"a {current} task cannot become {new}")
        self.current = current
        self.new = new


class StoreFull(ApiError):
    """There is no room for the tasks asked for without dropping one that is not finished;
    none of them was created."""

    status = 503

    def __init__(self, room: int, asked: int, limit: int) -> None:
        super().__init__(
            f"store full: room for {room} more tasks, {asked} asked; the API keeps"
            f" {limit} tasks in memory (TASK_STORE_LIMIT) and only finished ones make room",
            f"В памяти API нет места: можно добавить задач — {room}, а отправлено {asked}."
            f" API держит {limit} задач (TASK_STORE_LIMIT), и место освобождают только"
            " завершённые: дождитесь их или очистите очередь",
            tasks=[],
        )


class TaskNumbers:
    """Increasing task numbers that survive restarts, at one small file write per block.

    The file holds the highest number handed out or reserved. A restart continues after it, so
    a crash wastes at most one block of numbers and never reuses one.
    """

    def __init__(self, path: str | os.PathLike[str], block: int = 1000) -> None:
        if block < 1:
            raise ValueError("block must be at least 1")
        self._path = Path(path)
        self._block = block
        self._next = self._read_reserved() + 1
        self._reserved = self._next - 1

    def _read_reserved(self) -> int:
        try:
            return int(self._path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def _reserve(self, upto: int) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(f"{upto}\n")
        # os.replace is atomic: a crash leaves the old or the new high-water mark, never half.
        os.replace(tmp, self._path)
        self._reserved = upto

    def close(self) -> None:
        """On a clean shutdown, give back the unused rest of the block: the next run continues
        right after the last number handed out instead of skipping to the next block."""
        if self._reserved >= self._next:
            self._reserve(self._next - 1)

    def take(self) -> int:
        if self._next > self._reserved:
            self._reserve(self._next + self._block - 1)
        number = self._next
        self._next += 1
        return number


class TaskStore:
    def __init__(self, numbers: TaskNumbers, limit: int) -> None:
        self._numbers = numbers
        self._limit = limit
        self._tasks: OrderedDict[int, Task] = OrderedDict()
        # Finished tasks in the order they finished: the first of them is the next to evict.
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._listeners: list[Callable[[Task], None]] = []
        self._discard_listeners: list[Callable[[int], None]] = []
        self._finish_listeners: list[Callable[[Task], None]] = []

    def __len__(self) -> int:
        return len(self._tasks)

    def close(self) -> None:
        self._numbers.close()

    def add_listener(self, listener: Callable[[Task], None]) -> None:
        """Call ``listener(task)`` after every change: the live page subscribes here."""
        self._listeners.append(listener)

    def add_discard_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(task_num)`` when an unsent task is discarded: the page drops its row."""
        self._discard_listeners.append(listener)

    def add_finish_listener(self, listener: Callable[[Task], None]) -> None:
        """Call ``listener(task)`` once when a task becomes DONE or ERROR: the metrics count it."""
        self._finish_listeners.append(listener)

    def _changed(self, task: Task) -> None:
        for listener in self._listeners:
            listener(task)

    def room(self) -> int:
        """How many tasks may be created now: free places, and finished tasks that may go."""
        return self._limit - len(self._tasks) + len(self._finished)

    def make_room(self, count: int) -> None:
        """Raise StoreFull unless ``count`` tasks can be created without dropping unfinished ones."""
        room = self.room()
        if room < count:
            raise StoreFull(room, count, self._limit)

    def create_many(
        self, count: int, method: Method, timeout: float, fail: bool = False, **details: Any
    ) -> list[Task]:
        """``count`` new PENDING tasks; none at all (StoreFull) if there is no room for every one."""
        self.make_room(count)
        return [self.create(method, timeout, fail, **details) for _ in range(count)]

    def create(self, method: Method, timeout: float, fail: bool = False, **details: Any) -> Task:
        """A new PENDING task with the next number; ``details`` are more of Task's fields."""
        self.make_room(1)
        task = Task(self._numbers.take(), method, timeout, fail, **details)
        self._tasks[task.task_num] = task
        if len(self._tasks) > self._limit:
            evicted, _ = self._finished.popitem(last=False)
            del self._tasks[evicted]
        self._changed(task)
        return task

    def get(self, task_num: int) -> Task:
        try:
            return self._tasks[task_num]
        except KeyError:
            raise UnknownTask(task_num) from None

    def discard(self, task_num: int) -> None:
        """Forget a task nobody will ever report on: never sent, or purged from its queue."""
        if self._tasks.pop(task_num, None) is not None:
            self._finished.pop(task_num, None)
            for listener in self._discard_listeners:
                listener(task_num)

    def discard_waiting(self, method: Method) -> int:
        """Forget every PENDING task of ``method``: its queue was purged, no worker will report
        on it. How many there were."""
        waiting = [task.task_num for task in self._tasks.values()
                   if task.method is method and task.status is TaskStatus.PENDING]
        for task_num in waiting:
            self.discard(task_num)
        return len(waiting)

    def set_celery_id(self, task_num: int, celery_id: str) -> None:
        # A task purged while Celery was still taking it is gone already: nothing to note.
        if (task := self._tasks.get(task_num)) is not None:
            task.celery_id = celery_id

    def update_status(self, report: StatusReport) -> Task:
        """Apply a worker's report. Without ``worker_id`` (the course's own format) the task
        keeps the worker it had."""
        task = self.get(report.task_num)
        if report.redelivered:
            # Counted even when the status is refused below: a finished task whose message came
            # back is the at-least-once lesson (the worker then skips the work).
            task.redeliveries += 1
        if not can_transition(task.status, report.status):
            if report.redelivered:
                self._changed(task)
            raise TransitionNotAllowed(task.status, report.status)
        now = time.time()
        retrying = report.next_try_at is not None
        if report.status is TaskStatus.IN_PROGRESS and not retrying:
            task.started_at = now
        elif report.status.is_final:
            self._finish(task, now)
        task.status = report.status
        if report.worker_id is not None:
            task.worker_id = report.worker_id
        if report.attempt is not None:
            task.attempts = max(task.attempts, report.attempt)
            task.max_attempts = report.max_attempts
        task.next_try_at = report.next_try_at  # set while a retry waits, cleared by any other
        self._changed(task)
        if report.status.is_final:
            self._ended(task)
        if workflows.is_failure(task):
            for blocked, note in workflows.blocked_by(task, self.workflow(task.workflow_id)):
                blocked.status, blocked.note = TaskStatus.ERROR, note
                self._finish(blocked, now)
                self._changed(blocked)
                self._ended(blocked)
        return task

    def _finish(self, task: Task, now: float) -> None:
        task.finished_at = now
        self._finished[task.task_num] = None  # may make room for a new task from now on

    def _ended(self, task: Task) -> None:
        """Tell the finish listeners; called once a task's final status is set."""
        for listener in self._finish_listeners:
            listener(task)

    def workflow(self, workflow_id: str) -> list[Task]:
        """The tasks of one Celery workflow, in the order they were created."""
        return [task for task in self._tasks.values() if task.workflow_id == workflow_id]

    def recent(self, limit: int = 100) -> list[Task]:
        """The newest tasks first."""
        newest = reversed(self._tasks.values())
        return [task for task, _ in zip(newest, range(limit), strict=False)]
