"""Settings read once from environment variables into a frozen object.

Nothing else in the project reads ``os.environ``: entry points call :meth:`Settings.from_env`,
tests build :class:`Settings` directly. Every default works on a developer's machine with a
native RabbitMQ, so ``make dev`` needs no configuration at all.
"""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from common import routes
from common.topology import CLASSIC, QUEUE_TYPES

DEFAULT_RMQ_URL = "amqp://student:qwerty@localhost:5672/"
# RMQ_URL and RMQ_MANAGEMENT_URL may list several nodes of one cluster, as Celery's broker_url
# does: "amqp://...@node-1/;amqp://...@node-2/". Clients use the first that answers.
URL_SEPARATOR = ";"
MEMORY_STORE = "memory"
# The shared store on the machine's own Redis, when several API processes run (make dev APIS=2):
# a database of its own beside Celery's results (0) and the cluster demo's (1).
LOCAL_REDIS_STORE = "redis://localhost:6379/2"
REDIS_SCHEMES = ("redis", "rediss")
# LOG_FORMAT: a line of text per event, as in the course, or a JSON object per line for a log
# collector (common.logs).
TEXT_LOGS = "text"
JSON_LOGS = "json"
LOG_FORMATS = (TEXT_LOGS, JSON_LOGS)


class SettingsError(ValueError):
    """An environment variable has a value the demo cannot use."""


def _env(name: str, **kwargs: Any) -> Any:
    """A settings field read from the environment variable ``name``."""
    return dataclasses.field(metadata={"env": name}, **kwargs)


