"""Turning what a client sent into typed requests, or into an error that names the field."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from api.model import StatusReport, TaskRequest, WorkflowKind, WorkflowRequest
from common.messages import (
    POSITIVE_INTEGER,
    InvalidField,
    parse_flag,
    parse_task_num,
    parse_timeout,
    require,
)
from common.statuses import TaskStatus
from common.tasks import Method, Source

E = TypeVar("E", bound=enum.StrEnum)
T = TypeVar("T")
R = TypeVar("R", "TaskRequest", "WorkflowRequest")

MAX_BATCH = 1000  # tasks one request may create
WORKFLOW_SIZES = (2, 10)  # how many tasks a workflow may have (a chord's summary not counted)
# Seconds of work one request may queue in all (count × timeout): an hour. Two requests of
# 1000 tasks of an hour each would keep the class's six worker slots busy for two weeks.
MAX_WORK = 3600.0
MAX_ROUTING_KEY = 255  # AMQP's limit for a short string
MAX_WORKER_ID = 200


def decode_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidField("body", "is empty, expected a JSON object", "пусто, нужен JSON-объект")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidField("body", "is not UTF-8", "не в кодировке UTF-8") from None
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise InvalidField("body", "is not valid JSON", "это не JSON") from None
    if not isinstance(data, dict):
        raise InvalidField("body", "must be a JSON object", "нужен JSON-объект")
    return data


MAX_DIGITS = 18  # far more than any count or task number, still a 64-bit integer


WHOLE_NUMBER = ("must be a whole number", "нужно целое число")


def parse_digits(text: str, field: str, message: tuple[str, str] = WHOLE_NUMBER) -> int:
    """A whole number typed as text (a form field, a query or path part): ASCII digits only.

    ``int()`` alone would also take "١٢" and " +5", and refuses thousands of digits with a plain
    ValueError; the length check comes first. Callers strip what a form may pad, if they want.
    """
    if not text.isascii() or not text.isdigit() or len(text) > MAX_DIGITS:
        raise InvalidField(field, *message)
    return int(text)


def parse_count(value: Any, field: str = "count") -> int:
    if isinstance(value, str):
        value = parse_digits(value.strip(), field, (
            f"must be a whole number from 1 to {MAX_BATCH}", f"нужно целое число от 1 до {MAX_BATCH}"
        ))
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(field, *WHOLE_NUMBER)
    if not 1 <= value <= MAX_BATCH:
        raise InvalidField(field, f"must be between 1 and {MAX_BATCH}", f"от 1 до {MAX_BATCH}")
    return value


def parse_choice(kind: type[E], value: Any, field: str) -> E:
    """One of an enum's values, e.g. ``"rmq"`` or ``"celery"`` for a Method."""
    try:
        return kind(value)
    except ValueError:
        choices = " or ".join(f'"{member}"' for member in kind)
        raise InvalidField(field, f"must be {choices}", f"нужно {choices}") from None


