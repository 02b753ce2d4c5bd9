"""The errors a user is told about, and the JSON body of an error answer.

Every error a person can act on is an :class:`ApiError`: its HTTP status, the message for
programs and logs (``error``), the same for people (``message_ru``: the page speaks Russian like
the course), and what else the answer carries. The middlewares turn one into an answer, JSON for
the API and a page for people; handlers only raise it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from common.messages import InvalidField


class ApiError(Exception):
    """An error with its HTTP status and both messages; ``extra`` goes into the JSON answer."""

    status: int = 500  # each kind's own; an instance may take its cause's

    def __init__(
        self,
        error: str,
        message_ru: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.message_ru = message_ru
        self.headers = dict(headers or {})
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "message_ru": self.message_ru, **self.extra}


class BadField(ApiError):
    """A request's field is unusable: :class:`InvalidField` (common/ knows no HTTP) as an answer."""

    status = 400

    @classmethod
    def of(cls, exc: InvalidField) -> BadField:
        return cls(str(exc), exc.message_ru, field=exc.field)


class BrokerUnavailable(ApiError):
    """RabbitMQ cannot take a message now (down, restarting, unreachable): the client gets 503.

    Every answer about a lost broker has this shape; ``reason`` is what the client library said.
    """

    status = 503
    MESSAGE_RU = "Брокер недоступен. Попробуйте ещё раз через несколько секунд"

    def __init__(self, reason: str, message_ru: str = MESSAGE_RU, **extra: Any) -> None:
        super().__init__(f"broker unavailable: {reason}", message_ru, **extra)
        self.reason = reason


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
    return error_class(text=_dumps({"error": message, **extra}), content_type="application/json",
                       headers=headers)


def json_answer(exc: ApiError) -> web.Response:
    """The JSON API's answer to ``exc``."""
    return web.json_response(exc.to_dict(), status=exc.status, headers=exc.headers, dumps=_dumps)


def _dumps(data: Any) -> str:
    # Russian as it is, not \u escapes: readable in curl and in logs.
    return json.dumps(data, ensure_ascii=False)
