"""The task store in Redis, shared by every API process (TASK_STORE=redis://...).

A stateless API: any process may create a task, apply its worker's report, or show it, and a
restarted process forgets nothing. The rules are :class:`api.store.TaskStore`'s, applied here
atomically across processes:

- a task is one JSON value under ``<prefix>task:<number>``; a change reads it under ``WATCH``
  and writes it in ``MULTI``/``EXEC``, so two processes applying reports to the same task never
  interleave: the second one retries on the task as the first left it (optimistic locking, the
  same rule code as the memory store's, in Python);
- numbers come from ``INCRBY`` on one counter; creating checks the room and inserts in one Lua
  script, so two processes never both take the last place;
- the waiting tasks of each method are a sorted set ``<prefix>waiting:<method>`` of numbers
  scored by acceptance time: a task joins it in the insert script and leaves it in the same
  ``MULTI`` (or script) that changes its status or deletes it, so the oldest waiting task is
  one ``ZRANGE`` away (O(log n)) and never out of step with the tasks;
- every change is published on ``<prefix>changes``. Each process subscribes and feeds its own
  open pages. Pub/sub keeps nothing for a subscriber that is away, so whenever the subscription
  is (re)made the pages start again from a snapshot of the store (a Stream would let a process
  catch up instead, but it has to be trimmed and read with offsets; the snapshot is what a page
  gets on every reconnect anyway).

The keys carry the RabbitMQ vhost, so demos on different vhosts (the tests, say) keep their own
tasks in one Redis. The Lua scripts build key names from the prefix: fine for one Redis, not for
Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from urllib.parse import quote

import redis.asyncio as redis
from redis.exceptions import RedisError, WatchError

from api.errors import describe
from api.model import Task
from api.store import (
    Draft,
    StoreFull,
    StoreUnavailable,
    TaskStore,
    UnknownTask,
    drafted,
    is_waiting,
)
from common.node_ring import NodeRing
from common.settings import Settings
from common.statuses import TaskStatus
from common.tasks import Method

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
# A command that takes longer fails the request with a 503 rather than holding it.
COMMAND_TIMEOUT = 5.0
# How long a workflow's list of members is kept: far longer than any workflow may run.
WORKFLOW_TTL = 24 * 3600
READ_CHUNK = 500  # tasks one MGET reads

# New tasks, all or none. KEYS: recent, finished, the workflow's list of members (or the recent
# set again when there is none), the waiting set of the tasks' method. ARGV: the limit, the task
# key prefix, the channel, the change to publish, how long the workflow's list lives, when the
# tasks were accepted, then number, JSON, number, JSON... Returns -1 once every task is in, or
# the room there was (and inserts none).
INSERT = """
local limit = tonumber(ARGV[1])
local count = (#ARGV - 6) / 2
local room = limit - redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
if room < count then
    return room
end
for i = 7, #ARGV, 2 do
    redis.call('SET', ARGV[2] .. ARGV[i], ARGV[i + 1])
    redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i])
    redis.call('ZADD', KEYS[4], ARGV[6], ARGV[i])
    if KEYS[3] ~= KEYS[1] then
        redis.call('RPUSH', KEYS[3], ARGV[i])
    end
end
if KEYS[3] ~= KEYS[1] then
    redis.call('EXPIRE', KEYS[3], ARGV[5])
end
local excess = redis.call('ZCARD', KEYS[1]) - limit
if excess > 0 then
    local evicted = redis.call('ZPOPMIN', KEYS[2], excess)
    for i = 1, #evicted, 2 do
        redis.call('DEL', ARGV[2] .. evicted[i])
        redis.call('ZREM', KEYS[1], evicted[i])
    end
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return -1
"""

# KEYS: the task, recent, finished, the waiting set of its method. ARGV: the task's number, the
# status it must still have. Deletes the task only if it still has that status (a worker may
# have taken it meanwhile).
DISCARD_IF = """
local stored = redis.call('GET', KEYS[1])
if not stored or cjson.decode(stored)['status'] ~= ARGV[2] then
    return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""


