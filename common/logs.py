"""One log format for every entry point (LOG_FORMAT): a line per event, text or JSON.

``text`` is the line people read: ``<time> <level> <logger>: <message>``. ``json`` writes the
same event as one JSON object per line, a field per value (``time``, ``level``, ``logger``,
``message``, and ``task_num`` and ``worker_id`` where the line is about a task or a worker), for
a log collector to index.

A line about a task or a worker is logged through :func:`task_log`: its text reads as it always
has ("task 7: done, worker=consumer@host:123"), and its record carries the number and the id as
attributes of their own, which the JSON format writes as fields. Nothing else needs to know.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from common.settings import JSON_LOGS, Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The JSON fields, named after what they hold rather than after LogRecord's attributes. A record's
# other attributes that logging does not set itself (a call's extra=) become fields too.
JSON_FIELDS = {"levelname": "level", "name": "logger"}
# The record attributes task_log sets: the task's number, and the worker's id.
TASK_NUM = "task_num"
WORKER_ID = "worker_id"


def json_formatter() -> logging.Formatter:
    """A line per record, one JSON object: time (ISO 8601, UTC), level, logger, message, and
    each extra attribute of the record (task_num, worker_id; a traceback as exc_info)."""
    return JsonFormatter(
        "{levelname}{name}{message}", style="{", rename_fields=JSON_FIELDS, timestamp="time",
        # Non-ASCII text (Russian notes, say) as it is, not as \\u escapes: still valid JSON.
        json_ensure_ascii=False,
    )


def formatter(settings: Settings) -> logging.Formatter:
    """The formatter LOG_FORMAT asks for."""
    return json_formatter() if settings.log_format == JSON_LOGS else logging.Formatter(FORMAT)


def configure_logging(settings: Settings) -> None:
    """The process's root logger: LOG_LEVEL, and one handler on stderr in LOG_FORMAT."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings))
    # force: a process that configured logging before (Celery's, see celery_app) starts again.
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    # A library's warning (a DeprecationWarning, say) is a log line too, not raw stderr text.
    logging.captureWarnings(True)


class TaskLog(logging.LoggerAdapter):
    """A logger's lines about one task, one worker, or one task on one worker."""

    def __init__(self, logger: logging.Logger, task_num: object = None,
                 worker_id: str | None = None) -> None:
        fields = {TASK_NUM: task_num, WORKER_ID: worker_id}
        super().__init__(logger, {name: value for name, value in fields.items()
                                  if value is not None})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        # The values go into the format string, not its arguments: a "%" in them stays a "%".
        task_num, worker_id = self.extra.get(TASK_NUM), self.extra.get(WORKER_ID)
        if task_num is not None:
            # A number as it is; anything else (a malformed message's) quoted, as %r would.
            shown = task_num if isinstance(task_num, int) else repr(task_num)
            msg = f"task {_literal(shown)}: {msg}"
        if worker_id is not None:
            msg = f"{msg}, worker={_literal(worker_id)}"
        kwargs["extra"] = {**kwargs.get("extra", {}), **self.extra}
        return msg, kwargs


def task_log(logger: logging.Logger, task_num: object = None,
             worker_id: str | None = None) -> TaskLog:
    """``logger`` for the lines about ``task_num`` (run by ``worker_id``): each line reads
    "task N: <message>, worker=<id>" and carries both as fields. Either may be left out."""
    return TaskLog(logger, task_num, worker_id)


def _literal(value: object) -> str:
    return str(value).replace("%", "%%")
