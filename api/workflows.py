"""What a failed task of a Celery workflow means for the others in it.

Celery itself runs no later task of a chain once one has failed, and no chord body once a member
has failed. Nobody would ever report on those tasks, so the API ends them itself: no task of a
workflow is left PENDING.
"""

from __future__ import annotations

from collections.abc import Iterable

from api.model import Role, Task, WorkflowKind
from common.statuses import TaskStatus

PREDECESSOR_FAILED = "не выполнена: предыдущая задача цепочки упала"
MEMBER_FAILED = "не выполнена: задача аккорда упала"


def blocked_by(failed: Task, workflow: Iterable[Task]) -> list[tuple[Task, str]]:
    """The tasks of ``failed``'s workflow that will never run now, each with the reason."""
    waiting = [task for task in workflow
               if not task.status.is_final and task.task_num != failed.task_num]
    if failed.workflow_kind is WorkflowKind.CHAIN:
        return [(task, PREDECESSOR_FAILED) for task in waiting if task.task_num > failed.task_num]
    if failed.workflow_kind is WorkflowKind.CHORD:
        return [(task, MEMBER_FAILED) for task in waiting if task.role is Role.SUMMARY]
    return []  # a group's tasks do not depend on each other


def is_failure(task: Task) -> bool:
    return task.workflow_id is not None and task.status is TaskStatus.ERROR
