"""Task statuses, and the one rule about which status may follow which."""

from __future__ import annotations

import enum


class TaskStatus(enum.StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"
    ERROR = "ERROR"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({TaskStatus.DONE, TaskStatus.ERROR})

# IN_PROGRESS may repeat: a message redelivered after a worker died is picked up by another worker.
# PENDING may jump to a final status: the IN_PROGRESS callback can be lost while the API restarts.
# Nothing leaves DONE or ERROR, so a late or duplicate callback never moves a task backwards.
ALLOWED_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.IN_PROGRESS, TaskStatus.DONE, TaskStatus.ERROR}),
    TaskStatus.IN_PROGRESS: frozenset({TaskStatus.IN_PROGRESS, TaskStatus.DONE, TaskStatus.ERROR}),
    TaskStatus.DONE: frozenset(),
    TaskStatus.ERROR: frozenset(),
}


def can_transition(current: TaskStatus, new: TaskStatus) -> bool:
    return new in ALLOWED_TRANSITIONS[current]
