"""The page: the four modes of the course, the forms, the sync catalogue and the task table."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from api import catalogue
from api.app_keys import dispatcher_key, settings_key, store_key
from api.catalogue import ITEMS, LONG_REQUEST_SECONDS
from api.errors import ApiError
from api.validation import parse_blocking, parse_data_id, parse_task_form
from common.messages import InvalidField
from common.tasks import Method

FIELD_LABELS = {
    "processing_timeout": "Время обработки",
    "count": "Количество задач",
    "routing_key": "Ключ маршрутизации",
    "data_id": "data_id",
}
METHOD_LABELS = {Method.RMQ: "RabbitMQ", Method.CELERY: "Celery"}
FORM_NAMES = {Method.RMQ: "rmq", Method.CELERY: "celery"}


def render_home(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    settings = request.app[settings_key]
    base = {
        "tasks": request.app[store_key].recent(50),
        "catalogue": ITEMS,
        "long_seconds": LONG_REQUEST_SECONDS,
        "method_labels": METHOD_LABELS,
        "management_url": settings.rmq_management_public_url,
        "flower_url": settings.flower_public_url,
        "beat_interval": settings.beat_interval,
        "login_required": bool(settings.api_token),  # then the page offers to log out
        "form_values": {},
        "form_errors": {},
        "notice": None,
        "sync_error": None,
        "sync_result": None,
    }
    return aiohttp_jinja2.render_template("index.html", request, base | context, status=status)


def field_message(exc: InvalidField) -> str:
    return f"{FIELD_LABELS.get(exc.field, exc.field)}: {exc.message_ru}"


async def index(request: web.Request) -> web.Response:
    return render_home(request, notice=_sent_notice(request.query))


def _sent_notice(query) -> str | None:
    """The message after a form's redirect: built from numbers only, never echoing free text."""
    try:
        method = Method(query["sent"])
        first, last = int(query["first"]), int(query["last"])
    except (KeyError, ValueError):
        return None
    count = last - first + 1
    numbers = f"№{first}" if count == 1 else f"№{first}–{last}"
    return f"Отправлено через {METHOD_LABELS[method]}: {numbers}"


async def get_sync_data(request: web.Request) -> web.Response:
    """Sync mode: the client waits for the answer, which is here at once."""
    return await _sync_page(request, long=False)


async def get_sync_long_data(request: web.Request) -> web.Response:
    """The blocking lesson: the same answer, after seven seconds.

    By default (``blocking=1``) the wait is ``time.sleep``, which blocks the event loop ON
    PURPOSE: for those seconds this server answers nobody. See :func:`catalogue.wait_long`.
    """
    return await _sync_page(request, long=True)


async def _sync_page(request: web.Request, *, long: bool) -> web.Response:
    try:
        data_id = parse_data_id(request.query.get("data_id"))
        blocking = parse_blocking(request.query.get("blocking", "1")) if long else None
        answer = await catalogue.answer(data_id, blocking)
    except InvalidField as exc:
        return render_home(request, status=400, sync_error=field_message(exc))
    except catalogue.UnknownItem as exc:
        return render_home(request, status=404, sync_error=f"data_id: {exc.message_ru}")
    return render_home(request, sync_result=answer)


async def send_celery_task(request: web.Request) -> web.Response:
    return await _send_form(request, Method.CELERY)


async def send_rmq_direct(request: web.Request) -> web.Response:
    return await _send_form(request, Method.RMQ)


async def _send_form(request: web.Request, method: Method) -> web.Response:
    form = await request.post()
    values = {name: form.get(name, "") for name in ("processing_timeout", "count", "routing_key")}
    values["fail"] = "fail" in form
    form_name = FORM_NAMES[method]
    try:
        task_request = parse_task_form(method, {k: str(v) for k, v in form.items()})
    except InvalidField as exc:
        return render_home(
            request,
            status=400,
            form_values={form_name: values},
            form_errors={form_name: field_message(exc)},
        )
    try:
        tasks = await request.app[dispatcher_key].submit(task_request)
    except ApiError as exc:  # a full store, a lost broker: said beside the form
        return render_home(
            request,
            status=exc.status,
            form_values={form_name: values},
            form_errors={form_name: exc.message_ru},
        )
    location = request.app.router["index"].url_for().with_query(
        sent=str(method), first=tasks[0].task_num, last=tasks[-1].task_num
    )
    raise web.HTTPSeeOther(location=location)
