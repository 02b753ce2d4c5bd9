"""RATE_LIMIT: at most N state-changing requests per client and period, then 429.

The counting is the ``limits`` library's moving window, kept in this process's memory: exact
(no double burst at a window's edge), and nothing to run beside the API. Two consequences, said
in docs/production.md: with several API processes each counts on its own, so a client may make N per
process; and the client is the connection's remote address, or behind a reverse proxy the
address the proxy names, where TRUSTED_PROXIES says to believe it (api/forwarded.py).

Only the routes that change state are limited (and the page's login, where a token is guessed).
Reading, the live stream, the workers' status reports and /metrics never are: a limit there
would lose task updates or blind the monitoring, not protect anything.
"""

from __future__ import annotations

import math
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute
from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from api.errors import json_error

ITEMS: dict[str, type[RateLimitItem]] = {
    "second": RateLimitItemPerSecond,
    "minute": RateLimitItemPerMinute,
    "hour": RateLimitItemPerHour,
    "day": RateLimitItemPerDay,
}
PERIODS_RU = {"second": "секунду", "minute": "минуту", "hour": "час", "day": "сутки"}


def rate_limit(requests: int, period: str, limited: set[AbstractRoute]) -> Middleware:
    """Answer 429 with Retry-After to a client past ``requests`` per ``period`` on ``limited``."""
    item = ITEMS[period](requests)
    limiter = MovingWindowRateLimiter(MemoryStorage())

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route not in limited:
            return await handler(request)
        client = request.remote or "unknown"
        if limiter.hit(item, client):
            return await handler(request)
        # The moving window frees a place when the oldest counted request leaves it.
        reset_at = limiter.get_window_stats(item, client).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        # No log line of its own: the access log has every 429 already, and a flood must not
        # double it.
        raise json_error(
            web.HTTPTooManyRequests,
            f"RATE_LIMIT: more than {requests} requests per {period} from this client;"
            f" retry in {retry_after} s",
            message_ru=f"Слишком много запросов: не больше {requests} в {PERIODS_RU[period]}"
            f" (RATE_LIMIT). Повторите через {retry_after} с",
            retry_after=retry_after,
            headers={"Retry-After": str(retry_after)},
        )

    return limit
