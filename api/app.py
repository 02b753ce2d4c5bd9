"""The application factory: it builds every resource once and wires the routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractRoute

from api import admin_api, auth, json_api, live, views
from api.admin_api import SHOWN_QUEUES
from api.app_keys import (
    celery_key,
    connection_key,
    dead_letters_key,
    dispatcher_key,
    events_key,
    management_key,
    queues_key,
    settings_key,
    store_key,
    workers_key,
)
from api.auth import GuardedRoutes, require_credentials
from api.celery_client import CeleryClient
from api.connection import BrokerConnection
from api.dead_letters import DeadLetters
from api.dispatch import Dispatcher
from api.events import TaskEvents
from api.forwarded import TrustedProxies, forwarded_client, lookups_ctx
from api.live import SNAPSHOT_SIZE
from api.management import ManagementClient
from api.metrics import Metrics, count_requests, scrape
from api.middlewares import (
    allowed_origins,
    json_errors,
    page_errors,
    security_headers,
    with_json_errors,
)
from api.publisher import Publisher
from api.queues import QueueAdmin
from api.rate_limit import rate_limit
from api.redis_store import RedisTaskStore
from api.store import MemoryTaskStore, TaskNumbers, TaskStore
from api.workers import WorkerBoard
from celery_config import create_celery_app
from common import routes
from common.settings import Settings

HERE = Path(__file__).parent
MAX_BODY = 1024 * 1024  # bigger bodies get 413 before any handler reads them


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[store_key].start()
    yield
    await app[store_key].close()


async def connection_ctx(app: web.Application) -> AsyncIterator[None]:
    connection = app[connection_key]
    connection.start()
    yield
    await connection.close()


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


def create_json_api(guarded: GuardedRoutes, limited: set[AbstractRoute]) -> web.Application:
    """``/api``: the JSON API for scripts and the page's script, with its own error rule.

    What changes state goes into ``limited`` and ``guarded`` (RATE_LIMIT and API_TOKEN); so does
    the live stream into ``guarded``. Reading stays open.
    """
    api = web.Application(middlewares=[json_errors])

    def add(method: str, path: str, handler: Handler, name: str) -> AbstractRoute:
        # common.routes has the full paths; this application is mounted under routes.API.
        return api.router.add_route(method, path.removeprefix(routes.API), handler, name=name)

    def changes_state(route: AbstractRoute) -> None:
        guarded.routes.add(route)
        limited.add(route)

    changes_state(add("POST", routes.TASKS, json_api.create_tasks, "create_tasks"))
    add("GET", routes.TASKS, json_api.list_tasks, "list_tasks")
    add("GET", routes.TASK, json_api.get_task, "task")
    changes_state(add("POST", routes.WORKFLOWS, json_api.create_workflow, "create_workflow"))
    add("GET", routes.SYNC_DATA, json_api.sync_data, "sync_data")
    add("GET", routes.SYNC_LONG_DATA, json_api.sync_long_data, "sync_long_data")
    guarded.routes.add(add("GET", routes.EVENTS, live.task_events, "events"))
    add("GET", routes.QUEUES, admin_api.queues, "queues")
    changes_state(add("POST", routes.PURGE_QUEUE, admin_api.purge_queue, "purge_queue"))
    add("GET", routes.DEAD_LETTERS, admin_api.list_dead_letters, "dead_letters")
    changes_state(add("POST", routes.REPLAY_DEAD_LETTERS, admin_api.replay_dead_letters, "replay"))
    changes_state(add("POST", routes.PURGE_DEAD_LETTERS, admin_api.purge_dead_letters, "purge"))
    return api


def setup_routes(
    app: web.Application, metrics: Metrics, guarded: GuardedRoutes, limited: set[AbstractRoute]
) -> None:
    """Every route; ``guarded`` and ``limited`` learn which ones API_TOKEN and RATE_LIMIT cover:
    the page (its forms change state), and in ``/api`` what changes state and the live stream."""
    router = app.router
    pages = [
        router.add_get("/", views.index, name="index"),
        router.add_get("/get_sync_data/", views.get_sync_data, name="sync_data"),
        router.add_get("/get_sync_long_data/", views.get_sync_long_data, name="sync_long_data"),
    ]
    forms = [
        router.add_post("/send_celery_task/", views.send_celery_task, name="send_celery_task"),
        router.add_post("/send_rmq_direct/", views.send_rmq_direct, name="send_rmq_direct"),
    ]
    guarded.pages.update(pages)
    guarded.routes.update(pages + forms)
    limited.update(forms)
    # The page's login: where a token is guessed, so it is rate limited too.
    router.add_get("/login", auth.login_form, name="login")
    limited.add(router.add_post("/login", auth.login, name="login_submit"))
    router.add_post("/logout", auth.logout, name="logout")
    # Two JSON endpoints outside /api, where the course and the probes expect them. The workers'
    # callback has its own token (CALLBACK_TOKEN) and no rate limit: a refused report is a lost
    # status.
    router.add_post(routes.CALLBACK, with_json_errors(json_api.update_task_status), name="callback")
    router.add_get(routes.HEALTHZ, with_json_errors(json_api.healthz), name="healthz")
    router.add_get(routes.METRICS, scrape(metrics), name="metrics")
    # ?v=<hash> on every static URL: an open tab picks up a changed app.js at its next reload.
    router.add_static("/static/", HERE / "static", name="static", append_version=True)
    app.add_subapp(routes.API, create_json_api(guarded, limited))


def create_store(settings: Settings) -> TaskStore:
    """TASK_STORE: the course's store in this process's memory, or one shared in Redis."""
    if settings.shared_store:
        return RedisTaskStore(settings)
    return MemoryTaskStore(TaskNumbers(settings.task_counter_path), settings.task_store_limit)


def create_app(settings: Settings) -> web.Application:
    store = create_store(settings)
    connection = BrokerConnection(settings)
    publisher = Publisher(connection)
    queues = QueueAdmin(connection)
    board = WorkerBoard()
    events = TaskEvents(board, settings.live_stream_limit)
    metrics = Metrics(events, connection, queues, SHOWN_QUEUES, store)
    # Filled by setup_routes: the routes API_TOKEN guards and RATE_LIMIT counts.
    guarded, limited = GuardedRoutes(), set[AbstractRoute]()
    middlewares = [
        # Outermost: every answer counted, the 403, 429 and 401 below included.
        count_requests(metrics),
        security_headers,
        page_errors,
        allowed_origins(settings.allowed_host_names),
    ]
    # Each only when its setting is set: unset, the API behaves as the course's.
    networks, names = settings.trusted_proxy_parts
    proxies = TrustedProxies(networks, names) if networks or names else None
    if proxies is not None:
        # Before the limit, which counts per client: the one the proxy names.
        middlewares.append(forwarded_client(proxies))
    if (rate := settings.rate_limit_parts) is not None:
        # Before the token check: a client guessing the token is slowed down as well.
        middlewares.append(rate_limit(*rate, limited))
    if settings.api_token:
        middlewares.append(require_credentials(settings.api_token, guarded))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[settings_key] = settings
    app[store_key] = store
    app[connection_key] = connection
    app[queues_key] = queues
    # Celery's client learns that the broker is gone only by hanging; the API's own connection
    # to the same broker notices at once, so the Celery client asks it first.
    app[celery_key] = celery = CeleryClient(
        create_celery_app(settings), broker_ready=connection.wait_connected
    )
    app[dispatcher_key] = dispatcher = Dispatcher(store, publisher, celery)
    app[management_key] = management = ManagementClient(settings)
    app[dead_letters_key] = DeadLetters(dispatcher, connection, queues, management)
    app[workers_key] = board
    app[events_key] = events
    # The live page learns of every change from the store itself, whoever made it.
    store.add_listener(events.publish)
    store.add_listener(board.update)
    store.add_discard_listener(events.discarded)

    async def start_pages_over() -> None:
        events.start_over(await store.recent(SNAPSHOT_SIZE))

    store.add_resync_listener(start_pages_over)
    store.add_finish_listener(metrics.finished)
    dispatcher.add_accept_listener(metrics.accepted)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        filters={"timestamp": format_timestamp},
    )
    app.cleanup_ctx.extend([store_ctx, connection_ctx, celery_ctx, management_ctx])
    if proxies is not None:
        app.cleanup_ctx.append(lookups_ctx(proxies))
    app.on_shutdown.append(end_live_streams)
    setup_routes(app, metrics, guarded, limited)
    return app
