"""API_TOKEN: who may change state, open the page and follow the live stream.

Scripts send ``Authorization: Bearer <API_TOKEN>``. The page logs in once with a small form
(``/login``) and then holds a cookie, because a browser cannot add a header to a form, a link or
an ``EventSource``. The cookie is HttpOnly (the page's script never reads it) and SameSite=Strict
(another site's page cannot send it along, and the Origin check stays in front of every POST).
Its value is an HMAC of a fixed text keyed with the token, not the token itself: it opens the page
and nothing more, no server-side session table is needed (several API processes accept it), and
changing API_TOKEN logs every page out. It lasts as long as the browser session.

With API_TOKEN unset the middleware is not installed at all: the API is open, as in the course.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from api.app_keys import settings_key
from api.errors import json_error

log = logging.getLogger(__name__)

COOKIE = "api_login"
READING_METHODS = frozenset({"GET", "HEAD"})


@dataclasses.dataclass(frozen=True)
class GuardedRoutes:
    """The routes API_TOKEN guards, filled in while the routes are added.

    ``pages``: a browser opening one without the cookie is sent to the login form; every other
    guarded route answers 401 in JSON.
    """

    routes: set[AbstractRoute] = dataclasses.field(default_factory=set)
    pages: set[AbstractRoute] = dataclasses.field(default_factory=set)


def bearer_matches(request: web.Request, token: str) -> bool:
    """Whether the request's Authorization header is exactly ``Bearer <token>``."""
    # aiohttp keeps bytes that are not UTF-8 as surrogates; surrogateescape gives them back, so
    # a header of any bytes is compared (and refused) instead of failing to encode.
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    # compare_digest takes the same time wherever the strings differ: no timing oracle.
    return hmac.compare_digest(given, f"Bearer {token}".encode())


def login_cookie(token: str) -> str:
    """The page's cookie for ``token``: derived from it, so that it never shows the token."""
    return hmac.new(token.encode(), b"api page login", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    """``given == expected`` in constant time, for any text a client sends."""
    # surrogatepass: a cookie or form field may hold lone surrogates (aiohttp keeps bytes that
    # are not UTF-8 so); they must be refused, not fail to encode into a 500.
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def require_credentials(token: str, guarded: GuardedRoutes) -> Middleware:
    """Refuse a guarded route without the token (header) or the login cookie."""
    cookie = login_cookie(token)

    @web.middleware
    async def credentials(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        if route not in guarded.routes:
            return await handler(request)
        if "Authorization" in request.headers:
            if bearer_matches(request, token):
                return await handler(request)
            raise _unauthorized(
                "Authorization: the bearer token is not the API's (API_TOKEN)",
                "Неверный токен в заголовке Authorization (не совпадает с API_TOKEN)",
                'Bearer error="invalid_token"',
            )
        given = request.cookies.get(COOKIE)
        if given is not None and _same(given, cookie):
            return await handler(request)
        if route in guarded.pages and request.method in READING_METHODS:
            raise web.HTTPSeeOther(location=request.app.router["login"].url_for())
        if given is not None:
            raise _unauthorized(
                "the page's login is no longer valid (API_TOKEN changed): log in again at /login",
                "Вход на страницу больше не действует (сменился API_TOKEN): войдите снова",
                "Bearer",
            )
        raise _unauthorized(
            "Authorization: this endpoint needs the API token (API_TOKEN): send"
            " 'Authorization: Bearer <token>', or log in on the page at /login",
            "Нужен токен API (API_TOKEN): заголовок 'Authorization: Bearer <токен>' или вход на"
            " странице /login",
            "Bearer",
        )

    return credentials


def _unauthorized(message: str, message_ru: str, challenge: str) -> web.HTTPException:
    return json_error(web.HTTPUnauthorized, message, message_ru=message_ru,
                      headers={"WWW-Authenticate": challenge})


async def login_form(request: web.Request) -> web.StreamResponse:
    if not request.app[settings_key].api_token:
        raise web.HTTPSeeOther(location=request.app.router["index"].url_for())
    return _render_form(request)


async def login(request: web.Request) -> web.StreamResponse:
    """``POST /login`` with the field ``token``: the cookie, and back to the page."""
    token = request.app[settings_key].api_token
    if not token:
        raise web.HTTPSeeOther(location=request.app.router["index"].url_for())
    given = str((await request.post()).get("token", ""))
    if not _same(given, token):
        log.warning("page login refused from %s", request.remote)
        return _render_form(request, error="Неверный токен", status=401)
    response = web.HTTPSeeOther(location=request.app.router["index"].url_for())
    response.set_cookie(COOKIE, login_cookie(token), httponly=True, samesite="Strict",
                        secure=request.secure, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther(location=request.app.router["login"].url_for())
    response.del_cookie(COOKIE, path="/")
    raise response


def _render_form(request: web.Request, error: str | None = None,
                 status: int = 200) -> web.Response:
    return aiohttp_jinja2.render_template("login.html", request, {"error": error},
                                          status=status)
