"""Unit tests of api/dispatch.py: how a request's tasks go out together, and what happens to them
when the broker takes only some. The broker here is a fake that confirms on the next turn of the
event loop; the real one is in tests/test_failover.py (a batch the broker takes only part of)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from api.dispatch import IN_FLIGHT, Dispatcher, DispatchFailed
from api.errors import BrokerUnavailable
from api.model import TaskRequest
from api.store import MemoryTaskStore, TaskNumbers
from common.messages import TaskMessage
from common.tasks import Method


class FakeBroker:
    """Publishes like api.publisher.Publisher; refuses every message from the ``refuse_from``-th
    on (0-based), or raises ``bug`` instead of confirming."""

    def __init__(self, refuse_from: int | None = None, bug: Exception | None = None) -> None:
        self.refuse_from = refuse_from
        self.bug = bug
        self.tried: list[int] = []
        self.taken: list[int] = []
        self.unconfirmed = 0
        self.most_unconfirmed = 0

    async def publish(self, message: TaskMessage, routing_key: str = "") -> None:
        position = len(self.tried)
        self.tried.append(message.task_num)
        self.unconfirmed += 1
        self.most_unconfirmed = max(self.most_unconfirmed, self.unconfirmed)
        try:
            await asyncio.sleep(0)  # the confirm comes later: other publishes go out meanwhile
            if self.bug is not None:
                raise self.bug
            if self.refuse_from is not None and position >= self.refuse_from:
                raise BrokerUnavailable("the broker refused the message (nack)")
            self.taken.append(message.task_num)
        finally:
            self.unconfirmed -= 1


def dispatcher(tmp_path: Path, broker: FakeBroker) -> tuple[Dispatcher, MemoryTaskStore]:
    store = MemoryTaskStore(TaskNumbers(tmp_path / "counter"), limit=10_000)
    return Dispatcher(store, broker, celery=None), store  # type: ignore[arg-type]


async def test_a_batch_goes_out_in_order_with_at_most_in_flight_unconfirmed(tmp_path) -> None:
    broker = FakeBroker()
    tasks_of, store = dispatcher(tmp_path, broker)

    accepted = await tasks_of.submit(TaskRequest(Method.RMQ, timeout=0, count=100))

    numbers = [task.task_num for task in accepted]
    assert broker.taken == broker.tried == numbers == sorted(numbers)
    assert 1 < broker.most_unconfirmed <= IN_FLIGHT
    assert len(await store.recent(1000)) == 100


async def test_tasks_the_broker_refuses_are_forgotten_and_the_rest_not_tried(tmp_path) -> None:
    broker = FakeBroker(refuse_from=40)
    tasks_of, store = dispatcher(tmp_path, broker)

    with pytest.raises(DispatchFailed) as failed:
        await tasks_of.submit(TaskRequest(Method.RMQ, timeout=0, count=1000))

    sent = [task.task_num for task in failed.value.sent]
    assert sent == broker.taken and len(sent) == 40 and failed.value.asked == 1000
    assert sorted(task.task_num for task in await store.recent(1000)) == sent
    # Those already out when the first refusal came are answered; the rest never wait for a
    # broker that is gone (a window's worth at most, not the whole batch).
    assert len(broker.tried) <= 40 + IN_FLIGHT
    assert "40 из 1000" in failed.value.message_ru


async def test_a_bug_is_not_taken_for_the_broker(tmp_path) -> None:
    tasks_of, _ = dispatcher(tmp_path, FakeBroker(bug=KeyError("oops")))

    with pytest.raises(KeyError):
        await tasks_of.submit(TaskRequest(Method.RMQ, timeout=0, count=3))


async def test_accept_listeners_hear_only_the_tasks_the_broker_took(tmp_path) -> None:
    tasks_of, _ = dispatcher(tmp_path, FakeBroker(refuse_from=3))
    heard: list[list[int]] = []
    tasks_of.add_accept_listener(lambda tasks: heard.append([task.task_num for task in tasks]))

    await tasks_of.submit(TaskRequest(Method.RMQ, timeout=0, count=2))
    with pytest.raises(DispatchFailed) as failed:
        await tasks_of.submit(TaskRequest(Method.RMQ, timeout=0, count=5))

    assert heard == [[1, 2], [task.task_num for task in failed.value.sent]]
    assert heard[1] == [3]
