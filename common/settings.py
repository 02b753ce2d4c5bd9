"""Settings read once from environment variables into a frozen object.

Nothing else in the project reads ``os.environ``: entry points call :meth:`Settings.from_env`,
tests build :class:`Settings` directly. Every default works on a developer's machine with a
native RabbitMQ, so ``make dev`` needs no configuration at all.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

DEFAULT_RMQ_URL = "amqp://student:qwerty@localhost:5672/"


class SettingsError(ValueError):
    """An environment variable has a value the demo cannot use."""


@dataclasses.dataclass(frozen=True)
class Settings:
    rmq_url: str = DEFAULT_RMQ_URL
    # Where workers POST status callbacks; inside Docker this is the api service's name.
    api_url: str = "http://localhost:8080/update_task_status_api/"
    api_host: str = "0.0.0.0"
    api_port: int = 8080
    # Empty means callbacks are open, as in the course; set it to require a bearer token.
    callback_token: str = dataclasses.field(default="", repr=False)
    # Management HTTP API: read by the API for the queues panel; credentials come from rmq_url.
    rmq_management_url: str = "http://localhost:15672/"
    # The link shown to the user's browser (the API may reach the broker under another name).
    rmq_management_public_url: str = "http://localhost:15672/"
    # Task numbers never repeat across API restarts: the allocator keeps its high-water mark here.
    task_counter_path: str = ".state/task_counter"
    task_store_limit: int = 10_000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        values = {
            "rmq_url": env.get("RMQ_URL", defaults.rmq_url),
            "api_url": env.get("API_URL", defaults.api_url),
            "api_host": env.get("API_HOST", defaults.api_host),
            "api_port": _int(env, "API_PORT", defaults.api_port, minimum=1, maximum=65535),
            "callback_token": env.get("CALLBACK_TOKEN", defaults.callback_token),
            "rmq_management_url": env.get("RMQ_MANAGEMENT_URL", defaults.rmq_management_url),
            "rmq_management_public_url": env.get(
                "RMQ_MANAGEMENT_PUBLIC_URL", defaults.rmq_management_public_url
            ),
            "task_counter_path": env.get("TASK_COUNTER_PATH", defaults.task_counter_path),
            "task_store_limit": _int(
                env, "TASK_STORE_LIMIT", defaults.task_store_limit, minimum=10, maximum=10**7
            ),
            "log_level": env.get("LOG_LEVEL", defaults.log_level).upper(),
        }
        if urlsplit(values["rmq_url"]).scheme not in ("amqp", "amqps"):
            raise SettingsError("RMQ_URL must start with amqp:// or amqps://")
        for name in ("api_url", "rmq_management_url"):
            if urlsplit(values[name]).scheme not in ("http", "https"):
                raise SettingsError(f"{name.upper()} must start with http:// or https://")
        return cls(**values)

    @property
    def rmq_user(self) -> str:
        return unquote(urlsplit(self.rmq_url).username or "guest")

    @property
    def rmq_password(self) -> str:
        return unquote(urlsplit(self.rmq_url).password or "guest")

    @property
    def rmq_vhost(self) -> str:
        """The vhost as AMQP clients read it from the URL: an empty path is the default ``/``."""
        path = urlsplit(self.rmq_url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    @property
    def rmq_url_masked(self) -> str:
        return mask_password(self.rmq_url)


def mask_password(url: str) -> str:
    """The URL with its password replaced by ``***``, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{quote(unquote(parts.username or ''), safe='')}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value
