"""Errors the API's services raise, and the JSON body of an error answer."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class BrokerUnavailable(RuntimeError):
    """RabbitMQ cannot take a message now (down, restarting, unreachable): the client gets 503."""


def describe(exc: BaseException) -> str:
    """The exception for a message: its type, and its text when it has one (many have none)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def json_error(
    error_class: type[web.HTTPException],
    message: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.HTTPException:
    """An HTTP error whose body is ``{"error": message, **extra}``."""
    body = json.dumps({"error": message, **extra}, ensure_ascii=False)
    return error_class(text=body, content_type="application/json", headers=headers)
