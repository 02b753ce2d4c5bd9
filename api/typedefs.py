"""Typed keys for the application's state: aiohttp checks them and warns on plain strings."""

from aiohttp import web

from api.celery_gateway import CeleryGateway
from api.publisher import Publisher
from api.store import TaskStore
from common.settings import Settings

settings_key = web.AppKey("settings", Settings)
store_key = web.AppKey("store", TaskStore)
publisher_key = web.AppKey("publisher", Publisher)
celery_key = web.AppKey("celery", CeleryGateway)
