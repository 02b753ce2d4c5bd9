"""The task stores' rules, each test run against both: the memory store and the Redis store.

The Redis store runs against the machine's real Redis (``make test`` starts it), in a key space
of its own per test (its vhost), removed afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.model import Role, StatusReport, Task, WorkflowKind
from api.redis_store import RedisTaskStore
from api.store import (
    MemoryTaskStore,
    StoreFull,
    StoreUnavailable,
    TaskNumbers,
    TaskStore,
    TransitionNotAllowed,
    UnknownTask,
)
from common.settings import LOCAL_REDIS_STORE, Settings
from common.statuses import TaskStatus, can_transition
from common.tasks import Method
from runner.polling import wait_for

NewStore = Callable[..., Awaitable[TaskStore]]


def redis_settings(limit: int, vhost: str) -> Settings:
    return Settings(rmq_url=f"amqp://student:qwerty@localhost:5672/{vhost}",
                    task_store=LOCAL_REDIS_STORE, task_store_limit=limit)


@pytest.fixture
async def key_space() -> AsyncIterator[str]:
    """A vhost name whose key space in Redis is removed after the test."""
    vhost = f"store-test-{uuid.uuid4().hex[:8]}"
    yield vhost
    store = RedisTaskStore(redis_settings(100, vhost))
    await store.clear()
    await store.close()


@pytest.fixture(params=["memory", "redis"])
async def new_store(
    request: pytest.FixtureRequest, tmp_path: Path, key_space: str
) -> AsyncIterator[NewStore]:
    """Make a store of the kind under test (``limit`` tasks); a Redis one in a key space of its
    own."""
    made: list[TaskStore] = []

    async def make(limit: int = 100) -> TaskStore:
        if request.param == "memory":
            store: TaskStore = MemoryTaskStore(TaskNumbers(tmp_path / f"counter{len(made)}"), limit)
        else:
            store = RedisTaskStore(redis_settings(limit, key_space))
        await store.start()
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


def report(task: Task, status: TaskStatus, worker: str | None = "w", **more) -> StatusReport:
    return StatusReport(task.task_num, status, worker, **more)


async def stored(store: TaskStore) -> int:
    """How many tasks the store holds."""
    return len(await store.recent(1_000_000))


async def test_create_makes_a_pending_task(new_store: NewStore) -> None:
    store = await new_store()
    before = time.time()

    task = await store.create(Method.CELERY, 2.5, fail=True)

    assert (task.task_num, task.method, task.timeout, task.fail) == (1, Method.CELERY, 2.5, True)
    assert task.status is TaskStatus.PENDING
    assert (task.worker_id, task.celery_id, task.started_at, task.finished_at) == (None,) * 4
    assert before <= task.created_at <= time.time()
    assert task.duration is None
    assert await store.get(task.task_num) == task
    assert await stored(store) == 1


async def test_created_tasks_get_increasing_numbers(new_store: NewStore) -> None:
    store = await new_store()

    nums = [(await store.create(Method.RMQ, 1)).task_num for _ in range(5)]

    assert nums == [1, 2, 3, 4, 5]


async def test_get_of_an_unknown_task_raises_unknown_task(new_store: NewStore) -> None:
    store = await new_store()
    await store.create(Method.RMQ, 1)

    with pytest.raises(UnknownTask):
        await store.get(2)
    with pytest.raises(LookupError):
        await store.get(0)


async def test_update_status_of_an_unknown_task_raises_unknown_task(new_store: NewStore) -> None:
    with pytest.raises(UnknownTask):
        await (await new_store()).update_status(StatusReport(1, TaskStatus.IN_PROGRESS, "w"))


async def test_in_progress_sets_worker_and_started_at(new_store: NewStore) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1)
    before = time.time()

    updated = await store.update_status(report(task, TaskStatus.IN_PROGRESS, "consumer-1"))

    assert updated == await store.get(task.task_num)
    assert updated.status is TaskStatus.IN_PROGRESS
    assert updated.worker_id == "consumer-1"
    assert before <= updated.started_at <= time.time()
    assert updated.finished_at is None
    assert updated.duration is None


@pytest.mark.parametrize("final", [TaskStatus.DONE, TaskStatus.ERROR])
async def test_a_final_status_sets_finished_at_and_duration(
    new_store: NewStore, final: TaskStatus
) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1)
    started_at = (await store.update_status(report(task, TaskStatus.IN_PROGRESS))).started_at
    before = time.time()

    await store.update_status(report(task, final))

    ended = await store.get(task.task_num)
    assert ended.status is final
    assert ended.started_at == started_at
    assert before <= ended.finished_at <= time.time()
    assert ended.duration == ended.finished_at - ended.created_at >= 0


async def test_pending_may_become_done_directly(new_store: NewStore) -> None:
    store = await new_store()
    task = await store.create(Method.CELERY, 1)

    done = await store.update_status(report(task, TaskStatus.DONE, "celery@host"))

    assert done.status is TaskStatus.DONE
    assert done.started_at is None
    assert done.finished_at is not None


async def test_a_redelivered_task_may_be_in_progress_again_on_another_worker(
    new_store: NewStore,
) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1)
    await store.update_status(report(task, TaskStatus.IN_PROGRESS, "w1"))

    again = await store.update_status(report(task, TaskStatus.IN_PROGRESS, "w2"))

    assert (again.status, again.worker_id) == (TaskStatus.IN_PROGRESS, "w2")


@pytest.mark.parametrize("final", [TaskStatus.DONE, TaskStatus.ERROR])
@pytest.mark.parametrize("late", list(TaskStatus))
async def test_a_late_callback_never_changes_a_finished_task(
    new_store: NewStore, final: TaskStatus, late: TaskStatus
) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1)
    before = dataclasses.replace(await store.update_status(report(task, final, "w1")))
    changes: list[Task] = []
    store.add_listener(changes.append)

    with pytest.raises(TransitionNotAllowed) as info:
        await store.update_status(report(task, late, "w2"))

    assert (info.value.current, info.value.new) == (final, late)
    assert str(info.value) == f"a {final} task cannot become {late}"
    assert await store.get(task.task_num) == before
    assert changes == []


async def test_in_progress_cannot_go_back_to_pending(new_store: NewStore) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1)
    await store.update_status(report(task, TaskStatus.IN_PROGRESS))

    with pytest.raises(TransitionNotAllowed):
        await store.update_status(report(task, TaskStatus.PENDING))

    assert (await store.get(task.task_num)).status is TaskStatus.IN_PROGRESS


async def test_set_celery_id(new_store: NewStore) -> None:
    store = await new_store()
    task = await store.create(Method.CELERY, 1)

    await store.set_celery_id(task.task_num, "abc-123")

    assert (await store.get(task.task_num)).celery_id == "abc-123"
    await store.set_celery_id(99, "x")  # purged meanwhile: nothing to note, nothing to fail


async def test_discard_waiting_forgets_only_the_pending_tasks_of_one_method(
    new_store: NewStore,
) -> None:
    store = await new_store()
    waiting = await store.create_many(3, Method.RMQ, 1)
    running = await store.create(Method.RMQ, 1)
    await store.update_status(report(running, TaskStatus.IN_PROGRESS))
    celery = await store.create(Method.CELERY, 1)
    forgotten: list[int] = []
    store.add_discard_listener(forgotten.append)

    assert await store.discard_waiting(Method.RMQ) == 3

    numbers = [task.task_num for task in waiting]
    await heard(lambda: sorted(forgotten) == numbers)
    assert {task.task_num for task in await store.recent()} == {running.task_num, celery.task_num}


async def finished(store: TaskStore, count: int) -> list[Task]:
    """``count`` tasks created and finished one after the other."""
    tasks = []
    for _ in range(count):
        task = await store.create(Method.RMQ, 1)
        tasks.append(await store.update_status(report(task, TaskStatus.DONE)))
    return tasks


async def test_eviction_past_the_limit_keeps_the_newest(new_store: NewStore) -> None:
    store = await new_store(limit=10)

    tasks = await finished(store, 25)

    assert await stored(store) == 10
    assert [task.task_num for task in await store.recent()] == list(range(25, 15, -1))
    for task in tasks[:15]:
        with pytest.raises(UnknownTask):
            await store.get(task.task_num)
    for task in tasks[15:]:
        assert await store.get(task.task_num) == task


async def test_the_task_that_finished_first_is_evicted_first(new_store: NewStore) -> None:
    store = await new_store(limit=3)
    first, second, _ = await store.create_many(3, Method.RMQ, 1)
    await store.update_status(report(second, TaskStatus.DONE))
    await store.update_status(report(first, TaskStatus.ERROR))

    await store.create(Method.RMQ, 1)
    assert [task.task_num for task in await store.recent()] == [4, 3, 1]
    await store.create(Method.RMQ, 1)
    assert [task.task_num for task in await store.recent()] == [5, 4, 3]


async def test_an_unfinished_task_is_never_evicted(new_store: NewStore) -> None:
    # The probe: one task IN_PROGRESS, then batch after batch. Its DONE must still find it.
    store = await new_store(limit=10)
    running = await store.create(Method.RMQ, 1)
    await store.update_status(report(running, TaskStatus.IN_PROGRESS))
    waiting = await store.create_many(9, Method.RMQ, 1)

    with pytest.raises(StoreFull) as refused:
        await store.create(Method.RMQ, 1)
    with pytest.raises(StoreFull):
        await store.create_many(3, Method.RMQ, 1)

    assert "TASK_STORE_LIMIT" in str(refused.value) and refused.value.message_ru
    assert await stored(store) == 10 and await store.room() == 0
    done = await store.update_status(report(running, TaskStatus.DONE))
    assert done.task_num == running.task_num and done.status is TaskStatus.DONE
    # Now one task is finished: exactly one new task fits, and it takes the finished one's place.
    [newcomer] = await store.create_many(1, Method.RMQ, 1)
    kept = {task.task_num for task in await store.recent()}
    assert kept == {task.task_num for task in waiting} | {newcomer.task_num}


async def test_a_batch_gets_room_for_all_of_it_or_nothing(new_store: NewStore) -> None:
    store = await new_store(limit=10)
    await finished(store, 4)
    await store.create_many(3, Method.RMQ, 1)
    assert await store.room() == 7  # 3 free places and 4 finished tasks

    with pytest.raises(StoreFull, match="room for 7 more tasks, 8 asked"):
        await store.create_many(8, Method.RMQ, 1)

    assert await stored(store) == 7  # nothing was created
    assert len(await store.create_many(7, Method.RMQ, 1)) == 7
    assert await store.room() == 0


async def test_a_discarded_finished_task_makes_no_room_twice(new_store: NewStore) -> None:
    store = await new_store(limit=10)
    [task] = await finished(store, 1)
    await store.discard(task.task_num)

    assert await store.room() == 10
    await store.create_many(10, Method.RMQ, 1)
    with pytest.raises(StoreFull):
        await store.create(Method.RMQ, 1)


async def test_recent_is_newest_first_and_limited(new_store: NewStore) -> None:
    store = await new_store()
    await store.create_many(7, Method.RMQ, 1)

    assert [task.task_num for task in await store.recent()] == [7, 6, 5, 4, 3, 2, 1]
    assert [task.task_num for task in await store.recent(3)] == [7, 6, 5]
    assert await store.recent(0) == []


async def test_recent_of_an_empty_store(new_store: NewStore) -> None:
    assert await (await new_store()).recent() == []


async def test_recent_returns_at_most_100_by_default(new_store: NewStore) -> None:
    store = await new_store(limit=200)
    await store.create_many(150, Method.RMQ, 1)

    recent = await store.recent()

    assert [recent[0].task_num, recent[-1].task_num, len(recent)] == [150, 51, 100]


async def test_discard_forgets_a_task(new_store: NewStore) -> None:
    store = await new_store()
    kept, dropped = await store.create_many(2, Method.RMQ, 1)

    await store.discard(dropped.task_num)

    with pytest.raises(UnknownTask):
        await store.get(dropped.task_num)
    assert await store.recent() == [kept]


async def test_discard_of_an_unknown_task_does_nothing(new_store: NewStore) -> None:
    store = await new_store()
    await store.create(Method.RMQ, 1)

    await store.discard(42)

    assert await stored(store) == 1


async def test_discarded_numbers_are_not_reused(new_store: NewStore) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1)
    await store.discard(task.task_num)

    assert (await store.create(Method.RMQ, 1)).task_num == task.task_num + 1


async def heard(condition: Callable[[], bool]) -> None:
    """The Redis store tells its listeners what Redis publishes, a moment later: the condition
    is polled from a thread while the event loop goes on hearing."""
    await asyncio.to_thread(wait_for, condition, 5, 0.05, "the store's listeners to hear it")


async def test_listeners_hear_every_create_and_update(new_store: NewStore) -> None:
    store = await new_store()
    first: list[tuple[int, TaskStatus]] = []
    second: list[tuple[int, TaskStatus]] = []
    store.add_listener(lambda task: first.append((task.task_num, task.status)))
    store.add_listener(lambda task: second.append((task.task_num, task.status)))

    task = await store.create(Method.RMQ, 1)
    await store.update_status(report(task, TaskStatus.IN_PROGRESS))
    await store.update_status(report(task, TaskStatus.DONE))

    expected = [(1, TaskStatus.PENDING), (1, TaskStatus.IN_PROGRESS), (1, TaskStatus.DONE)]
    await heard(lambda: first == expected)
    assert second == expected


async def test_to_dict_carries_every_field_and_the_duration(new_store: NewStore) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1.5)
    ended = await store.update_status(report(task, TaskStatus.ERROR))

    data = ended.to_dict()

    assert (data["task_num"], data["method"], data["status"]) == (1, "rmq", "ERROR")
    assert (data["worker_id"], data["duration"]) == ("w", ended.duration)


async def test_a_report_without_worker_id_keeps_the_worker_already_known(
    new_store: NewStore,
) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1)
    await store.update_status(report(task, TaskStatus.IN_PROGRESS, "consumer@host:1"))

    ended = await store.update_status(report(task, TaskStatus.ERROR, None))  # the course's own

    assert (ended.status, ended.worker_id) == (TaskStatus.ERROR, "consumer@host:1")


async def test_redeliveries_are_counted_and_told_to_listeners(new_store: NewStore) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1)
    await store.update_status(report(task, TaskStatus.IN_PROGRESS, "w1"))
    await store.update_status(report(task, TaskStatus.IN_PROGRESS, "w2", redelivered=True))
    await store.update_status(report(task, TaskStatus.DONE, "w2"))
    changes: list[int] = []
    store.add_listener(lambda changed: changes.append(changed.redeliveries))
    await asyncio.sleep(0)  # nothing the Redis store heard before may reach this listener

    # The message of a finished task comes back: refused, but the page learns it came back.
    with pytest.raises(TransitionNotAllowed):
        await store.update_status(report(task, TaskStatus.IN_PROGRESS, "w3", redelivered=True))

    now = await store.get(task.task_num)
    assert (now.status, now.worker_id, now.redeliveries) == (TaskStatus.DONE, "w2", 2)
    await heard(lambda: changes[-1:] == [2])


async def test_finish_listeners_hear_each_task_once_as_it_ends(new_store: NewStore) -> None:
    store = await new_store()
    ended: list[tuple[int, TaskStatus]] = []
    store.add_finish_listener(lambda task: ended.append((task.task_num, task.status)))
    done = await store.create(Method.RMQ, 1)
    await store.update_status(report(done, TaskStatus.IN_PROGRESS))
    await store.update_status(report(done, TaskStatus.DONE))
    # A late or redelivered report of a finished task changes nothing and is not counted again.
    with pytest.raises(TransitionNotAllowed):
        await store.update_status(report(done, TaskStatus.DONE, redelivered=True))
    # A chain's failed member ends the members after it too: each one is heard.
    first, second = await store.create_each(
        [dict(method=Method.CELERY, timeout=1, workflow_id="wf",
              workflow_kind=WorkflowKind.CHAIN, role=Role.MEMBER)] * 2,
        chain=True,
    )
    await store.update_status(report(first, TaskStatus.ERROR))

    assert second.parent == first.task_num
    assert ended == [(done.task_num, TaskStatus.DONE), (first.task_num, TaskStatus.ERROR),
                     (second.task_num, TaskStatus.ERROR)]
    assert (await store.get(second.task_num)).note


async def test_a_chord_summary_ends_when_a_member_fails(new_store: NewStore) -> None:
    store = await new_store()
    kind = dict(method=Method.CELERY, workflow_id="chord", workflow_kind=WorkflowKind.CHORD)
    member, other, summary = await store.create_each([
        dict(kind, timeout=1, role=Role.MEMBER), dict(kind, timeout=1, role=Role.MEMBER),
        dict(kind, timeout=0, role=Role.SUMMARY),
    ])

    await store.update_status(report(member, TaskStatus.ERROR))

    assert (await store.get(summary.task_num)).status is TaskStatus.ERROR
    assert (await store.get(other.task_num)).status is TaskStatus.PENDING


# --- How long the oldest task has waited (a metric) -------------------------------------------


async def assert_oldest_waiting(store: TaskStore, rmq: Task | None, celery: Task | None) -> None:
    """The store's ages are those of ``rmq`` and ``celery`` (None: nothing of that method waits),
    measured while it answered."""
    before = time.time()
    ages = await store.oldest_waiting_ages()
    after = time.time()
    for method, task in ((Method.RMQ, rmq), (Method.CELERY, celery)):
        if task is None:
            assert ages[method] == 0, method
        else:
            # A microsecond either way: Redis keeps the time as a double, as Python does.
            assert before - task.created_at - 1e-6 <= ages[method] <= after - task.created_at + 1e-6


async def test_the_oldest_waiting_task_of_each_method_follows_acceptance_start_and_end(
    new_store: NewStore,
) -> None:
    store = await new_store()
    await assert_oldest_waiting(store, None, None)
    first = await store.create(Method.RMQ, 1)
    await asyncio.sleep(0.01)  # three acceptance times that differ
    celery = await store.create(Method.CELERY, 1)
    await asyncio.sleep(0.01)
    second, _ = await store.create_many(2, Method.RMQ, 1)
    await assert_oldest_waiting(store, first, celery)

    # A worker took the first: the next one is the oldest still waiting.
    await store.update_status(report(first, TaskStatus.IN_PROGRESS))
    await assert_oldest_waiting(store, second, celery)
    # Finished without a report of its start (the course's consumer): no longer waiting either.
    await store.update_status(report(celery, TaskStatus.DONE))
    await assert_oldest_waiting(store, second, None)
    # A report that is refused changes nothing.
    with pytest.raises(TransitionNotAllowed):
        await store.update_status(report(celery, TaskStatus.IN_PROGRESS))
    await store.update_status(report(first, TaskStatus.DONE))
    await assert_oldest_waiting(store, second, None)
    await store.set_celery_id(second.task_num, "celery-id")
    await assert_oldest_waiting(store, second, None)


async def test_a_discarded_or_purged_task_waits_no_longer_and_eviction_keeps_the_waiting(
    new_store: NewStore,
) -> None:
    store = await new_store(limit=10)
    waiting = await store.create(Method.RMQ, 1)
    sent_around = await store.create(Method.CELERY, 1)

    await finished(store, 20)  # the finished ones evict each other, around the waiting two
    await assert_oldest_waiting(store, waiting, sent_around)
    await store.discard(waiting.task_num)
    await assert_oldest_waiting(store, None, sent_around)
    assert await store.discard_waiting(Method.CELERY) == 1
    await assert_oldest_waiting(store, None, None)


async def test_the_unrun_members_of_a_failed_workflow_wait_no_longer(new_store: NewStore) -> None:
    store = await new_store()
    kind = dict(method=Method.CELERY, workflow_id="chain", workflow_kind=WorkflowKind.CHAIN)
    first, then = await store.create_each([dict(kind, timeout=1, role=Role.MEMBER)] * 2,
                                          chain=True)
    await assert_oldest_waiting(store, None, first)

    await store.update_status(report(first, TaskStatus.ERROR))

    assert (await store.get(then.task_num)).status is TaskStatus.ERROR
    await assert_oldest_waiting(store, None, None)


# new_store makes a store per example: the fixture is a factory, so sharing it is safe.
fast = hypothesis.settings(database=None, deadline=None, derandomize=True, max_examples=40,
                           suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])


@fast
@given(walk=st.lists(st.sampled_from(list(TaskStatus)), max_size=12))
async def test_a_random_walk_of_callbacks_never_leaves_a_final_status(
    new_store: NewStore, walk: list[TaskStatus],
) -> None:
    store = await new_store()
    task = await store.create(Method.RMQ, 1)
    for step, new in enumerate(walk):
        # A copy: the memory store changes the very object it keeps.
        before = dataclasses.replace(await store.get(task.task_num))
        try:
            await store.update_status(report(task, new, f"w{step}"))
        except TransitionNotAllowed:
            assert not can_transition(before.status, new)
            assert await store.get(task.task_num) == before
        else:
            assert can_transition(before.status, new)
        now = await store.get(task.task_num)
        if before.status.is_final:
            assert (now.status, now.finished_at) == (before.status, before.finished_at)
        assert (now.finished_at is not None) == now.status.is_final
        if now.status is TaskStatus.PENDING:
            assert all(status is TaskStatus.PENDING for status in walk[: step + 1])


# --- The Redis store only: several processes on one store ------------------------------------


@pytest.fixture
async def two_stores(key_space: str) -> AsyncIterator[tuple[RedisTaskStore, RedisTaskStore]]:
    """Two stores on one key space, as two API processes have."""
    stores = (RedisTaskStore(redis_settings(1000, key_space)),
              RedisTaskStore(redis_settings(1000, key_space)))
    for store in stores:
        await store.start()
    yield stores
    for store in stores:
        await store.close()


async def test_a_task_made_by_one_process_is_seen_and_updated_by_another(
    two_stores: tuple[RedisTaskStore, RedisTaskStore],
) -> None:
    one, other = two_stores
    seen: list[TaskStatus] = []
    other.add_listener(lambda task: seen.append(task.status))

    task = await one.create(Method.RMQ, 1)
    await other.update_status(report(task, TaskStatus.DONE))

    assert (await one.get(task.task_num)).status is TaskStatus.DONE
    await heard(lambda: seen == [TaskStatus.PENDING, TaskStatus.DONE])


async def test_processes_racing_on_one_task_never_break_a_transition_rule(
    two_stores: tuple[RedisTaskStore, RedisTaskStore],
) -> None:
    # Both apply reports to the same tasks at once: every report either applies to the task as
    # the other left it, or is refused; a task that is DONE stays DONE.
    one, other = two_stores
    tasks = await one.create_many(20, Method.RMQ, 1)
    reports = [report(task, status, worker, redelivered=True)
               for task in tasks
               for status, worker in ((TaskStatus.IN_PROGRESS, "a"), (TaskStatus.DONE, "a"),
                                      (TaskStatus.IN_PROGRESS, "b"), (TaskStatus.ERROR, "b"))]

    async def apply(store: RedisTaskStore, sent: StatusReport) -> bool:
        try:
            await store.update_status(sent)
        except TransitionNotAllowed:
            return False
        return True

    applied = await asyncio.gather(*(apply((one, other)[i % 2], sent)
                                     for i, sent in enumerate(reports)))

    for task in tasks:
        now = await one.get(task.task_num)
        assert now.status.is_final
        # Each final status is applied once, the other refused; every report was counted.
        assert now.redeliveries == 4
        finals = [ok for sent, ok in zip(reports, applied, strict=True)
                  if sent.task_num == task.task_num and sent.status.is_final]
        assert sorted(finals) == [False, True]


async def test_every_process_sees_the_same_oldest_waiting_task(
    two_stores: tuple[RedisTaskStore, RedisTaskStore],
) -> None:
    one, other = two_stores
    task = await one.create(Method.CELERY, 1)
    await assert_oldest_waiting(other, None, task)

    await other.update_status(report(task, TaskStatus.IN_PROGRESS))

    await assert_oldest_waiting(one, None, None)


async def test_the_last_place_goes_to_one_process_only(key_space: str) -> None:
    # Two processes, a store of ten places, six tasks each at once: one gets them all, the
    # other a StoreFull, never four and four.
    stores = [RedisTaskStore(redis_settings(10, key_space)) for _ in range(2)]
    try:
        results = await asyncio.gather(*(store.create_many(6, Method.RMQ, 1) for store in stores),
                                       return_exceptions=True)
        assert sorted(type(result).__name__ for result in results) == ["StoreFull", "list"]
        assert await stored(stores[0]) == 6
    finally:
        for store in stores:
            await store.close()


async def test_a_store_that_cannot_reach_redis_answers_store_unavailable() -> None:
    settings = dataclasses.replace(redis_settings(100, "nowhere"),
                                   task_store="redis://127.0.0.1:1/0")
    store = RedisTaskStore(settings)
    try:
        with pytest.raises(StoreUnavailable) as refused:
            await store.create(Method.RMQ, 1)
    finally:
        await store.close()

    assert refused.value.status == 503 and refused.value.message_ru
