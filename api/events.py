"""Task and worker changes for every open page, for the live view (Server-Sent Events).

The store calls :meth:`TaskEvents.publish` after each change; publishing only notes which task
changed. At most every BATCH_INTERVAL the changes noted since the last batch, and what moved on
the workers board, are serialized once and queued for every page as one batch: a burst of a
thousand changes costs each page one write, not a thousand, however many pages are open.

Every open page owns a bounded queue of batches here, and publishing never waits: the store must
not slow down because a browser does. A page whose queue is full is dropped instead; its
EventSource reconnects by itself and starts again from a fresh snapshot, so it loses nothing that
is still in the store. The number of pages is bounded too (LIVE_STREAM_LIMIT): one over the
bound is refused at once (:class:`TooManyStreams`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator

from api.errors import ApiError
from api.store import Task
from api.workers import WorkerBoard

log = logging.getLogger(__name__)

BATCH_INTERVAL = 0.1  # seconds: how long changes gather before they go out as one batch
QUEUE_SIZE = 50  # batches (five busy seconds) a page may fall behind by before it is dropped
REFUSED_RETRY_S = 30  # a page refused for LIVE_STREAM_LIMIT tries again after this long

# One batch: (SSE event name, JSON data) pairs, sent in this order. ``tasks``: the changed tasks
# (or {"task_num", "discarded": true} for one never sent); ``workers``: the board's changes.
Batch = tuple[tuple[str, str], ...]
# None in a queue is the end marker: the stream that reads it says goodbye and returns.
Subscription = asyncio.Queue[Batch | None]


class TooManyStreams(ApiError):
    """As many pages as LIVE_STREAM_LIMIT are open already: one more is refused."""

    status = 503

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"too many live pages: {limit} are open already (LIVE_STREAM_LIMIT); close some"
            " tabs or raise the limit",
            f"Слишком много открытых вкладок: сервер уже ведёт {limit} потоков событий"
            " (LIVE_STREAM_LIMIT). Закройте лишние вкладки; страница попробует снова сама",
            headers={"Retry-After": str(REFUSED_RETRY_S)},
        )


class TaskEvents:
    def __init__(
        self,
        board: WorkerBoard,
        limit: int,
        queue_size: int = QUEUE_SIZE,
        interval: float = BATCH_INTERVAL,
    ) -> None:
        self._board = board
        self._limit = limit
        self._queue_size = queue_size
        self._interval = interval
        self._subscribers: set[Subscription] = set()
        # Task number -> the task, whose state is read when the batch is made (so a task that
        # changed ten times goes out once, as it is now); None: it was discarded.
        self._changed: dict[int, Task | None] = {}
        self._next_batch: asyncio.TimerHandle | None = None
        self._closed = False

    def __len__(self) -> int:
        """How many pages are listening."""
        return len(self._subscribers)

    def publish(self, task: Task) -> None:
        """The store's listener: note the change for the next batch, without waiting."""
        self._note(task.task_num, task)

    def discarded(self, task_num: int) -> None:
        """The store's discard listener: the task was never sent, pages drop its row."""
        self._note(task_num, None)

    def _note(self, task_num: int, task: Task | None) -> None:
        if not self._subscribers:
            return  # nobody to tell: a page that opens later starts from a snapshot
        self._changed[task_num] = task
        if self._next_batch is None:
            loop = asyncio.get_running_loop()
            self._next_batch = loop.call_later(self._interval, self._send_batch)

    def _send_batch(self) -> None:
        self._next_batch = None
        changed, self._changed = self._changed, {}
        batch: list[tuple[str, str]] = []
        if changed:
            tasks = [task.to_dict() if task is not None else {"task_num": num, "discarded": True}
                     for num, task in changed.items()]
            batch.append(("tasks", json.dumps(tasks)))
        if (workers := self._board.changes()) is not None:
            batch.append(("workers", json.dumps(workers)))
        if batch:
            self._put(tuple(batch))

    def _put(self, batch: Batch) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(batch)
            except asyncio.QueueFull:
                log.warning("a live page fell %d batches behind: dropped, it will reconnect",
                            queue.qsize())
                self._end(queue)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """A queue of the batches from now on, for as long as the ``with`` block lasts.

        Raises TooManyStreams, before the block, when the limit of open pages is reached.
        """
        queue: Subscription = asyncio.Queue(self._queue_size)
        if self._closed:
            queue.put_nowait(None)  # the server is stopping: this stream ends at once
            yield queue
            return
        if len(self._subscribers) >= self._limit:
            raise TooManyStreams(self._limit)
        if not self._subscribers:
            self._board.changes()  # what moved while nobody watched: the page's snapshot has it
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def start_over(self, recent: list[Task]) -> None:
        """Changes may have been missed (the shared store's subscription was lost): the board
        is rebuilt from the ``recent`` tasks, and every page reconnects to a fresh snapshot."""
        self._changed = {}
        self._board.rebuild(recent)
        if self._subscribers:
            log.info("live pages start over from a snapshot: %d", len(self._subscribers))
        for queue in list(self._subscribers):
            self._end(queue)

    def close(self) -> None:
        """End every stream: at shutdown the server waits for open handlers, these never end."""
        self._closed = True
        if self._next_batch is not None:
            self._next_batch.cancel()
        for queue in list(self._subscribers):
            self._end(queue)

    def _end(self, queue: Subscription) -> None:
        self._subscribers.discard(queue)
        # Make room for the end marker. What the page misses, its next snapshot holds.
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)
