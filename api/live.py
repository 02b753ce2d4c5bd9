"""The live page's event stream: a snapshot of the recent tasks and workers, then every change."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from api.app_keys import events_key, store_key, workers_key
from api.events import Batch, Subscription

log = logging.getLogger(__name__)

SNAPSHOT_SIZE = 100  # tasks a page gets when it (re)connects; the table keeps as many
RECONNECT_MS = 1000  # how soon a browser retries after the stream broke (its default is ~3 s)
IDLE_CHECK = 5.0  # seconds without changes after which a stream checks its page is still there


async def task_events(request: web.Request) -> web.StreamResponse:
    """``GET /api/events``: a snapshot of the recent tasks and workers, then every change.

    Three kinds of events: ``snapshot`` ``{"tasks", "workers"}`` first, then, at most every
    tenth of a second, ``tasks`` (a list of changed tasks, or ``{"task_num", "discarded":
    true}`` for one that was never sent) and ``workers`` (``{"changed": [rows], "gone":
    [worker ids]}``). After a reconnect the browser gets a new snapshot, so it never has to ask
    for what it missed. Over LIVE_STREAM_LIMIT open pages, a 503 says so (TooManyStreams,
    raised by subscribe() before anything is streamed).
    """
    with request.config_dict[events_key].subscribe() as queue:
        return await _stream_changes(request, queue)


async def _stream_changes(request: web.Request, queue: Subscription) -> web.StreamResponse:
    store, board = request.config_dict[store_key], request.config_dict[workers_key]
    # Read before the stream opens: a store that does not answer is a 503 the page retries
    # after, not a stream that breaks at its first line. Changes made meanwhile are queued.
    snapshot = {
        "tasks": [task.to_dict() for task in await store.recent(SNAPSHOT_SIZE)],
        "workers": board.snapshot(),
    }
    async with sse_response(request) as stream:
        try:
            await stream.send(json.dumps(snapshot), event="snapshot", retry=RECONNECT_MS)
            while (batch := await _next_batch(queue, stream)) is not None:
                for event, data in batch:
                    await stream.send(data, event=event)
        except ConnectionResetError:
            log.debug("a live page went away")
        except TimeoutError:
            # aiohttp-sse gives up on a page that takes no data for send_timeout seconds.
            log.info("a live page stopped reading: stream closed")
    return stream


async def _next_batch(queue: Subscription, stream: EventSourceResponse) -> Batch | None:
    """The next batch of changes, or None when the stream is to end."""
    while stream.is_connected():
        try:
            async with asyncio.timeout(IDLE_CHECK):
                return await queue.get()  # None: dropped as too slow, or the server is stopping
        except TimeoutError:
            continue  # nothing changed; look again whether the page is still connected
    return None  # aiohttp-sse's pings found the connection closed
