"""Request-wide rules: errors become answers (JSON for programs, a page for people), and a
browser may change state only from the demo's own page."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from api.errors import json_error, wants_json

log = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        # aiohttp's own errors (404, 405, 413 ...) come as text/plain: give programs JSON.
        if exc.status >= 400 and exc.content_type != "application/json" and wants_json(request):
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return web.json_response(
                {"error": exc.text or exc.reason}, status=exc.status, headers=headers
            )
        raise
    except Exception:
        # Logged once here with the traceback; the client learns nothing about the internals.
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json(request):
            raise json_error(web.HTTPInternalServerError, "internal error") from None
        return aiohttp_jinja2.render_template(
            "error.html", request, {"message": "Внутренняя ошибка сервера"}, status=500
        )


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@web.middleware
async def same_origin_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Refuse a state-changing request that a browser sends from another site (CSRF).

    Browsers put an ``Origin`` header on every cross-site POST; curl, scripts and the workers
    send none, so they are not affected.
    """
    origin = request.headers.get("Origin")
    cross_site = origin is not None and urlsplit(origin).netloc != request.host
    if request.method in UNSAFE_METHODS and cross_site:
        log.warning("refused %s %s from origin %r", request.method, request.path, origin[:100])
        raise json_error(web.HTTPForbidden, "Origin: cross-site requests are not allowed")
    return await handler(request)
