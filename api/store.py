"""The task store: what every store does, and the in-memory one, as in the course.

Two stores keep the tasks behind one interface: :class:`MemoryTaskStore` in the API process's
memory (the course's way; one API process), and ``api.redis_store.RedisTaskStore`` in Redis,
shared by any number of API processes. Both apply the same rules, written once here:

- a status only moves forward (common.statuses); a late report is refused, a redelivered one
  is counted even then; a failed member of a Celery workflow ends the members that would never
  run (api.workflows);
- the store is bounded, and only finished tasks make room: the one that finished first is
  evicted first. A task somebody still waits for is never dropped; when every task kept is
  unfinished, new ones are refused (:class:`StoreFull`) instead;
- task numbers never repeat, not even across API restarts: a late message from an earlier run
  must not update a new task of the same number;
- a task *waits* (:func:`is_waiting`) from its acceptance until a worker reports on it, or it is
  discarded: its message is in its queue. Each store keeps the waiting tasks of each method by
  acceptance time, so that the oldest one's age (:meth:`TaskStore.oldest_waiting_ages`, a
  metric) costs no scan of the store.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
            f" {limit} tasks (TASK_STORE_LIMIT) and only finished ones make room",
            f"В хранилище задач нет места: можно добавить задач — {room}, а отправлено {asked}."
            f" API держит {limit} задач (TASK_STORE_LIMIT), и место освобождают только"
            " завершённые: дождитесь их или очистите очередь",
            tasks=[],
        )


class StoreUnavailable(ApiError):
    """The shared store (Redis) does not answer: nothing was read or changed."""

    status = 503

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"task store unavailable: {reason}",
            "Хранилище задач (Redis) недоступно. Попробуйте ещё раз через несколько секунд",
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


# A task as a store creates it: Task's fields but the number and the creation time.
Draft = Mapping[str, Any]


def apply_report(task: Task, report: StatusReport, now: float) -> bool:
    """Apply a worker's report to ``task``; False, with only the redelivery counted, when its
    status may not follow the task's. Without ``worker_id`` (the course's own format) the task
    keeps the worker it had."""
    if report.redelivered:
        # Counted even when the status is refused: a finished task whose message came back is
        # the at-least-once lesson (the worker then skips the work).
        task.redeliveries += 1
    if not can_transition(task.status, report.status):
        return False
    if report.status is TaskStatus.IN_PROGRESS and report.next_try_at is None:
        task.started_at = now  # a report of a retry's wait is no start
    elif report.status.is_final:
        task.finished_at = now
    task.status = report.status
    if report.worker_id is not None:
        task.worker_id = report.worker_id
    if report.attempt is not None:
        task.attempts = max(task.attempts, report.attempt)
        task.max_attempts = report.max_attempts
    task.next_try_at = report.next_try_at  # set while a retry waits, cleared by any other
    return True


def drafted(numbers: Sequence[int], drafts: Sequence[Draft], chain: bool) -> list[Task]:
    """New PENDING tasks of these numbers, created now; with ``chain``, each one's parent is
    the one before it (a Celery chain's order)."""
    now = time.time()
    tasks: list[Task] = []
    for number, draft in zip(numbers, drafts, strict=True):
        parent = tasks[-1].task_num if chain and tasks else draft.get("parent")
        tasks.append(Task(number, **{**draft, "parent": parent}, created_at=now))
    return tasks


def is_waiting(task: Task) -> bool:
    """Accepted and not yet taken by a worker: the task's message waits in its queue.

    PENDING is exactly that, for both paths and both queue types: a worker's first report moves
    a task on, and statuses never move back. (A member of a Celery chain or chord also waits
    while the members before it run: its message is sent only then.)
    """
    return task.status is TaskStatus.PENDING


def end_unrun(task: Task, note: str, now: float) -> bool:
    """End a task of a failed workflow that will never run; False if it has ended already."""
    if task.status.is_final:
        return False
    task.status, task.note, task.finished_at = TaskStatus.ERROR, note, now
    return True


class TaskStore(abc.ABC):
    """What every task store does; the subclasses keep the tasks."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._listeners: list[Callable[[Task], None]] = []
        self._discard_listeners: list[Callable[[int], None]] = []
        self._finish_listeners: list[Callable[[Task], None]] = []
        self._resync_listeners: list[Callable[[], Awaitable[None]]] = []

    def add_listener(self, listener: Callable[[Task], None]) -> None:
        """Call ``listener(task)`` after every change, whichever API process made it: the live
        page subscribes here."""
        self._listeners.append(listener)

    def add_discard_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(task_num)`` when an unsent task is discarded: the page drops its row."""
        self._discard_listeners.append(listener)

    def add_finish_listener(self, listener: Callable[[Task], None]) -> None:
        """Call ``listener(task)`` once when this process sets a task's final status: the
        metrics count it (each process counts its own; Prometheus adds them up)."""
        self._finish_listeners.append(listener)

    def add_resync_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call ``listener()`` when changes may have been missed (a shared store's connection
        came back): the pages start again from a snapshot."""
        self._resync_listeners.append(listener)

    def _changed(self, task: Task) -> None:
        for listener in self._listeners:
            listener(task)

    def _discarded(self, task_num: int) -> None:
        for listener in self._discard_listeners:
            listener(task_num)

    def _ended(self, task: Task) -> None:
        for listener in self._finish_listeners:
            listener(task)

    async def _resynced(self) -> None:
        for listener in self._resync_listeners:
            await listener()

    @property
    @abc.abstractmethod
    def state(self) -> str:
        """For /healthz: "memory", or whether a shared store hears the changes ("connected",
        "disconnected")."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin to hear the changes other API processes make."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop, keeping what must survive a restart."""

    async def create(self, method: Method, timeout: float, fail: bool = False,
                     **details: Any) -> Task:
        """A new PENDING task with the next number; ``details`` are more of Task's fields."""
        [task] = await self.create_each([dict(method=method, timeout=timeout, fail=fail, **details)])
        return task

    async def create_many(self, count: int, method: Method, timeout: float, fail: bool = False,
                          **details: Any) -> list[Task]:
        """``count`` new PENDING tasks; none at all (StoreFull) if there is no room for every one."""
        draft = dict(method=method, timeout=timeout, fail=fail, **details)
        return await self.create_each([draft] * count)

    @abc.abstractmethod
    async def create_each(self, drafts: Sequence[Draft], chain: bool = False) -> list[Task]:
        """A new PENDING task for each draft, numbered in order; with ``chain``, each one's
        ``parent`` is the one before it. All or none: StoreFull if there is no room for all."""

    async def update_status(self, report: StatusReport) -> Task:
        """Apply a worker's report: the task as it is now, or TransitionNotAllowed."""
        now = time.time()
        refused: TransitionNotAllowed | None = None

        def apply(task: Task) -> bool:
            nonlocal refused
            before = task.status
            applied = apply_report(task, report, now)
            refused = None if applied else TransitionNotAllowed(before, report.status)
            return applied or report.redelivered  # a refused redelivery is still counted

        task, _ = await self._modify(report.task_num, apply)
        if refused is not None:
            raise refused
        if task.status.is_final:
            self._ended(task)
        if workflows.is_failure(task):
            for blocked, note in workflows.blocked_by(task, await self.workflow(task.workflow_id)):
                ended, changed = await self._modify(
                    blocked.task_num, lambda unrun, note=note: end_unrun(unrun, note, now)
                )
                if changed:
                    self._ended(ended)
        return task

    async def set_celery_id(self, task_num: int, celery_id: str) -> None:
        def note(task: Task) -> bool:
            task.celery_id = celery_id
            return True

        # Not told to the pages: the row shows the id with the task's next change. A task
        # purged while Celery was still taking it is gone already: nothing to note.
        with contextlib.suppress(UnknownTask):
            await self._modify(task_num, note, tell=False)

    async def oldest_waiting_ages(self) -> dict[Method, float]:
        """For each method, seconds since its oldest waiting task was accepted; 0 when none
        waits."""
        accepted = await self._oldest_waiting()
        now = time.time()
        return {method: max(0.0, now - accepted[method]) if method in accepted else 0.0
                for method in Method}

    @abc.abstractmethod
    async def _oldest_waiting(self) -> dict[Method, float]:
        """When the oldest waiting task of each method was accepted (``created_at``); a method
        with none waiting is left out."""

    @abc.abstractmethod
    async def room(self) -> int:
        """How many tasks may be created now: free places, and finished tasks that may go."""

    @abc.abstractmethod
    async def _modify(self, task_num: int, change: Callable[[Task], bool],
                      tell: bool = True) -> tuple[Task, bool]:
        """Apply ``change`` to the task as one step no other change can interleave with; keep
        the task if ``change`` returns True, and then tell the listeners unless not ``tell``.
        The task, and whether it changed. UnknownTask if there is no such task."""

    @abc.abstractmethod
    async def get(self, task_num: int) -> Task:
        """The task, or UnknownTask."""

    @abc.abstractmethod
    async def discard(self, task_num: int) -> None:
        """Forget a task nobody will ever report on: never sent, or purged from its queue."""

    @abc.abstractmethod
    async def discard_waiting(self, method: Method) -> int:
        """Forget every PENDING task of ``method``: its queue was purged, no worker will report
        on it. How many there were."""

    @abc.abstractmethod
    async def workflow(self, workflow_id: str) -> list[Task]:
        """The tasks of one Celery workflow, in the order they were created."""

    @abc.abstractmethod
    async def recent(self, limit: int = 100) -> list[Task]:
        """The newest tasks first."""


class MemoryTaskStore(TaskStore):
    """The tasks in this process's memory: lost when it stops, seen by no other process."""

    def __init__(self, numbers: TaskNumbers, limit: int) -> None:
        super().__init__(limit)
        self._numbers = numbers
        self._tasks: OrderedDict[int, Task] = OrderedDict()
        # Finished tasks in the order they finished: the first of them is the next to evict.
        self._finished: OrderedDict[int, None] = OrderedDict()
        # The waiting tasks of each method in the order they were accepted: the first is the
        # oldest.
        self._waiting: dict[Method, OrderedDict[int, None]] = {method: OrderedDict()
                                                                for method in Method}

    @property
    def state(self) -> str:
        return "memory"

    async def start(self) -> None:
        pass  # nobody else changes these tasks

    async def close(self) -> None:
        self._numbers.close()

    async def room(self) -> int:
        return self._limit - len(self._tasks) + len(self._finished)

    async def create_each(self, drafts: Sequence[Draft], chain: bool = False) -> list[Task]:
        # No await between the room check and the insert: one event loop, no interleaving.
        room = await self.room()
        if room < len(drafts):
            raise StoreFull(room, len(drafts), self._limit)
        numbers = [self._numbers.take() for _ in drafts]
        tasks = drafted(numbers, drafts, chain)
        for task in tasks:
            self._tasks[task.task_num] = task
            self._waiting[task.method][task.task_num] = None
            if len(self._tasks) > self._limit:
                evicted, _ = self._finished.popitem(last=False)
                del self._tasks[evicted]
            self._changed(task)
        return tasks

    async def _modify(self, task_num: int, change: Callable[[Task], bool],
                      tell: bool = True) -> tuple[Task, bool]:
        task = await self.get(task_num)
        changed = change(task)
        if changed:
            if not is_waiting(task):
                self._waiting[task.method].pop(task_num, None)
            if task.status.is_final:
                self._finished.setdefault(task_num)  # may make room for a new task from now on
            if tell:
                self._changed(task)
        return task, changed

    async def get(self, task_num: int) -> Task:
        try:
            return self._tasks[task_num]
        except KeyError:
            raise UnknownTask(task_num) from None

    async def discard(self, task_num: int) -> None:
        if (task := self._tasks.pop(task_num, None)) is not None:
            self._finished.pop(task_num, None)
            self._waiting[task.method].pop(task_num, None)
            self._discarded(task_num)

    async def discard_waiting(self, method: Method) -> int:
        waiting = list(self._waiting[method])
        for task_num in waiting:
            await self.discard(task_num)
        return len(waiting)

    async def _oldest_waiting(self) -> dict[Method, float]:
        return {method: self._tasks[next(iter(waiting))].created_at
                for method, waiting in self._waiting.items() if waiting}

    async def workflow(self, workflow_id: str) -> list[Task]:
        return [task for task in self._tasks.values() if task.workflow_id == workflow_id]

    async def recent(self, limit: int = 100) -> list[Task]:
        newest = reversed(self._tasks.values())
        return [task for task, _ in zip(newest, range(limit), strict=False)]
