"""Typed keys for the application's state: aiohttp checks them and warns on plain strings."""

from aiohttp import web

from api.celery_gateway import CeleryGateway
from api.events import TaskEvents
from api.management import ManagementClient
from api.publisher import Publisher
from api.store import TaskStore
from api.workers import WorkerBoard
from common.settings import Settings

settings_key = web.AppKey("settings", Settings)
store_key = web.AppKey("store", TaskStore)
publisher_key = web.AppKey("publisher", Publisher)
celery_key = web.AppKey("celery", CeleryGateway)
events_key = web.AppKey("events", TaskEvents)
workers_key = web.AppKey("workers", WorkerBoard)
management_key = web.AppKey("management", ManagementClient)