def parse_routing_key(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidField("routing_key", "must be a string", "нужна строка")
    if len(value.encode()) > MAX_ROUTING_KEY:
        raise InvalidField(
            "routing_key",
            f"must be at most {MAX_ROUTING_KEY} bytes",
            f"не длиннее {MAX_ROUTING_KEY} байт",
        )
    return value


def parse_task_request(data: Mapping[str, Any]) -> TaskRequest:
    """The JSON API's ``POST /api/tasks`` body."""
    require(data, "method", "timeout")
    return _bounded(TaskRequest(
        method=parse_choice(Method, data["method"], "method"),
        timeout=parse_timeout(data["timeout"]),
        count=parse_count(data.get("count", 1)),
        fail=parse_flag(data.get("fail", False)),
        routing_key=parse_routing_key(data.get("routing_key", "")),
        source=parse_choice(Source, data.get("source", Source.API), "source"),
    ))


def parse_workflow_request(data: Mapping[str, Any]) -> WorkflowRequest:
    """``POST /api/workflows``: ``{"kind", "count", "timeout", "fail_member"}``."""
    require(data, "kind", "count", "timeout")
    low, high = WORKFLOW_SIZES
    count = data["count"]
    if isinstance(count, bool) or not isinstance(count, int) or not low <= count <= high:
        raise InvalidField("count", f"must be a whole number from {low} to {high}",
                           f"нужно целое число от {low} до {high}")
    fail_member = data.get("fail_member")
    if fail_member is not None and (parse_task_num(fail_member, "fail_member") > count):
        raise InvalidField("fail_member", f"must be from 1 to count ({count})",
                           f"нужно число от 1 до {count}")
    return _bounded(WorkflowRequest(
        kind=parse_choice(WorkflowKind, data["kind"], "kind"),
        count=count,
        timeout=parse_timeout(data["timeout"]),
        fail_member=fail_member,
    ))


def parse_task_form(method: Method, form: Mapping[str, str]) -> TaskRequest:
    """The page's forms: text fields, and a checkbox that is simply absent when unchecked."""
    raw_timeout = form.get("processing_timeout", "")
    if not raw_timeout.strip():
        raise InvalidField("processing_timeout", "is empty", "не заполнено")
    return _bounded(TaskRequest(
        method=method,
        timeout=parse_timeout(raw_timeout, "processing_timeout"),
        count=parse_count(form.get("count", "1") or "1"),
        fail="fail" in form,
        routing_key=parse_routing_key(form.get("routing_key", "")),
    ))


def _bounded(request: R) -> R:
    """The request, if its total work is within MAX_WORK; the count is what a user lowers."""
    total = request.count * request.timeout
    if total > MAX_WORK:
        raise InvalidField(
            "count",
            f"count × timeout must be at most {MAX_WORK:g} seconds of work per request (MAX_WORK),"
            f" got {total:g}",
            f"количество × время обработки — не больше {MAX_WORK:g} секунд работы на запрос,"
            f" а здесь {total:g}",
        )
    return request


def parse_data_id(raw: str | None) -> int:
    """``data_id`` from a query string: a plain non-negative integer, nothing else."""
    if raw is None or not raw.strip():
        raise InvalidField("data_id", "is empty", "не заполнено")
    return parse_digits(raw.strip(), "data_id")


def parse_blocking(raw: str) -> bool:
    """``blocking`` of the long sync request: "1" waits with time.sleep, "0" with asyncio.sleep."""
    if raw not in ("0", "1"):
        raise InvalidField("blocking", "must be 0 or 1", "нужно 0 или 1")
    return raw == "1"


def parse_task_num_text(raw: str) -> int:
    """A task number from a URL path."""
    return parse_task_num(parse_digits(raw, "task_num", POSITIVE_INTEGER))


def parse_limit(raw: str, maximum: int) -> int:
    """``?limit=`` of a list endpoint: how many items, from 1 to ``maximum``."""
    message = (f"must be between 1 and {maximum}", f"от 1 до {maximum}")
    limit = parse_digits(raw, "limit", message)
    if not 1 <= limit <= maximum:
        raise InvalidField("limit", *message)
    return limit


def parse_status_report(data: Mapping[str, Any]) -> StatusReport:
    """The workers' callback body; ``worker_id`` and ``redelivered`` may be left out."""
    require(data, "task_num", "task_status")
    try:
        status = TaskStatus(data["task_status"])
    except ValueError:
        statuses = ", ".join(TaskStatus)
        raise InvalidField(
            "task_status", f"must be one of {statuses}", f"одно из: {statuses}"
        ) from None
    return StatusReport(
        task_num=parse_task_num(data["task_num"]),
        status=status,
        worker_id=parse_worker_id(data.get("worker_id")),
        redelivered=parse_flag(data.get("redelivered", False), "redelivered"),
        attempt=_optional(parse_task_num, data.get("attempt"), "attempt"),
        max_attempts=_optional(parse_task_num, data.get("max_attempts"), "max_attempts"),
        next_try_at=_optional(parse_epoch, data.get("next_try_at"), "next_try_at"),
    )


def _optional(parse: Callable[[Any, str], T], value: Any, field: str) -> T | None:
    return None if value is None else parse(value, field)


def parse_epoch(value: Any, field: str) -> float:
    """A moment as seconds since the epoch, as ``time.time()`` gives it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e11:
        raise InvalidField(field, "must be seconds since the epoch", "нужно время в секундах")
    return float(value)


def parse_worker_id(value: Any) -> str | None:
    """Shown on the page and written to the log: printable, so no line can be forged."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_WORKER_ID or not value.isprintable():
        raise InvalidField(
            "worker_id",
            f"must be printable text of 1 to {MAX_WORKER_ID} characters",
            f"печатный текст от 1 до {MAX_WORKER_ID} символов",
        )
    return value
