"""The application factory: it builds every resource once and wires the routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from api import json_api, live, views
from api.app_keys import (
    celery_key,
    dead_letters_key,
    dispatcher_key,
    events_key,
    management_key,
    publisher_key,
    settings_key,
    store_key,
    workers_key,
)
from api.celery_client import CeleryClient
from api.dead_letters import DeadLetters
from api.dispatch import Dispatcher
from api.events import TaskEvents
from api.management import ManagementClient
from api.middlewares import (
    allowed_origins,
    json_errors,
    page_errors,
    security_headers,
    with_json_errors,
)
from api.publisher import Publisher
from api.store import TaskNumbers, TaskStore
from api.workers import WorkerBoard
from celery_app import create_celery_app
from common.settings import Settings
from common.statuses import CALLBACK_PATH

HERE = Path(__file__).parent
MAX_BODY = 1024 * 1024  # bigger bodies get 413 before any handler reads them


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    app[store_key].close()


async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
    publisher = app[publisher_key]
    publisher.start()
    yield
    await publisher.close()


async def celery_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    app[celery_key].close()


async def management_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[management_key].open()
    yield
    await app[management_key].close()


async def end_live_streams(app: web.Application) -> None:
    """on_shutdown, not cleanup_ctx: aiohttp waits for open handlers before the cleanup, and a
    live stream's handler only ends when told to."""
    app[events_key].close()


def format_timestamp(value: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(value))


def create_json_api() -> web.Application:
    """``/api``: the JSON API for scripts and the page's script, with its own error rule."""
    api = web.Application(middlewares=[json_errors])
    router = api.router
    router.add_post("/tasks", json_api.create_tasks, name="create_tasks")
    router.add_get("/tasks", json_api.list_tasks, name="list_tasks")
    router.add_get("/tasks/{task_num}", json_api.get_task, name="task")
    router.add_post("/workflows", json_api.create_workflow, name="create_workflow")
    router.add_get("/sync-data", json_api.sync_data, name="sync_data")
    router.add_get("/sync-long-data", json_api.sync_long_data, name="sync_long_data")
    router.add_get("/events", live.task_events, name="events")
    router.add_get("/queues", live.queues, name="queues")
    router.add_post("/queues/{queue}/purge", live.purge_queue, name="purge_queue")
    router.add_get("/dead-letters", live.list_dead_letters, name="dead_letters")
    router.add_post("/dead-letters/replay", live.replay_dead_letters, name="replay")
    router.add_post("/dead-letters/purge", live.purge_dead_letters, name="purge")
    return api


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/", views.index, name="index")
    router.add_get("/get_sync_data/", views.get_sync_data, name="sync_data")
    router.add_get("/get_sync_long_data/", views.get_sync_long_data, name="sync_long_data")
    router.add_post("/send_celery_task/", views.send_celery_task, name="send_celery_task")
    router.add_post("/send_rmq_direct/", views.send_rmq_direct, name="send_rmq_direct")
    # Two JSON endpoints outside /api, where the course and the probes expect them.
    router.add_post(CALLBACK_PATH, with_json_errors(json_api.update_task_status), name="callback")
    router.add_get("/healthz", with_json_errors(json_api.healthz), name="healthz")
    # ?v=<hash> on every static URL: an open tab picks up a changed app.js at its next reload.
    router.add_static("/static/", HERE / "static", name="static", append_version=True)
    app.add_subapp("/api/", create_json_api())


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[security_headers, page_errors, allowed_origins(settings.allowed_host_names)],
        client_max_size=MAX_BODY,
    )
    app[settings_key] = settings
    app[store_key] = store = TaskStore(
        TaskNumbers(settings.task_counter_path), settings.task_store_limit
    )
    app[publisher_key] = publisher = Publisher(settings)
    # Celery's client learns that the broker is gone only by hanging; the publisher's connection
    # to the same broker notices at once, so the Celery client asks it first.
    app[celery_key] = celery = CeleryClient(
        create_celery_app(settings), broker_ready=publisher.wait_connected
    )
    app[dispatcher_key] = dispatcher = Dispatcher(store, publisher, celery)
    app[management_key] = management = ManagementClient(settings)
    app[dead_letters_key] = DeadLetters(dispatcher, publisher, management)
    app[workers_key] = board = WorkerBoard()
    app[events_key] = events = TaskEvents(board, settings.live_stream_limit)
    # The live page learns of every change from the store itself, whoever made it.
    store.add_listener(events.publish)
    store.add_listener(board.update)
    store.add_discard_listener(events.discarded)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        filters={"timestamp": format_timestamp},
    )
    app.cleanup_ctx.extend([store_ctx, publisher_ctx, celery_ctx, management_ctx])
    app.on_shutdown.append(end_live_streams)
    setup_routes(app)
    return app
