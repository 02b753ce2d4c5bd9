"""The application factory: it only wires things together."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from api import json_api, live, views
from api.celery_gateway import CeleryGateway
from api.events import TaskEvents
from api.management import ManagementClient
from api.middlewares import error_middleware, same_origin_middleware
from api.publisher import Publisher
from api.store import TaskNumbers, TaskStore
from api.typedefs import (
    celery_key,
    events_key,
    management_key,
    publisher_key,
    settings_key,
    store_key,
    workers_key,
)
from api.workers import WorkerBoard
from celery_app import create_celery_app
from common.settings import Settings

log = logging.getLogger(__name__)

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


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/", views.index, name="index")
    router.add_get("/get_sync_data/", views.get_sync_data, name="sync_data")
    router.add_get("/get_sync_long_data/", views.get_sync_long_data, name="sync_long_data")
    router.add_post("/send_celery_task/", views.send_celery_task, name="send_celery_task")
    router.add_post("/send_rmq_direct/", views.send_rmq_direct, name="send_rmq_direct")
    router.add_post("/update_task_status_api/", json_api.update_task_status, name="callback")
    router.add_post("/api/tasks", json_api.create_tasks, name="api_create_tasks")
    router.add_get("/api/tasks", json_api.list_tasks, name="api_list_tasks")
    router.add_get("/api/tasks/{task_num}", json_api.get_task, name="api_task")
    router.add_get("/healthz", json_api.healthz, name="healthz")
    router.add_get("/api/events", live.task_events, name="api_events")
    router.add_get("/api/queues", live.queues, name="api_queues")
    router.add_get("/api/dead-letters", live.list_dead_letters, name="api_dead_letters")
    router.add_post("/api/dead-letters/replay", live.replay_dead_letters, name="api_replay")
    router.add_post("/api/dead-letters/purge", live.purge_dead_letters, name="api_purge")
    # ?v=<hash> on every static URL: an open tab picks up a changed app.js at its next reload.
    router.add_static("/static/", HERE / "static", name="static", append_version=True)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, same_origin_middleware], client_max_size=MAX_BODY
    )
    app[settings_key] = settings
    app[store_key] = TaskStore(TaskNumbers(settings.task_counter_path), settings.task_store_limit)
    app[publisher_key] = Publisher(settings)
    app[celery_key] = CeleryGateway(create_celery_app(settings))
    app[events_key] = TaskEvents()
    app[workers_key] = WorkerBoard()
    app[management_key] = ManagementClient(settings)
    # The live page learns of every change from the store itself, whoever made it.
    app[store_key].add_listener(app[events_key].publish)
    app[store_key].add_listener(app[workers_key].update)
    app[store_key].add_discard_listener(app[events_key].discarded)
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
