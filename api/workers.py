"""Who runs what right now: the workers panel, built from the workers' own status reports.

A worker here is whatever reports under one ``worker_id``: a consumer process, or one process of
a Celery worker's pool.

The API never asks the workers anything. Each callback names the worker (``worker_id``), so the
board learns from the store's changes which worker holds which task IN_PROGRESS and how many it
has finished. Start a second consumer or ``--scale celery_worker=3`` and new rows appear as soon
as they report their first task.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from api.store import Task
from common.statuses import TaskStatus

FORGET_IDLE_AFTER = 300.0  # seconds: an idle worker silent this long leaves the panel


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
        self, forget_after: float = FORGET_IDLE_AFTER, clock: Callable[[], float] = time.time
    ) -> None:
        self._forget_after = forget_after
        self._clock = clock
        self._workers: dict[str, Worker] = {}
        self._running_on: dict[int, str] = {}  # task number -> the worker that holds it
        self.version = 0  # grows with every change: a stream sends the board only when it moved

    def update(self, task: Task) -> None:
        """The store's listener. A new task has no worker yet and changes nothing here."""
        if task.worker_id is None:
            return
        # A message redelivered after its worker died moves to another worker: release it first.
        holder = self._running_on.pop(task.task_num, None)
        if holder is not None and holder in self._workers:
            self._workers[holder].running.discard(task.task_num)
        now = self._clock()
        worker = self._workers.get(task.worker_id)
        if worker is None:
            worker = self._workers[task.worker_id] = Worker(task.worker_id, task.method, now)
        worker.last_seen = now
        worker.method = task.method
        if task.status is TaskStatus.IN_PROGRESS:
            worker.running.add(task.task_num)
            self._running_on[task.task_num] = task.worker_id
        elif task.status.is_final:
            worker.finished += 1
        self.version += 1

    def snapshot(self) -> list[dict[str, Any]]:
        """The workers seen recently or still busy, by name."""
        horizon = self._clock() - self._forget_after
        for worker_id, worker in list(self._workers.items()):
            if not worker.running and worker.last_seen < horizon:
                del self._workers[worker_id]
        return [self._workers[worker_id].to_dict() for worker_id in sorted(self._workers)]
