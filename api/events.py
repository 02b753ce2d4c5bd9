"""Task changes fanned out to every open page, for the live view (Server-Sent Events).

The store calls :meth:`TaskEvents.publish` after each change. Every open page owns a bounded
queue here, and publishing never waits: the store must not slow down because a browser does.
A page whose queue is full is dropped instead; its EventSource reconnects by itself and starts
again from a fresh snapshot, so it loses nothing that is still in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from api.store import Task

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000  # changes a page may fall behind by before it is dropped

TaskEvent = dict[str, Any]
# None in a queue is the end marker: the stream that reads it says goodbye and returns.
Subscription = asyncio.Queue[TaskEvent | None]


class TaskEvents:
    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._closed = False

    def __len__(self) -> int:
        """How many pages are listening."""
        return len(self._subscribers)

    def publish(self, task: Task) -> None:
        """The store's listener: queue the task's new state for every page, without waiting."""
        if self._subscribers:
            self._put(task.to_dict())

    def discarded(self, task_num: int) -> None:
        """The store's discard listener: the task was never sent, pages drop its row."""
        self._put({"task_num": task_num, "discarded": True})

    def _put(self, event: TaskEvent) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("a live page fell %d changes behind: dropped, it will reconnect",
                            queue.qsize())
                self._end(queue)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """A queue of the changes from now on, for as long as the ``with`` block lasts."""
        queue: Subscription = asyncio.Queue(self._queue_size)
        if self._closed:
            queue.put_nowait(None)  # the server is stopping: this stream ends at once
            yield queue
            return
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        """End every stream: at shutdown the server waits for open handlers, these never end."""
        self._closed = True
        for queue in list(self._subscribers):
            self._end(queue)

    def _end(self, queue: Subscription) -> None:
        self._subscribers.discard(queue)
        # Make room for the end marker. What the page misses, its next snapshot holds.
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)
