"""The API's model of a task: what the store keeps and what the page and the JSON API show."""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any

from common.statuses import TaskStatus
from common.tasks import Method, Source


class WorkflowKind(enum.StrEnum):
    """Celery's canvas: one after another, all at once, or all at once and then a summary."""

    CHAIN = "chain"
    GROUP = "group"
    CHORD = "chord"


class Role(enum.StrEnum):
    MEMBER = "member"
    SUMMARY = "summary"  # a chord's body: runs after every member, counts those that succeeded


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
    source: Source = Source.API
    # Celery's retries: tries so far, how many are allowed, and when the next one starts.
    attempts: int = 0
    max_attempts: int | None = None
    next_try_at: float | None = None
    # Set for a task of a Celery workflow (POST /api/workflows).
    workflow_id: str | None = None
    workflow_kind: WorkflowKind | None = None
    role: Role | None = None
    parent: int | None = None  # in a chain: the task that runs just before this one
    # Why the task ended without running (a chain's earlier task failed, say).
    note: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from queueing to the final status: what the user waited."""
        if self.finished_at is None:
            return None
        return self.finished_at - self.created_at

    def to_dict(self) -> dict[str, Any]:
        # Every field is a plain value, so a shallow copy will do: dataclasses.asdict copies
        # deeply, field by field, and costs more than the rest of an accepted task's answer.
        data = {field.name: getattr(self, field.name) for field in TASK_FIELDS}
        data["duration"] = self.duration
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """The task :meth:`to_dict` described (as a shared store keeps it)."""
        task = cls(**{field.name: data[field.name] for field in TASK_FIELDS})
        task.method, task.status, task.source = (
            Method(task.method), TaskStatus(task.status), Source(task.source)
        )
        if task.workflow_kind is not None:
            task.workflow_kind = WorkflowKind(task.workflow_kind)
        if task.role is not None:
            task.role = Role(task.role)
        return task


TASK_FIELDS = dataclasses.fields(Task)


@dataclasses.dataclass(frozen=True)
class TaskRequest:
    """What a client asked for: ``count`` tasks of one method (``POST /api/tasks``, the forms)."""

    method: Method
    timeout: float
    count: int = 1
    fail: bool = False
    routing_key: str = ""
    # A replay of a dead-lettered task: the number of the task that died.
    replay_of: int | None = None
    source: Source = Source.API


@dataclasses.dataclass(frozen=True)
class WorkflowRequest:
    """A Celery canvas of ``count`` tasks (``POST /api/workflows``)."""

    kind: WorkflowKind
    count: int
    timeout: float
    fail_member: int | None = None  # this task (1-based) fails, after its retries


@dataclasses.dataclass(frozen=True)
class StatusReport:
    """What a worker tells the API about a task (``POST /update_task_status_api/``)."""

    task_num: int
    status: TaskStatus
    worker_id: str | None = None  # the course's own workers send none
    redelivered: bool = False
    attempt: int | None = None  # which try this report is about (Celery retries)
    max_attempts: int | None = None
    next_try_at: float | None = None  # a try failed; the next one starts then
