"""Typed keys for the application's state: aiohttp checks them and warns on plain strings.

Handlers of the ``/api`` sub-application read them through ``request.config_dict``, which looks
in the sub-application first and then in the main one, where the factory stores them.
"""

from aiohttp import web

from api.celery_client import CeleryClient
from api.connection import BrokerConnection
from api.dead_letters import DeadLetters
from api.dispatch import Dispatcher
from api.events import TaskEvents
from api.management import ManagementClient
from api.queues import QueueAdmin
from api.store import TaskStore
from api.workers import WorkerBoard
from common.settings import Settings

settings_key = web.AppKey("settings", Settings)
store_key = web.AppKey("store", TaskStore)
connection_key = web.AppKey("connection", BrokerConnection)
queues_key = web.AppKey("queues", QueueAdmin)
celery_key = web.AppKey("celery", CeleryClient)
dispatcher_key = web.AppKey("dispatcher", Dispatcher)
dead_letters_key = web.AppKey("dead_letters", DeadLetters)
events_key = web.AppKey("events", TaskEvents)
workers_key = web.AppKey("workers", WorkerBoard)
management_key = web.AppKey("management", ManagementClient)
