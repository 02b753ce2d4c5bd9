"""The page: the four modes of the course, the forms, the sync catalogue and the task table."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from api.catalogue import ITEMS, LONG_REQUEST_SECONDS
from api.dispatch import DispatchFailed, submit
from api.store import Method
from api.typedefs import settings_key, store_key
from api.validation import parse_data_id, parse_task_form
from common.messages import InvalidField

log = logging.getLogger(__name__)

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
        "form_values": {},
        "form_errors": {},
        "notice": None,
        "sync_error": None,
        "sync_result": None,
    }
    return aiohttp_jinja2.render_template("index.html", request, base | context, status=status)


def field_message(exc: InvalidField) -> str:
    return f"{FIELD_LABELS.get(exc.field, exc.field)}: {exc.message}"


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


class NoAnswer(Exception):
    """The sync request cannot be answered: ``status`` and a message naming ``field``."""

    def __init__(self, status: int, message: str, field: str) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _find_item(request: web.Request) -> tuple[int, str]:
    """The catalogue item that ``?data_id=`` names."""
    try:
        data_id = parse_data_id(request.query.get("data_id"))
    except InvalidField as exc:
        raise NoAnswer(400, field_message(exc), exc.field) from exc
    if data_id not in ITEMS:
        raise NoAnswer(404, f"Нет товара с data_id={data_id}: есть 10–16", "data_id")
    return data_id, ITEMS[data_id]


async def get_sync_data(request: web.Request) -> web.Response:
    """Sync mode: the client waits for the answer, which is here at once."""
    started = time.monotonic()
    try:
        item = _find_item(request)
    except NoAnswer as exc:
        return _sync_error(request, exc)
    return _sync_answer(request, item, started)


async def get_sync_long_data(request: web.Request) -> web.Response:
    """The blocking lesson: the same answer, after seven seconds.

    By default the handler calls ``time.sleep``, which blocks the event loop ON PURPOSE: for those
    seven seconds this single-threaded server answers nobody, not even ``/healthz``. With
    ``blocking=0`` it awaits ``asyncio.sleep``: this request still waits, but the loop serves others.
    """
    started = time.monotonic()
    try:
        blocking = request.query.get("blocking", "1")
        if blocking not in ("0", "1"):
            raise NoAnswer(400, "blocking: должно быть 0 или 1", "blocking")
        # Checked before the wait: a wrong data_id is told at once, not after seven seconds.
        item = _find_item(request)
    except NoAnswer as exc:
        return _sync_error(request, exc)
    if blocking == "1":
        log.info("long sync request: waiting %.0f s in time.sleep, the event loop is blocked",
                 LONG_REQUEST_SECONDS)
        time.sleep(LONG_REQUEST_SECONDS)
    else:
        log.info("long sync request: waiting %.0f s in asyncio.sleep, the loop serves others",
                 LONG_REQUEST_SECONDS)
        await asyncio.sleep(LONG_REQUEST_SECONDS)
    return _sync_answer(request, item, started, blocking=blocking == "1")


def _sync_answer(
    request: web.Request, item: tuple[int, str], started: float, **extra: Any
) -> web.Response:
    data_id, name = item
    result = {"data_id": data_id, "name": name, "seconds": time.monotonic() - started, **extra}
    if _wants_json(request):
        return web.json_response(result)
    return render_home(request, sync_result=result)


def _wants_json(request: web.Request) -> bool:
    """The page's script asks for JSON (it stays on the page); a plain form gets the page."""
    return "application/json" in request.headers.get("Accept", "")


def _sync_error(request: web.Request, exc: NoAnswer) -> web.Response:
    if _wants_json(request):
        return web.json_response({"error": exc.message, "field": exc.field}, status=exc.status)
    return render_home(request, status=exc.status, sync_error=exc.message)


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
        tasks = await submit(request.app, task_request)
    except DispatchFailed as exc:
        return render_home(
            request,
            status=503,
            form_values={form_name: values},
            form_errors={form_name: _not_sent_message(task_request.count, len(exc.sent))},
        )
    location = request.app.router["index"].url_for().with_query(
        sent=str(method), first=tasks[0].task_num, last=tasks[-1].task_num
    )
    raise web.HTTPSeeOther(location=location)


def _not_sent_message(asked: int, sent: int) -> str:
    if sent:
        return f"Брокер недоступен: отправлено {sent} из {asked}, остальные задачи не отправлены"
    return "Брокер недоступен, задачи не отправлены. Попробуйте ещё раз через несколько секунд"
