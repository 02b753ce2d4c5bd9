"""The API's model of a task: what the store keeps and what the page and the JSON API show."""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any

from common.statuses import TaskStatus


class Method(enum.StrEnum):
    RMQ = "rmq"
    CELERY = "celery"


@dataclasses.dataclass
class Task:
    task_num: int
    method: Method
    timeout: float
    fail: bool = False
    status: TaskStatus = TaskStatus.PENDING
    worker_id: str | None = None
    celery_id: str | None = None
    created_at: float = dataclasses.field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    # Set when the task re-runs a dead-lettered message: the number of the task that died.
    replay_of: int | None = None
    # How often the broker delivered the task's message again (its worker died before the ack).
    redeliveries: int = 0

    @property
    def duration(self) -> float | None:
        """Seconds from queueing to the final status: what the user waited."""
        if self.finished_at is None:
            return None
        return self.finished_at - self.created_at

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["duration"] = self.duration
        return data
