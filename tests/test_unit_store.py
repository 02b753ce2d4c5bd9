"""Unit tests of api/store.py: task numbers that never repeat, and the bounded task store."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.model import Role, StatusReport, Task, WorkflowKind
from api.store import (
    StoreFull,
    TaskNumbers,
    TaskStore,
    TransitionNotAllowed,
    UnknownTask,
)
from common.statuses import TaskStatus, can_transition
from common.tasks import Method

fast = hypothesis.settings(database=None, deadline=None, derandomize=True)


def new_store(directory: Path, limit: int = 100) -> TaskStore:
    return TaskStore(TaskNumbers(directory / "counter"), limit)


# --- TaskNumbers ---------------------------------------------------------------------------------


def test_numbers_start_at_one_and_increase_by_one(tmp_path: Path) -> None:
    numbers = TaskNumbers(tmp_path / "counter", block=10)

    assert [numbers.take() for _ in range(25)] == list(range(1, 26))


def test_the_counter_file_and_its_directory_are_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deeper" / "counter"

    TaskNumbers(path, block=10).take()

    assert path.read_text() == "10\n"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_a_new_allocator_continues_after_a_dropped_one(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    first = TaskNumbers(path, block=10)
    taken = [first.take() for _ in range(3)]
    del first  # a crash: no close, no flush, nothing but what is already on disk

    second = TaskNumbers(path, block=10)
    later = [second.take() for _ in range(3)]

    assert taken == [1, 2, 3]
    assert min(later) > max(taken)
    assert later == [11, 12, 13]  # the rest of the first block is wasted, never reused


def test_numbers_never_repeat_across_many_restarts(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    seen: list[int] = []
    for run in range(20):
        numbers = TaskNumbers(path, block=7)
        seen.extend(numbers.take() for _ in range(run % 9))

    assert seen == sorted(set(seen))


def test_a_restart_after_a_whole_block_continues_after_it(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    first = TaskNumbers(path, block=5)
    assert [first.take() for _ in range(5)] == [1, 2, 3, 4, 5]

    assert TaskNumbers(path, block=5).take() == 6


def test_the_file_holds_the_high_water_mark_of_the_reserved_block(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    numbers = TaskNumbers(path, block=10)
    marks = []
    for _ in range(25):
        numbers.take()
        marks.append(int(path.read_text()))

    assert marks == [10] * 10 + [20] * 10 + [30] * 5


def test_the_file_is_written_only_once_per_block(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    numbers = TaskNumbers(path, block=10)
    writes = 0
    for _ in range(35):
        numbers.take()
        # Remove the file after each take: it comes back only when take() writes it.
        if path.exists():
            writes += 1
            path.unlink()

    assert writes == 4  # at numbers 1, 11, 21 and 31


def test_a_clean_shutdown_continues_right_after_the_last_number(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    numbers = TaskNumbers(path)
    assert [numbers.take() for _ in range(3)] == [1, 2, 3]
    numbers.close()
    assert TaskNumbers(path).take() == 4


def test_closing_an_allocator_that_handed_out_nothing_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    first = TaskNumbers(path, block=10)
    first.take()
    TaskNumbers(path, block=10).close()  # a run that crashed-restarted and sent no task
    assert TaskNumbers(path, block=10).take() == 11


def test_an_empty_counter_file_starts_at_one(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    path.write_text("")

    assert TaskNumbers(path).take() == 1


def test_an_existing_counter_file_is_continued(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    path.write_text("41999\n")

    assert TaskNumbers(path).take() == 42000


# --- TaskStore -----------------------------------------------------------------------------------


def test_create_makes_a_pending_task(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    before = time.time()

    task = store.create(Method.CELERY, 2.5, fail=True)

    assert (task.task_num, task.method, task.timeout, task.fail) == (1, Method.CELERY, 2.5, True)
    assert task.status is TaskStatus.PENDING
    assert task.worker_id is None
    assert task.celery_id is None
    assert before <= task.created_at <= time.time()
    assert task.started_at is None
    assert task.finished_at is None
    assert task.duration is None
    assert store.get(task.task_num) is task
    assert len(store) == 1


def test_created_tasks_get_increasing_numbers(tmp_path: Path) -> None:
    store = new_store(tmp_path)

    nums = [store.create(Method.RMQ, 1, fail=False).task_num for _ in range(5)]

    assert nums == [1, 2, 3, 4, 5]


def test_get_of_an_unknown_task_raises_unknown_task(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.create(Method.RMQ, 1, fail=False)

    with pytest.raises(UnknownTask):
        store.get(2)
    with pytest.raises(LookupError):
        store.get(0)


def test_update_status_of_an_unknown_task_raises_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(UnknownTask):
        new_store(tmp_path).update_status(StatusReport(1, TaskStatus.IN_PROGRESS, "w"))


def test_in_progress_sets_worker_and_started_at(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.RMQ, 1, fail=False)
    before = time.time()

    updated = store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "consumer-1"))

    assert updated is task
    assert task.status is TaskStatus.IN_PROGRESS
    assert task.worker_id == "consumer-1"
    assert task.started_at is not None
    assert before <= task.started_at <= time.time()
    assert task.finished_at is None
    assert task.duration is None


@pytest.mark.parametrize("final", [TaskStatus.DONE, TaskStatus.ERROR])
def test_a_final_status_sets_finished_at_and_duration(tmp_path: Path, final: TaskStatus) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "w1"))
    started_at = task.started_at
    before = time.time()

    store.update_status(StatusReport(task.task_num, final, "w1"))

    assert task.status is final
    assert task.started_at == started_at
    assert task.finished_at is not None
    assert before <= task.finished_at <= time.time()
    assert task.duration == task.finished_at - task.created_at
    assert task.duration >= 0


def test_pending_may_become_done_directly(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.CELERY, 1, fail=False)

    store.update_status(StatusReport(task.task_num, TaskStatus.DONE, "celery@host"))

    assert task.status is TaskStatus.DONE
    assert task.started_at is None
    assert task.finished_at is not None


def test_a_redelivered_task_may_be_in_progress_again_on_another_worker(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "w1"))

    store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "w2"))

    assert task.status is TaskStatus.IN_PROGRESS
    assert task.worker_id == "w2"


@pytest.mark.parametrize("final", [TaskStatus.DONE, TaskStatus.ERROR])
@pytest.mark.parametrize("late", list(TaskStatus))
def test_a_late_callback_never_changes_a_finished_task(
    tmp_path: Path, final: TaskStatus, late: TaskStatus
) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(task.task_num, final, "w1"))
    snapshot = task.to_dict()
    changes: list[Task] = []
    store.add_listener(changes.append)

    with pytest.raises(TransitionNotAllowed) as info:
        store.update_status(StatusReport(task.task_num, late, "w2"))

    assert (info.value.current, info.value.new) == (final, late)
    assert str(info.value) == f"a {final} task cannot become {late}"
    assert task.to_dict() == snapshot
    assert changes == []


def test_in_progress_cannot_go_back_to_pending(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "w1"))

    with pytest.raises(TransitionNotAllowed):
        store.update_status(StatusReport(task.task_num, TaskStatus.PENDING, "w1"))

    assert task.status is TaskStatus.IN_PROGRESS


def test_set_celery_id(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.CELERY, 1, fail=False)

    store.set_celery_id(task.task_num, "abc-123")

    assert task.celery_id == "abc-123"
    store.set_celery_id(99, "x")  # purged meanwhile: nothing to note, nothing to fail


def test_discard_waiting_forgets_only_the_pending_tasks_of_one_method(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    waiting = [store.create(Method.RMQ, 1, fail=False) for _ in range(3)]
    running = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(running.task_num, TaskStatus.IN_PROGRESS, "w"))
    celery = store.create(Method.CELERY, 1, fail=False)
    forgotten: list[int] = []
    store.add_discard_listener(forgotten.append)

    assert store.discard_waiting(Method.RMQ) == 3

    assert forgotten == [task.task_num for task in waiting]
    assert {task.task_num for task in store.recent()} == {running.task_num, celery.task_num}


def finished(store: TaskStore, count: int) -> list[Task]:
    """``count`` tasks created and finished one after the other."""
    tasks = []
    for _ in range(count):
        tasks.append(task := store.create(Method.RMQ, 1, fail=False))
        store.update_status(StatusReport(task.task_num, TaskStatus.DONE, "w"))
    return tasks


def test_eviction_past_the_limit_keeps_the_newest(tmp_path: Path) -> None:
    store = new_store(tmp_path, limit=10)

    tasks = finished(store, 25)

    assert len(store) == 10
    assert [task.task_num for task in store.recent()] == list(range(25, 15, -1))
    for task in tasks[:15]:
        with pytest.raises(UnknownTask):
            store.get(task.task_num)
    for task in tasks[15:]:
        assert store.get(task.task_num) is task


def test_the_task_that_finished_first_is_evicted_first(tmp_path: Path) -> None:
    store = new_store(tmp_path, limit=3)
    first, second, third = (store.create(Method.RMQ, 1, fail=False) for _ in range(3))
    store.update_status(StatusReport(second.task_num, TaskStatus.DONE, "w"))
    store.update_status(StatusReport(first.task_num, TaskStatus.ERROR, "w"))

    store.create(Method.RMQ, 1, fail=False)
    assert [task.task_num for task in store.recent()] == [4, 3, 1]
    store.create(Method.RMQ, 1, fail=False)
    assert [task.task_num for task in store.recent()] == [5, 4, 3]


def test_an_unfinished_task_is_never_evicted(tmp_path: Path) -> None:
    # The probe: one task IN_PROGRESS, then batch after batch. Its DONE must still find it.
    store = new_store(tmp_path, limit=10)
    running = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(running.task_num, TaskStatus.IN_PROGRESS, "w"))
    waiting = [store.create(Method.RMQ, 1, fail=False) for _ in range(9)]

    with pytest.raises(StoreFull) as refused:
        store.create(Method.RMQ, 1, fail=False)
    with pytest.raises(StoreFull):
        store.create_many(3, Method.RMQ, 1, fail=False)

    assert "TASK_STORE_LIMIT" in str(refused.value) and refused.value.message_ru
    assert len(store) == 10 and store.room() == 0
    assert store.update_status(StatusReport(running.task_num, TaskStatus.DONE, "w")) is running
    # Now one task is finished: exactly one new task fits, and it takes the finished one's place.
    [newcomer] = store.create_many(1, Method.RMQ, 1, fail=False)
    kept = {t.task_num for t in store.recent()}
    assert kept == {t.task_num for t in waiting} | {newcomer.task_num}


def test_a_batch_gets_room_for_all_of_it_or_nothing(tmp_path: Path) -> None:
    store = new_store(tmp_path, limit=10)
    finished(store, 4)
    store.create_many(3, Method.RMQ, 1, fail=False)
    assert store.room() == 7  # 3 free places and 4 finished tasks

    with pytest.raises(StoreFull, match="room for 7 more tasks, 8 asked"):
        store.create_many(8, Method.RMQ, 1, fail=False)

    assert len(store) == 7  # nothing was created
    assert len(store.create_many(7, Method.RMQ, 1, fail=False)) == 7
    assert store.room() == 0


def test_a_discarded_finished_task_makes_no_room_twice(tmp_path: Path) -> None:
    store = new_store(tmp_path, limit=10)
    [task] = finished(store, 1)
    store.discard(task.task_num)

    assert store.room() == 10
    store.create_many(10, Method.RMQ, 1, fail=False)
    with pytest.raises(StoreFull):
        store.create(Method.RMQ, 1, fail=False)


def test_recent_is_newest_first_and_limited(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    for _ in range(7):
        store.create(Method.RMQ, 1, fail=False)

    assert [task.task_num for task in store.recent()] == [7, 6, 5, 4, 3, 2, 1]
    assert [task.task_num for task in store.recent(3)] == [7, 6, 5]
    assert [task.task_num for task in store.recent(100)] == [7, 6, 5, 4, 3, 2, 1]
    assert store.recent(0) == []


def test_recent_of_an_empty_store(tmp_path: Path) -> None:
    assert new_store(tmp_path).recent() == []


def test_recent_returns_at_most_100_by_default(tmp_path: Path) -> None:
    store = new_store(tmp_path, limit=200)
    for _ in range(150):
        store.create(Method.RMQ, 1, fail=False)

    recent = store.recent()

    assert len(recent) == 100
    assert recent[0].task_num == 150
    assert recent[-1].task_num == 51


def test_discard_forgets_a_task(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    kept = store.create(Method.RMQ, 1, fail=False)
    dropped = store.create(Method.RMQ, 1, fail=False)

    store.discard(dropped.task_num)

    assert len(store) == 1
    with pytest.raises(UnknownTask):
        store.get(dropped.task_num)
    assert store.recent() == [kept]


def test_discard_of_an_unknown_task_does_nothing(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    store.create(Method.RMQ, 1, fail=False)

    store.discard(42)

    assert len(store) == 1


def test_discarded_numbers_are_not_reused(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.RMQ, 1, fail=False)
    store.discard(task.task_num)

    assert store.create(Method.RMQ, 1, fail=False).task_num == task.task_num + 1


def test_listeners_are_called_on_create_and_update(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    first: list[tuple[int, TaskStatus]] = []
    second: list[tuple[int, TaskStatus]] = []
    store.add_listener(lambda task: first.append((task.task_num, task.status)))
    store.add_listener(lambda task: second.append((task.task_num, task.status)))

    task = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "w"))
    store.update_status(StatusReport(task.task_num, TaskStatus.DONE, "w"))

    expected = [
        (1, TaskStatus.PENDING),
        (1, TaskStatus.IN_PROGRESS),
        (1, TaskStatus.DONE),
    ]
    assert first == expected
    assert second == expected


def test_listeners_see_the_task_already_stored(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    found: list[Task] = []
    store.add_listener(lambda task: found.append(store.get(task.task_num)))

    task = store.create(Method.RMQ, 1, fail=False)

    assert found == [task]


def test_to_dict_carries_every_field_and_the_duration(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.RMQ, 1.5, fail=False)
    store.update_status(StatusReport(task.task_num, TaskStatus.ERROR, "w"))

    data = task.to_dict()

    assert data["task_num"] == 1
    assert data["method"] == "rmq"
    assert data["status"] == "ERROR"
    assert data["worker_id"] == "w"
    assert data["duration"] == task.duration


# --- A random walk of callbacks ------------------------------------------------------------------


@fast
@given(st.lists(st.sampled_from(list(TaskStatus)), max_size=12))
def test_a_random_walk_of_callbacks_never_leaves_a_final_status(
    walk: list[TaskStatus],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = new_store(Path(directory))
        task = store.create(Method.RMQ, 1, fail=False)
        for step, new in enumerate(walk):
            before = task.status
            finished_at = task.finished_at
            try:
                store.update_status(StatusReport(task.task_num, new, f"w{step}"))
            except TransitionNotAllowed:
                assert not can_transition(before, new)
                assert task.status is before
                assert task.finished_at == finished_at
            else:
                assert can_transition(before, new)
                assert task.status is new
            if before.is_final:
                assert task.status is before
                assert task.finished_at == finished_at
            assert (task.finished_at is not None) == task.status.is_final
            if task.status is TaskStatus.PENDING:
                assert all(status is TaskStatus.PENDING for status in walk[: step + 1])


def test_a_report_without_worker_id_keeps_the_worker_already_known(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "consumer@host:1"))

    store.update_status(StatusReport(task.task_num, TaskStatus.ERROR))  # the course's own report

    assert (task.status, task.worker_id) == (TaskStatus.ERROR, "consumer@host:1")


def test_redeliveries_are_counted_and_told_to_listeners(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    task = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "w1"))
    store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "w2", redelivered=True))
    store.update_status(StatusReport(task.task_num, TaskStatus.DONE, "w2"))
    changes: list[int] = []
    store.add_listener(lambda changed: changes.append(changed.redeliveries))

    # The message of a finished task comes back: refused, but the page learns it came back.
    with pytest.raises(TransitionNotAllowed):
        store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "w3", redelivered=True))

    assert (task.status, task.worker_id, task.redeliveries) == (TaskStatus.DONE, "w2", 2)
    assert changes == [2]


def test_finish_listeners_hear_each_task_once_as_it_ends(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    ended: list[tuple[int, TaskStatus]] = []
    store.add_finish_listener(lambda task: ended.append((task.task_num, task.status)))
    done = store.create(Method.RMQ, 1, fail=False)
    store.update_status(StatusReport(done.task_num, TaskStatus.IN_PROGRESS, "w"))
    store.update_status(StatusReport(done.task_num, TaskStatus.DONE, "w"))
    # A late or redelivered report of a finished task changes nothing and is not counted again.
    with pytest.raises(TransitionNotAllowed):
        store.update_status(StatusReport(done.task_num, TaskStatus.DONE, "w", redelivered=True))
    # A chain's failed member ends the members after it too: each one is heard.
    first, second = (store.create(Method.CELERY, 1, workflow_id="wf",
                                  workflow_kind=WorkflowKind.CHAIN, role=Role.MEMBER)
                     for _ in range(2))
    store.update_status(StatusReport(first.task_num, TaskStatus.ERROR, "w"))

    assert ended == [(done.task_num, TaskStatus.DONE), (first.task_num, TaskStatus.ERROR),
                     (second.task_num, TaskStatus.ERROR)]