class RedisTaskStore(TaskStore):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.task_store_limit)
        self._redis = redis.Redis.from_url(
            settings.task_store, socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT, health_check_interval=10,
        )
        # Every key of this store starts with it.
        self.prefix = prefix = f"rmq-demo:{quote(settings.rmq_vhost, safe='')}:"
        self._task_prefix = f"{prefix}task:"
        self._counter = f"{prefix}last-task"
        self._recent = f"{prefix}recent"  # every task kept, scored by its number
        self._finished = f"{prefix}finished"  # the finished ones, scored by when they finished
        self._workflow_prefix = f"{prefix}workflow:"
        # The waiting tasks of each method, scored by when they were accepted.
        self._waiting = {method: f"{prefix}waiting:{method}" for method in Method}
        self._channel = f"{prefix}changes"
        self._insert_script = self._redis.register_script(INSERT)
        self._discard_script = self._redis.register_script(DISCARD_IF)
        self._listening: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def _key(self, task_num: int) -> str:
        return f"{self._task_prefix}{task_num}"

    # --- Reading and writing ---------------------------------------------------------------

    async def room(self) -> int:
        async with self._answer(), self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._recent)
            pipe.zcard(self._finished)
            recent, finished = await pipe.execute()
        return self._limit - recent + finished

    async def create_each(self, drafts: Sequence[Draft], chain: bool = False) -> list[Task]:
        """Two round trips: the numbers (``INCRBY``), then the room check, the insert and the
        change published, in one script. A StoreFull wastes the numbers taken: they are never
        handed out again, and numbers need not be consecutive."""
        async with self._answer():
            last = await self._redis.incrby(self._counter, len(drafts))
            tasks = drafted(range(last - len(drafts) + 1, last + 1), drafts, chain)
            # The tasks of one request belong to one workflow or to none, and have one method.
            workflow_id, method = tasks[0].workflow_id, tasks[0].method
            if any(task.method is not method for task in tasks):
                raise ValueError("the tasks of one call to create_each must have one method")
            members = f"{self._workflow_prefix}{workflow_id}" if workflow_id else self._recent
            change = json.dumps({"tasks": [task.to_dict() for task in tasks]})
            pairs = [value for task in tasks for value in (task.task_num, _dumps(task))]
            room = await self._insert_script(
                keys=[self._recent, self._finished, members, self._waiting[method]],
                args=[self._limit, self._task_prefix, self._channel, change, WORKFLOW_TTL,
                      tasks[0].created_at, *pairs],
            )
        if room >= 0:
            raise StoreFull(room, len(tasks), self._limit)
        return tasks

    async def _modify(self, task_num: int, change: Callable[[Task], bool],
                      tell: bool = True) -> tuple[Task, bool]:
        key = self._key(task_num)
        async with self._answer(), self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    stored = await pipe.get(key)
                    if stored is None:
                        raise UnknownTask(task_num)
                    task = _loads(stored)
                    waited = is_waiting(task)
                    if not change(task):
                        return task, False
                    pipe.multi()
                    pipe.set(key, _dumps(task))
                    if waited and not is_waiting(task):
                        pipe.zrem(self._waiting[task.method], task_num)
                    if task.status.is_final:
                        # nx: the time it first finished decides when it is evicted.
                        pipe.zadd(self._finished, {str(task_num): task.finished_at}, nx=True)
                    if tell:
                        pipe.publish(self._channel, json.dumps({"tasks": [task.to_dict()]}))
                    await pipe.execute()
                    return task, True
                except WatchError:
                    continue  # another process changed it first: apply the change to its result

    async def get(self, task_num: int) -> Task:
        async with self._answer():
            stored = await self._redis.get(self._key(task_num))
        if stored is None:
            raise UnknownTask(task_num)
        return _loads(stored)

    async def discard(self, task_num: int) -> None:
        async with self._answer():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(task_num))
                pipe.zrem(self._recent, task_num)
                pipe.zrem(self._finished, task_num)
                for waiting in self._waiting.values():  # its method unread: from both
                    pipe.zrem(waiting, task_num)
                deleted, *_ = await pipe.execute()
            if deleted:
                await self._publish({"discarded": task_num})

    async def discard_waiting(self, method: Method) -> int:
        # Oldest first, as the memory store forgets them; the store never holds over its limit.
        waiting = [task.task_num for task in reversed(await self.recent(self._limit))
                   if task.method is method and task.status is TaskStatus.PENDING]
        discarded = 0
        async with self._answer():
            for task_num in waiting:
                keys = [self._key(task_num), self._recent, self._finished, self._waiting[method]]
                if await self._discard_script(keys=keys,
                                              args=[task_num, TaskStatus.PENDING.value]):
                    discarded += 1
                    await self._publish({"discarded": task_num})
        return discarded

    async def _oldest_waiting(self) -> dict[Method, float]:
        async with self._answer(), self._redis.pipeline(transaction=False) as pipe:
            for waiting in self._waiting.values():
                pipe.zrange(waiting, 0, 0, withscores=True)
            oldest = await pipe.execute()
        return {method: first[0][1] for method, first in zip(self._waiting, oldest, strict=True)
                if first}

    async def workflow(self, workflow_id: str) -> list[Task]:
        async with self._answer():
            numbers = await self._redis.lrange(f"{self._workflow_prefix}{workflow_id}", 0, -1)
        return await self._read([int(number) for number in numbers])

    async def recent(self, limit: int = 100) -> list[Task]:
        if limit <= 0:
            return []
        async with self._answer():
            numbers = await self._redis.zrevrange(self._recent, 0, limit - 1)
        return await self._read([int(number) for number in numbers])

    async def _read(self, numbers: list[int]) -> list[Task]:
        """The tasks of these numbers, in this order; those gone meanwhile left out."""
        tasks: list[Task] = []
        async with self._answer():
            for start in range(0, len(numbers), READ_CHUNK):
                chunk = numbers[start:start + READ_CHUNK]
                stored = await self._redis.mget([self._key(number) for number in chunk])
                tasks += [_loads(value) for value in stored if value is not None]
        return tasks

    async def _publish(self, change: dict) -> None:
        await self._redis.publish(self._channel, json.dumps(change))

    @contextlib.asynccontextmanager
    async def _answer(self) -> AsyncIterator[None]:
        """Redis not answering becomes StoreUnavailable: a 503, never a 500 or a hang."""
        try:
            yield
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(describe(exc)) from exc

    @property
    def state(self) -> str:
        # Subscribed means Redis answered a moment ago; a lost connection clears it at once.
        return "connected" if self._subscribed.is_set() else "disconnected"

    async def clear(self) -> int:
        """Delete every key of this store: a bench or test run in a scratch vhost cleans up.
        How many keys there were."""
        async with self._answer():
            keys = [key async for key in self._redis.scan_iter(f"{self.prefix}*")]
            if keys:
                await self._redis.unlink(*keys)
        return len(keys)

    # --- Hearing the other processes ---------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the changes, waiting a moment for it: a process that serves before it
        listens would miss what others change meanwhile. Redis away: it serves anyway (503s
        until Redis is back) and subscribes as soon as it can."""
        self._listening = asyncio.create_task(self._listen())
        try:
            await asyncio.wait_for(self._subscribed.wait(), CONNECT_TIMEOUT)
        except TimeoutError:
            log.warning("task store: not subscribed to the changes yet, going on")

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        await self._redis.aclose()

    async def _listen(self) -> None:
        """Hear every change, this process's own included, for as long as the API runs."""
        # One node: the ring is the project's one reconnect policy, its backoff.
        redis_ring = NodeRing(["redis"])
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        redis_ring.answered()
                        await self._hear(message)
            except (RedisError, OSError, StoreUnavailable) as exc:
                self._subscribed.clear()
                pause = redis_ring.failed()
                log.warning("task store: lost the subscription to changes (%s), again in %.1f s",
                            describe(exc), pause)
                await asyncio.sleep(pause)

    async def _hear(self, message: dict) -> None:
        if message["type"] == "subscribe":
            # Subscribed, the first time or again after a lost connection (redis-py
            # resubscribes by itself): whatever was published meanwhile was missed.
            log.info("task store: listening to the changes of every API process")
            # Subscribed again after a lost connection, every idle pooled connection predates
            # the outage and would fail its next command with a 503: drop them, new ones open.
            await self._redis.connection_pool.disconnect(inuse_connections=False)
            self._subscribed.set()
            await self._resynced()
            return
        if message["type"] != "message":
            return
        change = json.loads(message["data"])
        if "discarded" in change:
            self._discarded(change["discarded"])
        for data in change.get("tasks", ()):
            self._changed(Task.from_dict(data))


def _dumps(task: Task) -> str:
    return json.dumps(task.to_dict())


def _loads(stored: bytes) -> Task:
    return Task.from_dict(json.loads(stored))
