"""The JSON API for scripts, tests and benchmarks, the health check and the workers' callback."""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiohttp import web

from api.dispatch import DispatchFailed, submit
from api.errors import invalid, json_error
from api.store import Method, TransitionNotAllowed, UnknownTask
from api.typedefs import celery_key, publisher_key, settings_key, store_key
from api.validation import (
    decode_json_object,
    parse_limit,
    parse_status_report,
    parse_task_num_text,
    parse_task_request,
)
from common.messages import InvalidField

log = logging.getLogger(__name__)

CELERY_STATE_TIMEOUT = 2.0
MAX_LIST = 1000


async def create_tasks(request: web.Request) -> web.Response:
    try:
        task_request = parse_task_request(decode_json_object(await request.read()))
    except InvalidField as exc:
        raise invalid(exc) from exc
    try:
        tasks = await submit(request.app, task_request)
    except DispatchFailed as exc:
        raise json_error(
            web.HTTPServiceUnavailable,
            f"broker unavailable: {exc}",
            tasks=[task.to_dict() for task in exc.sent],
        ) from exc
    return web.json_response({"tasks": [task.to_dict() for task in tasks]}, status=202)


async def list_tasks(request: web.Request) -> web.Response:
    try:
        limit = parse_limit(request.query.get("limit", "100"), MAX_LIST)
    except InvalidField as exc:
        raise invalid(exc) from exc
    tasks = request.app[store_key].recent(limit)
    return web.json_response({"tasks": [task.to_dict() for task in tasks]})


async def get_task(request: web.Request) -> web.Response:
    try:
        task_num = parse_task_num_text(request.match_info["task_num"])
        task = request.app[store_key].get(task_num)
    except InvalidField as exc:
        raise invalid(exc) from exc
    except UnknownTask:
        raise json_error(web.HTTPNotFound, f"task {task_num} not found") from None
    data = task.to_dict()
    if task.method is Method.CELERY and task.celery_id is not None:
        data["celery_state"] = await _celery_state(request.app, task.celery_id)
    return web.json_response(data)


async def _celery_state(app: web.Application, celery_id: str) -> str | None:
    try:
        return await asyncio.wait_for(app[celery_key].state(celery_id), CELERY_STATE_TIMEOUT)
    except Exception as exc:  # the page must not fail because Celery's result store did
        log.warning("celery state of %s unavailable: %r", celery_id, exc)
        return None


async def healthz(request: web.Request) -> web.Response:
    broker = "connected" if request.app[publisher_key].connected else "disconnected"
    return web.json_response({"status": "ok", "broker": broker})


def _check_token(request: web.Request) -> None:
    token = request.app[settings_key].callback_token
    if not token:
        return
    given = request.headers.get("Authorization", "").encode()
    # compare_digest takes the same time wherever the strings differ: no timing oracle.
    if not hmac.compare_digest(given, f"Bearer {token}".encode()):
        raise json_error(
            web.HTTPUnauthorized,
            "Authorization: a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def update_task_status(request: web.Request) -> web.Response:
    """The workers' callback: ``{"task_num", "task_status", "worker_id"}``."""
    _check_token(request)
    try:
        report = parse_status_report(decode_json_object(await request.read()))
    except InvalidField as exc:
        raise invalid(exc) from exc
    try:
        task = request.app[store_key].update_status(
            report.task_num, report.status, report.worker_id
        )
    except UnknownTask:
        log.warning("task %s: callback for an unknown task, worker=%s", report.task_num, report.worker_id)
        raise json_error(web.HTTPNotFound, f"task {report.task_num} not found") from None
    except TransitionNotAllowed as exc:
        log.info("task %s: %s, worker=%s", report.task_num, exc, report.worker_id)
        raise json_error(web.HTTPConflict, str(exc), status=str(exc.current)) from None
    log.info("task %s: %s, worker=%s", task.task_num, task.status, task.worker_id)
    return web.json_response({"task": task.to_dict()})
