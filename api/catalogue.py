"""The course's catalogue for the synchronous modes: what the server "looks up" and returns."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from api.errors import ApiError

log = logging.getLogger(__name__)

ITEMS: dict[int, str] = {
    10: "Тарелка",
    11: "Ложка",
    12: "Стакан",
    13: "Чашка",
    14: "Кастрюля",
    15: "Вилка",
    16: "Стол",
}

# The long synchronous request answers after this many seconds: the blocking lesson.
LONG_REQUEST_SECONDS = 7.0


class UnknownItem(ApiError):
    """``message_ru`` leaves the field's name to the page, as for a bad field."""

    status = 404

    def __init__(self, data_id: int) -> None:
        low, high = min(ITEMS), max(ITEMS)
        super().__init__(f"data_id: no item {data_id}, the catalogue has {low} to {high}",
                         f"нет товара {data_id}, есть {low}–{high}", field="data_id")


@dataclasses.dataclass(frozen=True)
class Answer:
    """What a sync request gets: the item, and how long the client waited for it."""

    data_id: int
    name: str
    seconds: float
    # Set for the long request only: whether its wait blocked the event loop.
    blocking: bool | None = None


async def answer(data_id: int, blocking: bool | None = None) -> Answer:
    """Look the item up; with ``blocking`` given, the long request: wait first, then answer."""
    started = time.monotonic()
    if data_id not in ITEMS:
        raise UnknownItem(data_id)  # before the wait: a wrong data_id is told at once
    if blocking is not None:
        await wait_long(blocking)
    return Answer(data_id, ITEMS[data_id], time.monotonic() - started, blocking)


async def wait_long(blocking: bool) -> None:
    """The blocking lesson: seven seconds, with or without the whole server.

    ``time.sleep`` blocks the event loop ON PURPOSE: for those seconds this single-threaded server
    answers nobody, not even ``/healthz``. ``asyncio.sleep`` waits as long, but only this request
    waits: the loop serves the others meanwhile.
    """
    if blocking:
        log.info("long sync request: waiting %.0f s in time.sleep, the event loop is blocked",
                 LONG_REQUEST_SECONDS)
        time.sleep(LONG_REQUEST_SECONDS)
    else:
        log.info("long sync request: waiting %.0f s in asyncio.sleep, the loop serves others",
                 LONG_REQUEST_SECONDS)
        await asyncio.sleep(LONG_REQUEST_SECONDS)
