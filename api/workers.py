"""Who runs what right now: the workers panel, built from the workers' own status reports.

A worker here is whatever reports under one ``worker_id``: a consumer process, or one process of
a Celery worker's pool.

The API never asks the workers anything. Each callback names the worker (``worker_id``), so the
board learns from the store's changes which worker holds which task IN_PROGRESS and how many it
has finished. Start a second consumer or ``--scale celery_worker=3`` and new rows appear as soon
as they report their first task.

The board is bounded (MAX_WORKERS rows, idle workers leave after FORGET_IDLE_AFTER), and pages
get it whole only in their snapshot; after that, only the rows that changed.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from api.store import Task
from common.statuses import TaskStatus

FORGET_IDLE_AFTER = 300.0  # seconds: an idle worker silent this long leaves the panel
# Rows on the panel: a class's workers fit with room to spare; a flood of made-up worker ids
# (a status report needs no token by default) pushes out the least recently seen instead.
MAX_WORKERS = 50


@dataclasses.dataclass
class Worker:
    worker_id: str
    method: str
    last_seen: float
    running: set[int] = dataclasses.field(default_factory=set)
    finished: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "method": self.method,
            "running": sorted(self.running),
            "finished": self.finished,
            "last_seen": self.last_seen,
        }


class WorkerBoard:
    def __init__(
        self,
        forget_after: float = FORGET_IDLE_AFTER,
        limit: int = MAX_WORKERS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._forget_after = forget_after
        self._limit = limit
        self._clock = clock
        # The least recently seen first: the next to forget.
        self._workers: OrderedDict[str, Worker] = OrderedDict()
        self._running_on: dict[int, str] = {}  # task number -> the worker that holds it
        # For changes(): the workers changed since, and those a page may show (all bounded).
        self._dirty: set[str] = set()
        self._listed: set[str] = set()

    def update(self, task: Task) -> None:
        """The store's listener. A new task has no worker yet and changes nothing here."""
        if task.worker_id is None:
            return
        # A message redelivered after its worker died moves to another worker: release it first.
        holder = self._running_on.pop(task.task_num, None)
        if holder is not None and holder in self._workers:
            self._workers[holder].running.discard(task.task_num)
            self._dirty.add(holder)
        now = self._clock()
        worker = self._workers.get(task.worker_id)
        if worker is None:
            worker = self._workers[task.worker_id] = Worker(task.worker_id, task.method, now)
        self._workers.move_to_end(task.worker_id)
        worker.last_seen = now
        worker.method = task.method
        if task.status is TaskStatus.IN_PROGRESS:
            worker.running.add(task.task_num)
            self._running_on[task.task_num] = task.worker_id
        elif task.status.is_final:
            worker.finished += 1
        self._dirty.add(task.worker_id)
        while len(self._workers) > self._limit:
            self._forget(next(iter(self._workers)))

    def rebuild(self, recent: list[Task]) -> None:
        """Start again from the ``recent`` tasks (newest first), as if only they had been
        reported: what a process that joins late, or missed changes, knows of the workers."""
        self._listed |= self._workers.keys()  # a page that shows them learns they left
        self._workers.clear()
        self._running_on.clear()
        for task in reversed(recent):
            self.update(task)

    def _forget(self, worker_id: str) -> None:
        worker = self._workers.pop(worker_id)
        for task_num in worker.running:
            self._running_on.pop(task_num, None)
        self._dirty.discard(worker_id)

    def _forget_idle(self) -> None:
        horizon = self._clock() - self._forget_after
        for worker_id, worker in list(self._workers.items()):
            if worker.last_seen >= horizon:
                break  # the rest were seen later still
            if not worker.running:  # a busy worker stays, however long its task takes
                self._forget(worker_id)

    def snapshot(self) -> list[dict[str, Any]]:
        """The workers seen recently or still busy, by name."""
        self._forget_idle()
        self._listed |= self._workers.keys()  # now on a page: its leaving must be told
        return [self._workers[worker_id].to_dict() for worker_id in sorted(self._workers)]

    def changes(self) -> dict[str, list[Any]] | None:
        """What moved since the last call, or None: ``{"changed": [rows], "gone": [ids]}``."""
        self._forget_idle()
        gone = self._listed - self._workers.keys()
        if not self._dirty and not gone:
            return None
        changed = [self._workers[worker_id].to_dict() for worker_id in sorted(self._dirty)]
        self._dirty = set()
        self._listed = set(self._workers)
        return {"changed": changed, "gone": sorted(gone)}
