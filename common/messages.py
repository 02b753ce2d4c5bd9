"""The task message both async paths carry, and the checks every producer and worker share."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

MAX_TIMEOUT = 3600.0


class InvalidField(ValueError):
    """A value is unusable; ``field`` names it so that the user is told which one.

    ``message`` is for programs and logs (the JSON API's ``error``); ``message_ru`` is the same
    for people, on the page, which speaks Russian like the course.
    """

    def __init__(self, field: str, message: str, message_ru: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.message_ru = message_ru


SECONDS = ("must be a number of seconds", "нужно число секунд")
POSITIVE_INTEGER = ("must be a positive integer", "нужно целое число больше нуля")


def require(data: Mapping[str, Any], *names: str) -> None:
    """Every field in ``names`` is present in ``data``; the first one missing is named."""
    for name in names:
        if name not in data:
            raise InvalidField(name, "is missing", "не указано")


def parse_timeout(value: Any, field: str = "timeout") -> float:
    """A processing time in seconds: a finite number from 0 to MAX_TIMEOUT (a form sends text)."""
    if isinstance(value, bool) or value is None:
        raise InvalidField(field, *SECONDS)
    if isinstance(value, str):
        try:
            # ASCII only: float() would also read other scripts' digits ("١٢").
            value = float(value.strip()) if value.isascii() else math.nan
        except ValueError:
            raise InvalidField(field, *SECONDS) from None
    if not isinstance(value, int | float):
        raise InvalidField(field, *SECONDS)
    try:
        value = float(value)
    except OverflowError:  # an integer of hundreds of digits, as JSON allows
        value = math.inf
    if not math.isfinite(value) or not 0 <= value <= MAX_TIMEOUT:
        raise InvalidField(
            field,
            f"must be between 0 and {MAX_TIMEOUT:g} seconds",
            f"от 0 до {MAX_TIMEOUT:g} секунд",
        )
    return value


def parse_task_num(value: Any, field: str = "task_num") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidField(field, *POSITIVE_INTEGER)
    return value


def parse_flag(value: Any, field: str = "fail") -> bool:
    if not isinstance(value, bool):
        raise InvalidField(field, "must be true or false", "нужно true или false")
    return value


@dataclasses.dataclass(frozen=True)
class TaskMessage:
    """What a worker needs to run one task; the same fields go to Celery as keyword arguments."""

    task_num: int
    timeout: float
    fail: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The message as plain JSON types: the body's object, and Celery's keyword arguments."""
        # Every field is a plain value, so a shallow copy will do: dataclasses.asdict copies
        # deeply, field by field, dearer than the JSON encoding itself, once for every task sent.
        return {field.name: getattr(self, field.name) for field in MESSAGE_FIELDS}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def from_json(cls, body: bytes) -> TaskMessage:
        """Parse a message body; :class:`InvalidField` says why a message must be dead-lettered."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            # RecursionError: thousands of nested brackets are valid JSON that Python won't parse.
            raise InvalidField("body", "is not JSON", "это не JSON") from None
        if not isinstance(data, dict):
            raise InvalidField("body", "must be a JSON object", "нужен JSON-объект")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskMessage:
        """Check every field; the consumer (from a body) and the Celery task (from its keyword
        arguments) both build their message here, so the two paths accept exactly the same."""
        require(data, "task_num", "timeout")
        return cls(
            task_num=parse_task_num(data["task_num"]),
            timeout=parse_timeout(data["timeout"]),
            fail=parse_flag(data.get("fail", False)),
        )


MESSAGE_FIELDS = dataclasses.fields(TaskMessage)
