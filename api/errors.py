"""HTTP errors with a JSON body ``{"error": "..."}`` for the API's machine clients."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from common.messages import InvalidField

# Paths whose clients are programs (scripts, workers, the page's own fetch calls): they get JSON
# errors; everything else is a page and gets HTML.
JSON_PATHS = ("/api/", "/update_task_status_api/", "/healthz")


def wants_json(request: web.Request) -> bool:
    return request.path.startswith(JSON_PATHS)


def json_error(
    error_class: type[web.HTTPException],
    message: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.HTTPException:
    body = json.dumps({"error": message, **extra}, ensure_ascii=False)
    return error_class(text=body, content_type="application/json", headers=headers)


def invalid(exc: InvalidField) -> web.HTTPException:
    return json_error(web.HTTPBadRequest, str(exc), field=exc.field)
