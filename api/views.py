"""The page: the four modes of the course, the forms, the sync catalogue and the task table."""

from __future__ import annotations

import enum
import time
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from api import catalogue
from api.app_keys import dispatcher_key, settings_key, store_key
from api.catalogue import ITEMS, LONG_REQUEST_SECONDS
from api.errors import ApiError
from api.live import SNAPSHOT_SIZE
from api.model import Role, WorkflowKind
from api.validation import parse_blocking, parse_data_id, parse_task_form
from celery_config import FAIL_RETRIES, fail_retry_pauses
from common import routes, topology
from common.messages import InvalidField
from common.statuses import FINAL_STATUSES, TaskStatus
from common.tasks import Method, Source

# A field as the page names it, by the form's input; "body" is the JSON API's whole request.
FIELD_LABELS = {
    "processing_timeout": "Время обработки",
    "count": "Количество задач",
    "routing_key": "Ключ маршрутизации",
    "data_id": "data_id",
    "body": "Запрос",
}
# The JSON API's field names that the page's form names otherwise.
FORM_FIELDS = {"timeout": "processing_timeout"}
METHOD_LABELS = {Method.RMQ: "RabbitMQ", Method.CELERY: "Celery"}
WORKFLOW_LABELS = {WorkflowKind.CHAIN: "цепочка", WorkflowKind.GROUP: "группа",
                   WorkflowKind.CHORD: "аккорд"}


def _names(kind: type[enum.StrEnum]) -> dict[str, str]:
    return {member.name: member.value for member in kind}


# What the page's script calls things, rendered into the page (app.js reads it once): the
# server's own names, so that the script spells no path, status or label of its own.
PAGE_CONFIG = {
    "routes": {
        "tasks": routes.TASKS,
        "task": routes.TASK,
        "workflows": routes.WORKFLOWS,
        "events": routes.EVENTS,
        "queues": routes.QUEUES,
        "dead_letters": routes.DEAD_LETTERS,
        "replay_dead_letters": routes.REPLAY_DEAD_LETTERS,
        "purge_dead_letters": routes.PURGE_DEAD_LETTERS,
        "healthz": routes.HEALTHZ,
    },
    "statuses": _names(TaskStatus),
    "final_statuses": sorted(FINAL_STATUSES),
    "methods": _names(Method),
    "sources": _names(Source),
    "roles": _names(Role),
    "method_labels": METHOD_LABELS,
    "workflow_labels": WORKFLOW_LABELS,
    "field_labels": FIELD_LABELS,
    "form_fields": FORM_FIELDS,
    # Rows the table keeps: as many as a page gets when its live stream (re)connects.
    "table_size": SNAPSHOT_SIZE,
}


async def render_home(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    settings = request.app[settings_key]
    base = {
        "tasks": await request.app[store_key].recent(SNAPSHOT_SIZE),
        "now": time.time(),  # for the running tasks' and the retries' seconds
        "page_config": PAGE_CONFIG,
        # The names the page shows, as every part spells them.
        "routes": routes,
        "topology": topology,
        "statuses": TaskStatus,
        "methods": Method,
        "sources": Source,
        "roles": Role,
        "workflow_kinds": WorkflowKind,
        "method_labels": METHOD_LABELS,
        "workflow_labels": WORKFLOW_LABELS,
        "catalogue": ITEMS,
        "long_seconds": LONG_REQUEST_SECONDS,
        "management_url": settings.rmq_management_public_url,
        "flower_url": settings.flower_public_url,
        "beat_interval": settings.beat_interval,
        # The Celery card's help quotes the retries the worker really makes.
        "fail_attempts": FAIL_RETRIES + 1,
        "retry_pauses": fail_retry_pauses(),
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
    return await render_home(request, notice=_sent_notice(request.query))


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
        return await render_home(request, status=400, sync_error=field_message(exc))
    except catalogue.UnknownItem as exc:
        return await render_home(request, status=404, sync_error=f"data_id: {exc.message_ru}")
    return await render_home(request, sync_result=answer)


async def send_celery_task(request: web.Request) -> web.Response:
    return await _send_form(request, Method.CELERY)


async def send_rmq_direct(request: web.Request) -> web.Response:
    return await _send_form(request, Method.RMQ)


async def _send_form(request: web.Request, method: Method) -> web.Response:
    form = await request.post()
    values = {name: form.get(name, "") for name in ("processing_timeout", "count", "routing_key")}
    values["fail"] = "fail" in form
    form_name = str(method)  # the form's data-form, as the script sends it
    try:
        task_request = parse_task_form(method, {k: str(v) for k, v in form.items()})
    except InvalidField as exc:
        return await render_home(
            request,
            status=400,
            form_values={form_name: values},
            form_errors={form_name: field_message(exc)},
        )
    try:
        tasks = await request.app[dispatcher_key].submit(task_request)
    except ApiError as exc:  # a full store, a lost broker: said beside the form
        return await render_home(
            request,
            status=exc.status,
            form_values={form_name: values},
            form_errors={form_name: exc.message_ru},
        )
    location = request.app.router["index"].url_for().with_query(
        sent=str(method), first=tasks[0].task_num, last=tasks[-1].task_num
    )
    raise web.HTTPSeeOther(location=location)
