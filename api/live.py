"""The live page's endpoints: the event stream, the queues panel and the dead-letter panel."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from api.app_keys import (
    dead_letters_key,
    dispatcher_key,
    events_key,
    management_key,
    publisher_key,
    settings_key,
    store_key,
    workers_key,
)
from api.dispatch import QUEUE_OF
from api.errors import BrokerUnavailable, json_error
from api.events import Batch, Subscription
from api.management import ManagementUnavailable
from api.validation import parse_limit
from common import topology
from common.settings import Settings

log = logging.getLogger(__name__)

SNAPSHOT_SIZE = 100  # tasks a page gets when it (re)connects; the table keeps as many
RECONNECT_MS = 1000  # how soon a browser retries after the stream broke (its default is ~3 s)
IDLE_CHECK = 5.0  # seconds without changes after which a stream checks its page is still there
SHOWN_QUEUES = (topology.QUEUE, topology.DEAD_LETTER_QUEUE, topology.CELERY_QUEUE)
MAX_PEEK = 50
# The queues the page may empty, and whose waiting tasks go with them.
PURGEABLE = {queue: method for method, queue in QUEUE_OF.items()}


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
    async with sse_response(request) as stream:
        snapshot = {
            "tasks": [task.to_dict() for task in store.recent(SNAPSHOT_SIZE)],
            "workers": board.snapshot(),
        }
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


async def queues(request: web.Request) -> web.Response:
    """``GET /api/queues``: ready messages and consumers from the broker at once (a passive
    declare); unacked messages from the management API's statistics, which lag."""
    settings = request.config_dict[settings_key]
    publisher = request.config_dict[publisher_key]
    # With a cluster in RMQ_URL, the page shows which node the API publishes through: it
    # changes when that node is lost.
    answer: dict[str, Any] = {
        "management_url": settings.rmq_management_public_url, "node": publisher.node
    }
    names = list(SHOWN_QUEUES)
    try:
        counts = await publisher.queue_counts(names)
    except BrokerUnavailable as exc:
        # The panel says so; everything else on the page goes on working.
        return web.json_response({**answer, "available": False, "error": exc.reason, "queues": []})
    try:
        unacked = await request.config_dict[management_key].unacknowledged(names)
        answer["statistics_error"] = None
    except ManagementUnavailable as exc:
        unacked, answer["statistics_error"] = {}, str(exc)
    rows = []
    router = request.app.router
    for name, count in counts.items():
        row: dict[str, Any] = {"name": name, "exists": count is not None,
                               "url": _queue_page(settings, name)}
        if name in PURGEABLE:
            row["purge_url"] = str(router["purge_queue"].url_for(queue=name))
        if count is not None:
            ready, consumers = count
            row |= {"messages_ready": ready, "consumers": consumers,
                    "messages_unacknowledged": unacked.get(name)}
        rows.append(row)
    return web.json_response({**answer, "available": True, "queues": rows})


def _queue_page(settings: Settings, queue: str) -> str:
    """The queue's page in the management UI, for the user's browser."""
    base = settings.rmq_management_public_url.rstrip("/")
    return f"{base}/#/queues/{quote(settings.rmq_vhost, safe='')}/{quote(queue, safe='')}"


async def purge_queue(request: web.Request) -> web.Response:
    """``POST /api/queues/{queue}/purge``: empty ``test_direct`` or ``celery`` and forget the
    tasks that waited there. The teacher's reset after a flood of work."""
    method = PURGEABLE.get(request.match_info["queue"])
    if method is None:
        queues = " and ".join(PURGEABLE)
        raise json_error(web.HTTPNotFound, f"only {queues} can be purged here"
                         " (the dead letters: POST /api/dead-letters/purge)")
    purged, discarded = await request.config_dict[dispatcher_key].purge(method)
    return web.json_response({"queue": QUEUE_OF[method], "purged": purged,
                              "discarded": discarded})


async def list_dead_letters(request: web.Request) -> web.Response:
    """``GET /api/dead-letters?limit=50``: the first dead letters, and why each one died."""
    limit = parse_limit(request.query.get("limit", str(MAX_PEEK)), MAX_PEEK)
    try:
        letters, total = await request.config_dict[dead_letters_key].peek(limit)
    except ManagementUnavailable as exc:
        return web.json_response({"available": False, "error": str(exc), "messages": [],
                                  "total": None})
    return web.json_response({
        "available": True,
        "messages": [letter.to_dict() for letter in letters],
        "total": total,
    })


async def replay_dead_letters(request: web.Request) -> web.Response:
    """``POST /api/dead-letters/replay``: every dead task message becomes a new task."""
    report = await request.config_dict[dead_letters_key].replay()
    return web.json_response(report.to_dict())


async def purge_dead_letters(request: web.Request) -> web.Response:
    """``POST /api/dead-letters/purge``: empty the dead-letter queue."""
    purged = await request.config_dict[dead_letters_key].purge()
    return web.json_response({"purged": purged})
