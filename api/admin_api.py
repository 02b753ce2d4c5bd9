"""The admin JSON API: the queues panel, emptying a queue, and the dead letters."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from aiohttp import web

from api.app_keys import (
    connection_key,
    dead_letters_key,
    dispatcher_key,
    management_key,
    queues_key,
    settings_key,
    store_key,
)
from api.dispatch import QUEUE_OF
from api.errors import BrokerUnavailable, json_error
from api.management import ManagementUnavailable
from api.validation import parse_limit
from common import routes, topology
from common.settings import Settings

log = logging.getLogger(__name__)

SHOWN_QUEUES = (topology.QUEUE, topology.DEAD_LETTER_QUEUE, topology.CELERY_QUEUE)
MAX_PEEK = 50
# The queues the page may empty, and whose waiting tasks go with them.
PURGEABLE = {queue: method for method, queue in QUEUE_OF.items()}


async def queues(request: web.Request) -> web.Response:
    """``GET /api/queues``: ready messages and consumers from the broker at once (a passive
    declare); unacked messages from the management API's statistics, which lag."""
    settings = request.config_dict[settings_key]
    # With a cluster in RMQ_URL, the page shows which node the API publishes through: it
    # changes when that node is lost.
    answer: dict[str, Any] = {
        "management_url": settings.rmq_management_public_url,
        "node": request.config_dict[connection_key].node,
    }
    names = list(SHOWN_QUEUES)
    try:
        counts = await request.config_dict[queues_key].counts(names)
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
    tasks that waited there. The teacher's reset after a flood of work; running tasks go on.

    No task of the queue's method is created or sent meanwhile, so every task forgotten had its
    message in the queue. One exception, for a few milliseconds: a task a worker has just taken
    (not in the queue, so not purged) and not yet reported on is forgotten too; its worker then
    finds it unknown and skips it, as after an API restart.
    """
    method = PURGEABLE.get(request.match_info["queue"])
    if method is None:
        queues = " and ".join(PURGEABLE)
        raise json_error(web.HTTPNotFound, f"only {queues} can be purged here"
                         f" (the dead letters: POST {routes.PURGE_DEAD_LETTERS})")
    async with request.config_dict[dispatcher_key].paused(method):
        purged = await request.config_dict[queues_key].purge(QUEUE_OF[method])
        discarded = await request.config_dict[store_key].discard_waiting(method)
    log.info("%s queue purged: %s messages, %s waiting tasks forgotten",
             method, purged, discarded)
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
