"""The JSON API for scripts, tests, benchmarks and the page's script; the workers' callback.

Handlers parse, call a service and answer. Errors are the ``json_errors`` middleware's business:
a bad field raises :class:`InvalidField` and becomes a 400 there, an :class:`ApiError` (a full
store, a lost broker, an unknown item) the answer it describes.
"""

from __future__ import annotations

import dataclasses
import logging

from aiohttp import web

from api import catalogue
from api.app_keys import celery_key, connection_key, dispatcher_key, settings_key, store_key
from api.auth import bearer_matches
from api.errors import json_error
from api.store import TransitionNotAllowed, UnknownTask
from api.validation import (
    decode_json_object,
    parse_blocking,
    parse_data_id,
    parse_limit,
    parse_status_report,
    parse_task_num_text,
    parse_task_request,
    parse_workflow_request,
)
from common.logs import task_log
from common.tasks import Method

log = logging.getLogger(__name__)

MAX_LIST = 1000


async def create_tasks(request: web.Request) -> web.Response:
    task_request = parse_task_request(decode_json_object(await request.read()))
    tasks = await request.config_dict[dispatcher_key].submit(task_request)
    return web.json_response({"tasks": [task.to_dict() for task in tasks]}, status=202)


async def list_tasks(request: web.Request) -> web.Response:
    limit = parse_limit(request.query.get("limit", "100"), MAX_LIST)
    tasks = await request.config_dict[store_key].recent(limit)
    return web.json_response({"tasks": [task.to_dict() for task in tasks]})


async def get_task(request: web.Request) -> web.Response:
    task_num = parse_task_num_text(request.match_info["task_num"])
    try:
        task = await request.config_dict[store_key].get(task_num)
    except UnknownTask:
        raise json_error(web.HTTPNotFound, f"task {task_num} not found") from None
    data = task.to_dict()
    if task.method is Method.CELERY and task.celery_id is not None:
        celery = await request.config_dict[celery_key].state(task.celery_id)
        data["celery_state"], data["celery_result"] = celery["state"], celery["result"]
        if "error" in celery:
            data["celery_error"] = celery["error"]
    return web.json_response(data)


async def create_workflow(request: web.Request) -> web.Response:
    """``POST /api/workflows``: a chain, group or chord of Celery tasks."""
    workflow_request = parse_workflow_request(decode_json_object(await request.read()))
    workflow_id, tasks = await request.config_dict[dispatcher_key].submit_workflow(
        workflow_request
    )
    return web.json_response(
        {"workflow_id": workflow_id, "tasks": [task.to_dict() for task in tasks]}, status=202
    )


async def sync_data(request: web.Request) -> web.Response:
    """The sync mode for the page's script: ``GET /api/sync-data?data_id=12``."""
    return await _sync_answer(request, long=False)


async def sync_long_data(request: web.Request) -> web.Response:
    """The blocking lesson for the page's script; ``blocking=1`` (the default) blocks the loop."""
    return await _sync_answer(request, long=True)


async def _sync_answer(request: web.Request, *, long: bool) -> web.Response:
    data_id = parse_data_id(request.query.get("data_id"))
    blocking = parse_blocking(request.query.get("blocking", "1")) if long else None
    answer = await catalogue.answer(data_id, blocking)
    return web.json_response(dataclasses.asdict(answer))


async def healthz(request: web.Request) -> web.Response:
    connection = request.config_dict[connection_key]
    broker = "connected" if connection.connected else "disconnected"
    # Which node: with a cluster in RMQ_URL, the one the API publishes through now.
    return web.json_response({"status": "ok", "broker": broker, "node": connection.node,
                              "store": request.config_dict[store_key].state})


def _check_token(request: web.Request) -> None:
    token = request.config_dict[settings_key].callback_token
    if token and not bearer_matches(request, token):
        raise json_error(
            web.HTTPUnauthorized,
            "Authorization: a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def update_task_status(request: web.Request) -> web.Response:
    """The workers' callback: ``{"task_num", "task_status", "worker_id", "redelivered"}``."""
    _check_token(request)
    report = parse_status_report(decode_json_object(await request.read()))
    try:
        task = await request.config_dict[store_key].update_status(report)
    except UnknownTask:
        task_log(log, report.task_num, report.worker_id).warning("callback for an unknown task")
        raise json_error(web.HTTPNotFound, f"task {report.task_num} not found") from None
    except TransitionNotAllowed as exc:
        task_log(log, report.task_num, report.worker_id).info("%s", exc)
        raise json_error(web.HTTPConflict, str(exc), status=str(exc.current)) from None
    task_log(log, task.task_num, task.worker_id).info("%s", task.status)
    return web.json_response({"task": task.to_dict()})
