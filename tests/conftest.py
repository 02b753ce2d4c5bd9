"""Fixtures: a vhost of its own on the real broker, the demo's real processes, an API client.

Everything runs against the RabbitMQ that `make test` starts. The suite works in a fresh vhost, so a
demo running on the same broker (`make dev`) is neither disturbed nor disturbing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import requests

from api.app import create_app
from common import topology
from common.settings import Settings
from tests.support import (
    ApiClient,
    Service,
    free_port,
    queue_state,
    service_env,
    wait_for,
)


def with_vhost(rmq_url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(rmq_url)._replace(path="/" + quote(vhost, safe="")))


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """The broker and credentials of the machine (RMQ_URL etc. are honoured)."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def management(base_settings: Settings) -> Iterator[requests.Session]:
    session = requests.Session()
    session.auth = (base_settings.rmq_user, base_settings.rmq_password)
    yield session
    session.close()


def management_url(settings: Settings, path: str) -> str:
    return settings.rmq_management_url.rstrip("/") + "/api/" + path


@contextlib.contextmanager
def scratch_vhost(base_settings: Settings, management: requests.Session) -> Iterator[str]:
    """A new, empty vhost on the real broker, deleted afterwards with everything in it."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    quoted = quote(name, safe="")
    management.put(management_url(base_settings, f"vhosts/{quoted}"), timeout=10).raise_for_status()
    management.put(
        management_url(base_settings, f"permissions/{quoted}/{quote(base_settings.rmq_user)}"),
        json={"configure": ".*", "write": ".*", "read": ".*"},
        timeout=10,
    ).raise_for_status()
    try:
        yield name
    finally:
        management.delete(management_url(base_settings, f"vhosts/{quoted}"), timeout=30)


def demo_settings(base_settings: Settings, vhost: str, state_dir: Path) -> Settings:
    """Settings of one demo under test: its own vhost, its own port, its own task counter."""
    port = free_port()
    return dataclasses.replace(
        base_settings,
        rmq_url=with_vhost(base_settings.rmq_url, vhost),
        api_host="127.0.0.1",
        api_port=port,
        api_url=f"http://127.0.0.1:{port}/update_task_status_api/",
        task_counter_path=str(state_dir / "task_counter"),
        log_level="INFO",
    )


@pytest.fixture(scope="session")
def vhost(base_settings: Settings, management: requests.Session) -> Iterator[str]:
    with scratch_vhost(base_settings, management) as name:
        yield name


@pytest.fixture(scope="session")
def settings(base_settings: Settings, vhost: str, tmp_path_factory) -> Settings:
    """The settings of the session's shared demo (the ``api``, ``consumer``, ``celery_worker``)."""
    return demo_settings(base_settings, vhost, tmp_path_factory.mktemp("state"))


@pytest.fixture
def fresh_settings(base_settings: Settings, management: requests.Session, tmp_path) -> Iterator[Settings]:
    """Settings for a demo of one test's own, in a vhost of its own: for fault tests that start,
    kill and count everything themselves without the shared processes taking their messages."""
    with scratch_vhost(base_settings, management) as name:
        yield demo_settings(base_settings, name, tmp_path)


class Services:
    """Starts the demo's processes the way the Procfile does and stops them all at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Service] = []

    def start(self, kind: str, settings: Settings) -> Service:
        commands = {
            "api": [sys.executable, "-m", "api"],
            "consumer": [sys.executable, "-m", "consumer"],
            "celery_worker": [
                str(Path(sys.executable).parent / "celery"), "-A", "celery_app", "worker",
                "--concurrency=3", "--loglevel=INFO", f"--hostname={kind}-{uuid.uuid4().hex[:6]}@%h",
                # Mingle and gossip add seconds of start-up and nothing these tests look at.
                "--without-mingle", "--without-gossip",
            ],
        }
        name = f"{kind}-{len(self.started)}"
        service = Service(name, commands[kind], service_env(settings.to_env()), self.log_dir)
        self.started.append(service)
        return service

    def start_api(self, settings: Settings) -> ApiClient:
        service = self.start("api", settings)
        client = ApiClient(f"http://127.0.0.1:{settings.api_port}", service)

        def ready() -> bool:
            assert service.alive(), service.log()
            health = client.session.get(client.url("/healthz"), timeout=2).json()
            return health["broker"] == "connected"

        wait_for(ready, 30, what="the api to connect to the broker")
        return client

    def start_workers(self, kind: str, settings: Settings, count: int = 1) -> list[Service]:
        """Start ``count`` consumers or Celery workers and wait until the broker sees them."""
        queue = topology.QUEUE if kind == "consumer" else topology.CELERY_QUEUE
        try:
            before = queue_state(settings.rmq_url, queue)[1]
        except Exception:  # the queue does not exist until the first worker declares it
            before = 0
        services = [self.start(kind, settings) for _ in range(count)]

        def ready() -> bool:
            for service in services:
                assert service.alive(), service.log()
            return queue_state(settings.rmq_url, queue)[1] >= before + count

        wait_for(ready, 40, interval=0.3, what=f"{count} {kind} to consume {queue}")
        return services

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()
        self.started.clear()


@pytest.fixture(scope="session")
def services(tmp_path_factory) -> Iterator[Services]:
    started = Services(tmp_path_factory.mktemp("logs"))
    yield started
    started.stop_all()


@pytest.fixture
def own_services(tmp_path) -> Iterator[Services]:
    """Processes that one test starts (and may kill); stopped when that test ends."""
    started = Services(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture(scope="session")
def api(settings: Settings, services: Services) -> ApiClient:
    return services.start_api(settings)


@pytest.fixture(scope="session")
def consumer(settings: Settings, services: Services, api: ApiClient) -> Service:
    return services.start_workers("consumer", settings)[0]


@pytest.fixture(scope="session")
def celery_worker(settings: Settings, services: Services, api: ApiClient) -> Service:
    return services.start_workers("celery_worker", settings)[0]


@pytest.fixture
async def client(aiohttp_client, settings: Settings, tmp_path):
    """The application in this process, for tests of its HTTP behaviour (on the test vhost)."""
    own = dataclasses.replace(settings, task_counter_path=str(tmp_path / "task_counter"))
    return await aiohttp_client(create_app(own))