@dataclasses.dataclass(frozen=True)
class Settings:
    # Not in repr(): the URL carries the password; log rmq_url_masked instead. One URL, or the
    # nodes of a cluster separated by ";" (see rmq_urls).
    rmq_url: str = _env("RMQ_URL", default=DEFAULT_RMQ_URL, repr=False)
    # "classic" keeps the course's lesson as it is; "quorum" replicates the demo's queues over
    # the nodes of a cluster (Raft), so that losing one node loses no message.
    rmq_queue_type: str = _env("RMQ_QUEUE_TYPE", default=CLASSIC)
    # The certificate authority (a PEM file) every client checks the broker's certificate
    # against, for amqps:// and an https:// management URL; empty: the system's trusted ones.
    rmq_ca_file: str = _env("RMQ_CA_FILE", default="")
    # The production checklist, all of it: no service starts unless every item is set (see
    # validate_secure). Each item also works on its own, without this switch.
    secure: bool = _env("SECURE", default=False)
    # Where workers POST status reports. API_URL is the course's name for it; inside Docker the
    # host is the api service's name.
    callback_url: str = _env("API_URL", default=f"http://localhost:8080{routes.CALLBACK}")
    api_host: str = _env("API_HOST", default="0.0.0.0")
    api_port: int = _env("API_PORT", default=8080)
    # Empty means callbacks are open, as in the course; set it to require a bearer token.
    callback_token: str = _env("CALLBACK_TOKEN", default="", repr=False)
    # Empty means the API is open, as in the course. Set, every state-changing request, the live
    # stream and the page need it: "Authorization: Bearer <API_TOKEN>", or the page's login.
    api_token: str = _env("API_TOKEN", default="", repr=False)
    # Requests per client on the state-changing endpoints, like "30/minute" or "5/second" (see
    # rate_limit_parts); empty means no limit, as in the course.
    rate_limit: str = _env("RATE_LIMIT", default="")
    # The reverse proxies in front of the API whose X-Forwarded-For names the client (for
    # RATE_LIMIT): addresses, networks like 10.0.0.0/8, or host names, separated by commas. Empty
    # means none: the client is whoever opened the connection, whatever the header says.
    trusted_proxies: str = _env("TRUSTED_PROXIES", default="")
    # Management HTTP API: read by the API for the queues panel; credentials come from rmq_url.
    # Several nodes' URLs separated by ";": the panel asks the next when one does not answer.
    rmq_management_url: str = _env("RMQ_MANAGEMENT_URL", default="http://localhost:15672/")
    # The link shown to the user's browser (the API may reach the broker under another name).
    rmq_management_public_url: str = _env(
        "RMQ_MANAGEMENT_PUBLIC_URL", default="http://localhost:15672/"
    )
    # Celery's results: Redis, which every process can read (chords need it); "rpc://" works
    # for the basic modes only.
    result_backend: str = _env("RESULT_BACKEND", default="redis://localhost:6379/0")
    # How often Celery Beat sends its periodic task, in seconds.
    beat_interval: int = _env("BEAT_INTERVAL", default=30)
    # Flower, Celery's web UI: the link shown on the page.
    flower_public_url: str = _env("FLOWER_PUBLIC_URL", default="http://localhost:5555/")
    # Where the API keeps its tasks: "memory", the course's way (one API process; a restart
    # forgets every status), or a Redis URL, shared by any number of API processes.
    task_store: str = _env("TASK_STORE", default=MEMORY_STORE, repr=False)
    # Task numbers never repeat across API restarts: the memory store keeps its high-water mark
    # here (the Redis store keeps its counter in Redis).
    task_counter_path: str = _env("TASK_COUNTER_PATH", default=".state/task_counter")
    task_store_limit: int = _env("TASK_STORE_LIMIT", default=10_000)
    # Live pages (event streams) open at once: a class with a few tabs each fits; one more is
    # refused with a 503 and the page says why.
    live_stream_limit: int = _env("LIVE_STREAM_LIMIT", default=100)
    # The host names a browser may show the page under and still send forms (the Origin check
    # against CSRF and DNS rebinding): the local names and the compose service name. A teacher
    # who serves the demo on a LAN adds the machine's address or name.
    allowed_hosts: str = _env("ALLOWED_HOSTS", default="localhost,127.0.0.1,[::1],api")
    log_level: str = _env("LOG_LEVEL", default="INFO")
    # How every process writes its log: "text" (a line per event) or "json" (an object per line).
    log_format: str = _env("LOG_FORMAT", default=TEXT_LOGS)

    @classmethod
    def env_names(cls) -> list[str]:
        """Every environment variable the demo reads."""
        return [field.metadata["env"] for field in dataclasses.fields(cls)]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(field.metadata["env"], "")
            if raw == "":
                continue  # unset or empty: the default
            values[field.name] = _PARSERS.get(field.type, _text)(field, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    @classmethod
    def from_env_or_exit(cls) -> Settings:
        """:meth:`from_env` for an entry point: a value it cannot use ends the process with one
        line that names the variable, not a traceback."""
        try:
            return cls.from_env()
        except SettingsError as exc:
            raise SystemExit(f"configuration error: {exc}") from None

    def to_env(self) -> dict[str, str]:
        """The environment that makes :meth:`from_env` build these settings (for child processes)."""
        return {
            field.metadata["env"]: str(getattr(self, field.name))
            for field in dataclasses.fields(self)
        }

    def validate(self) -> None:
        if not self.rmq_urls:
            raise SettingsError("RMQ_URL lists no URL")
        for url in self.rmq_urls:
            rmq = urlsplit(url)
            if rmq.scheme not in ("amqp", "amqps"):
                raise SettingsError(
                    "RMQ_URL must start with amqp:// or amqps:// (several URLs: separated by ;)"
                )
            try:
                _ = rmq.port  # urlsplit checks the port only when it is read
            except ValueError:
                raise SettingsError("RMQ_URL has a port that is not a number") from None
        # One user on one vhost: the nodes of a cluster share both, and so must the URLs.
        if len({_login(url) for url in self.rmq_urls}) > 1:
            raise SettingsError(
                "RMQ_URL lists nodes with different users, passwords or vhosts:"
                " the nodes of one cluster share them"
            )
        if self.rmq_queue_type not in QUEUE_TYPES:
            raise SettingsError(
                f"RMQ_QUEUE_TYPE must be {' or '.join(QUEUE_TYPES)}, got {self.rmq_queue_type!r}"
            )
        for field in dataclasses.fields(self):
            if field.name not in _HTTP_URLS:
                continue
            urls = split_urls(getattr(self, field.name))
            if not urls:
                raise SettingsError(f"{field.metadata['env']} lists no URL")
            if len(urls) > 1 and field.name not in _URL_LISTS:
                raise SettingsError(f"{field.metadata['env']} must be one URL, not a list")
            if not all(urlsplit(url).scheme in ("http", "https") for url in urls):
                raise SettingsError(f"{field.metadata['env']} must start with http:// or https://")
        if urlsplit(self.result_backend).scheme not in ("redis", "rediss", "rpc"):
            raise SettingsError("RESULT_BACKEND must start with redis://, rediss:// or rpc://")
        if self.shared_store and urlsplit(self.task_store).scheme not in REDIS_SCHEMES:
            raise SettingsError(f"TASK_STORE must be {MEMORY_STORE} or a redis:// URL")
        for name in self.allowed_hosts.split(","):
            if not _HOST_NAME.fullmatch(name.strip()):
                raise SettingsError(
                    "ALLOWED_HOSTS must be host names or addresses separated by commas, without"
                    f" scheme or port (like localhost,192.168.1.10), got {name.strip()!r}"
                )
        if self.rate_limit:
            _ = self.rate_limit_parts  # raises SettingsError naming RATE_LIMIT
        _ = self.trusted_proxy_parts  # raises SettingsError naming TRUSTED_PROXIES
        if self.rmq_ca_file:
            try:  # what every client does with it (common.tls): fail here, once, with its name
                ssl.create_default_context(cafile=self.rmq_ca_file)
            except OSError as exc:  # no such file, or no PEM certificate in it (ssl.SSLError)
                raise SettingsError(
                    f"RMQ_CA_FILE must name a PEM file of certificates, got"
                    f" {self.rmq_ca_file!r} ({exc.strerror or exc.reason or exc})"
                ) from None
        if self.secure:
            self.validate_secure()
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(
                f"LOG_FORMAT must be {' or '.join(LOG_FORMATS)}, got {self.log_format!r}"
            )

    def validate_secure(self) -> None:
        """SECURE=1: every item of the checklist is on, or the service does not start."""
        missing = []
        if not all(url.startswith("amqps://") for url in self.rmq_urls):
            missing.append("RMQ_URL must be amqps:// (TLS)")
        if not all(url.startswith("https://") for url in self.rmq_management_urls):
            missing.append("RMQ_MANAGEMENT_URL must be https://")
        if (self.rmq_user, self.rmq_password) == COURSE_LOGIN:
            missing.append("RMQ_URL must not log in as the course's student/qwerty")
        for name, value in (("API_TOKEN", self.api_token), ("CALLBACK_TOKEN", self.callback_token)):
            if len(value) < MIN_SECRET_LENGTH:
                missing.append(f"{name} must be set, at least {MIN_SECRET_LENGTH} characters")
        if not self.rate_limit:
            missing.append("RATE_LIMIT must be set")
        if missing:
            raise SettingsError(
                "SECURE=1 needs the whole checklist (python -m secure writes it):"
                f" {'; '.join(missing)}"
            )

    @property
    def shared_store(self) -> bool:
        """The tasks are in Redis (TASK_STORE), where any number of API processes share them."""
        return self.task_store != MEMORY_STORE

    @property
    def allowed_host_names(self) -> frozenset[str]:
        """ALLOWED_HOSTS as a browser's Origin names them: lower case, IPv6 without brackets."""
        return frozenset(name.strip().lower().strip("[]") for name in self.allowed_hosts.split(","))

    @property
    def rate_limit_parts(self) -> tuple[int, str] | None:
        """RATE_LIMIT as (requests, period), the period one of RATE_PERIODS; None when unset."""
        if not self.rate_limit:
            return None
        match = _RATE.fullmatch(self.rate_limit.strip())
        if match is None:
            raise SettingsError(
                "RATE_LIMIT must be requests per period, like 30/minute or 5/second (periods:"
                f" {', '.join(RATE_PERIODS)}), got {self.rate_limit!r}"
            )
        requests = int(match["requests"])
        if not 1 <= requests <= MAX_RATE:
            raise SettingsError(
                f"RATE_LIMIT must allow between 1 and {MAX_RATE} requests per period,"
                f" got {requests}"
            )
        return requests, match["period"]

    @property
    def trusted_proxy_parts(self) -> tuple[tuple[IPv4Network | IPv6Network, ...], tuple[str, ...]]:
        """TRUSTED_PROXIES as (networks, host names); an address is a network of one."""
        if not self.trusted_proxies:
            return (), ()
        networks, names = [], []
        for entry in (item.strip() for item in self.trusted_proxies.split(",")):
            try:
                networks.append(ip_network(entry))
                continue
            except ValueError:
                pass
            # A name, not a mistyped address: "300.1.1.1" or "[::1]" is neither.
            if not _DNS_NAME.fullmatch(entry) or entry.replace(".", "").isdigit():
                raise SettingsError(
                    "TRUSTED_PROXIES must be addresses, networks (10.0.0.0/8) or host names"
                    f" separated by commas, got {entry!r}"
                )
            names.append(entry.lower())
        return tuple(networks), tuple(names)

    @property
    def rmq_urls(self) -> tuple[str, ...]:
        """Every node RMQ_URL lists, in its order: clients try them in turn."""
        return split_urls(self.rmq_url)

    @property
    def rmq_management_urls(self) -> tuple[str, ...]:
        return split_urls(self.rmq_management_url)

    @property
    def rmq_user(self) -> str:
        return _login(self.rmq_urls[0])[0]

    @property
    def rmq_password(self) -> str:
        return _login(self.rmq_urls[0])[1]

    @property
    def rmq_vhost(self) -> str:
        """The vhost as AMQP clients read it from the URL: an empty path is the default ``/``."""
        return _login(self.rmq_urls[0])[2]

    @property
    def rmq_url_masked(self) -> str:
        return URL_SEPARATOR.join(mask_password(url) for url in self.rmq_urls)


def mask_password(url: str) -> str:
    """The URL with its password replaced by ``***``, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # Rebuilt from the raw netloc, so that "[::1]:5672" and the like stay as they were.
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{address(url)}"))


def address(url: str) -> str:
    """The URL's ``host:port`` as written, without the credentials: which node it names."""
    return urlsplit(url).netloc.rpartition("@")[2]


def split_urls(urls: str) -> tuple[str, ...]:
    """A ";"-separated list of URLs; spaces around them and empty items are ignored."""
    return tuple(url.strip() for url in urls.split(URL_SEPARATOR) if url.strip())


def _login(url: str) -> tuple[str, str, str]:
    """(user, password, vhost) as AMQP clients read them from ``url``; RabbitMQ's guest if none."""
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return unquote(parts.username or "guest"), unquote(parts.password or "guest"), vhost


# A DNS name or IPv4 address; with an IPv6 address in brackets, what a URL has between // and :port.
_DNS_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_HOST_NAME = re.compile(rf"{_DNS_NAME.pattern}|\[[0-9A-Fa-f:.]+\]")
RATE_PERIODS = ("second", "minute", "hour", "day")
# The in-memory limiter keeps one timestamp per request in the window for each client: a bound
# on that memory. A limit near it is no limit for a demo anyway.
MAX_RATE = 100_000
_RATE = re.compile(rf"(?P<requests>[0-9]+)\s*/\s*(?P<period>{'|'.join(RATE_PERIODS)})")
_HTTP_URLS = (
    "callback_url", "rmq_management_url", "rmq_management_public_url", "flower_public_url"
)
_URL_LISTS = ("rmq_management_url",)
# SECURE=1 refuses the course's login and short secrets (python -m secure makes 32 bytes).
COURSE_LOGIN = _login(DEFAULT_RMQ_URL)[:2]
MIN_SECRET_LENGTH = 16
_INT_RANGES = {
    "api_port": (1, 65535),
    "task_store_limit": (10, 10**7),
    "beat_interval": (1, 86400),
    "live_stream_limit": (1, 10_000),
}


def _text(field: dataclasses.Field[Any], raw: str) -> str:
    return raw


def _bool(field: dataclasses.Field[Any], raw: str) -> bool:
    value = raw.strip().lower()
    if value not in _TRUE + _FALSE:
        raise SettingsError(f"{field.metadata['env']} must be 1 or 0, got {raw!r}")
    return value in _TRUE


def _int(field: dataclasses.Field[Any], raw: str) -> int:
    name = field.metadata["env"]
    minimum, maximum = _INT_RANGES[field.name]
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# How a variable's text becomes a field's value, by the field's annotation.
_PARSERS = {"int": _int, "bool": _bool}
