"""An access log that students can read: the page's own polling, and requests whose handler logs
each of its tasks already, are left out when they succeed."""

from __future__ import annotations

from aiohttp.abc import BaseRequest
from aiohttp.web import StreamResponse
from aiohttp.web_log import AccessLogger

from common import routes

# An open page asks for the first three every second or two, and every successful status
# callback is already logged as "task N: STATUS, worker=..." by its handler: logged again here,
# they would bury the lines students read. So is every accepted task ("task N: published to
# ..." or "sent to Celery"): its request's line would only repeat it, at a tenth of the accept
# path's CPU time (a listing of tasks that succeeds goes unlogged with them).
# Prometheus scrapes /metrics every few seconds: quiet too.
QUIET_PATHS = frozenset({
    routes.HEALTHZ, routes.QUEUES, routes.EVENTS, routes.TASKS, routes.METRICS, routes.CALLBACK
})
FORMAT = '%a "%r" %s %b %Tfs'


class QuietAccessLogger(AccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.path in QUIET_PATHS and response.status < 400:
            return
        super().log(request, response, time)
