"""Request-wide rules: errors become answers (JSON for the API, a page for people), and a
browser may change state only from the demo's own page."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from api.errors import ApiError, BadField, json_answer, json_error
from common.messages import InvalidField

log = logging.getLogger(__name__)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The JSON API's one error rule: every error is ``{"error": ...}`` with its HTTP status.

    An :class:`ApiError` becomes the answer it describes, here and nowhere else; so does a bad
    field (:class:`InvalidField`, raised by the parsers in ``api/validation.py``): a 400 that
    names it.
    """
    try:
        return await handler(request)
    except InvalidField as exc:
        return json_answer(BadField.of(exc))
    except ApiError as exc:
        return json_answer(exc)
    except web.HTTPException as exc:
        # aiohttp's own errors (404, 405, 413 ...) come as text/plain: give programs JSON.
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response({"error": exc.text or exc.reason}, status=exc.status,
                                 headers=headers)
    except Exception:
        # Logged once here with the traceback; the client learns nothing about the internals.
        log.exception("unhandled error on %s %r", request.method, request.path)
        raise json_error(web.HTTPInternalServerError, "internal error") from None


def with_json_errors(handler: Handler) -> Handler:
    """The same rule for a JSON endpoint that lives outside ``/api`` (the course fixed its path)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await json_errors(request, handler)

    return handle


@web.middleware
async def page_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An error on a page: an :class:`ApiError` a view left alone is shown with its status and
    Russian message; an unexpected one is logged once and answered with a page that leaks nothing.
    """
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ApiError as exc:
        page = aiohttp_jinja2.render_template(
            "error.html", request, {"message": exc.message_ru}, status=exc.status
        )
        page.headers.update(exc.headers)
        return page
    except Exception:
        log.exception("unhandled error on %s %r", request.method, request.path)
        return aiohttp_jinja2.render_template(
            "error.html", request, {"message": "Внутренняя ошибка сервера"}, status=500
        )


# The page loads one module script and one stylesheet from /static/ and talks only to its own
# server: nothing inline, nothing from elsewhere. So the policy can forbid everything else, an
# injected <script> included, and no other site may frame the page (clickjacking).
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "img-src 'self' data:",  # the empty data: favicon in base.html
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # A JSON answer or an uploaded-looking body is never read by a browser as a script or page.
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The same protective headers on every answer: pages, JSON, static files and errors."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:  # a live stream has sent its headers already; it is no page
        response.headers.update(SECURITY_HEADERS)
    return response


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def allowed_origins(hosts: frozenset[str]) -> Middleware:
    """Refuse a state-changing request that a browser sends from a page not served under one of
    ``hosts`` (the ALLOWED_HOSTS setting): cross-site request forgery and DNS rebinding.

    Browsers put an ``Origin`` header on every POST; curl, scripts and the workers send none, so
    they are not affected. The request's own ``Host`` proves nothing: a DNS-rebinding page sends
    its own name in both. Any port is accepted: the API cannot know the port the browser sees
    (Docker publishes it under another), and a port is no boundary between sites.
    """

    @web.middleware
    async def allowed_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method in UNSAFE_METHODS and origin is not None:
            host = _host_of(origin)
            if host not in hosts:
                log.warning("refused %s %r from origin %r", request.method, request.path,
                            origin[:100])
                shown = (host or origin)[:100]
                raise json_error(
                    web.HTTPForbidden,
                    f"Origin: the page's host {shown!r} is not in ALLOWED_HOSTS; add it to that"
                    " setting of the API to send forms from a page served under this name",
                    message_ru=f"Страница открыта по адресу {shown}, которого нет в настройке"
                    " ALLOWED_HOSTS: добавьте его туда (переменная окружения сервиса api)",
                )
        return await handler(request)

    return allowed_origin


def _host_of(origin: str) -> str | None:
    """The host name of an Origin header as urlsplit reads it, or None if it names none."""
    try:
        return urlsplit(origin).hostname
    except ValueError:  # "http://[::1" and the like
        return None
