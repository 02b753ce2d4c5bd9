"""How every part names a task's way in: the path it is sent by, and who asked for it."""

from __future__ import annotations

import enum


class Method(enum.StrEnum):
    """How a task reaches a worker: published to RabbitMQ for the consumer, or sent to Celery."""

    RMQ = "rmq"
    CELERY = "celery"


class Source(enum.StrEnum):
    """Who asked for the task: a client of the API, or Celery Beat's schedule."""

    API = "api"
    BEAT = "beat"
