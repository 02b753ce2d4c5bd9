"""Fixtures: a vhost of its own on the real broker, the demo's real processes, an API client.

Everything runs against the RabbitMQ that `make test` starts. The suite works in a fresh vhost, so a
demo running on the same broker (`make dev`) is neither disturbed nor disturbing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from api.app import create_app
from common.settings import Settings
from runner import cluster as rmq_cluster
from runner.broker import management_session, scratch_vhost, sweep_stale_vhosts
from runner.client import ApiClient
from runner.polling import wait_for
from runner.redis_server import RedisServer
from runner.services import QUICK_START, Service, Services, demo_settings, free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``cluster`` run last, one after another: the three nodes start once, and the
    tests before them do not share the two cores with three more brokers."""
    items.sort(key=lambda item: item.get_closest_marker("cluster") is not None)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """The broker and credentials of the machine (RMQ_URL etc. are honoured)."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def management(base_settings: Settings) -> Iterator[requests.Session]:
    with management_session(base_settings) as session:
        yield session


@pytest.fixture(scope="session")
def vhost(base_settings: Settings, management: requests.Session) -> Iterator[str]:
    sweep_stale_vhosts(base_settings, management)
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


@pytest.fixture(scope="session")
def cluster(base_settings: Settings) -> Iterator[tuple[rmq_cluster.Node, ...]]:
    """The three-node cluster of `rmq/cluster.sh`, started once for every test marked ``cluster``
    with the credentials of the session. Stopped, its data removed, when the session ends, unless
    it already ran before (`make cluster`): then it is left running."""
    started_here = not rmq_cluster.any_node_listening()
    rmq_cluster.script("start", env={
        "RMQ_USER": base_settings.rmq_user, "RMQ_PASSWORD": base_settings.rmq_password,
    })
    yield rmq_cluster.NODES
    if started_here:
        rmq_cluster.script("stop")


@pytest.fixture(scope="session")
def services(tmp_path_factory) -> Iterator[Services]:
    started = Services(tmp_path_factory.mktemp("logs"), extra_args=QUICK_START)
    yield started
    started.stop_all()


@pytest.fixture
def own_services(tmp_path) -> Iterator[Services]:
    """Processes that one test starts (and may kill); stopped when that test ends."""
    started = Services(tmp_path, extra_args=QUICK_START)
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


@pytest.fixture(scope="session")
def celery_beat(settings: Settings, services: Services, celery_worker: Service) -> Service:
    """Beat as the Procfile runs it, with an interval no test waits for: the session's tasks stay
    the tests' own. A test of the ticks runs a Beat of its own."""
    quiet = dataclasses.replace(settings, beat_interval=86400)
    beat = services.start("celery_beat", quiet)
    wait_for(lambda: "beat: Starting" in beat.log() or not beat.alive(), 30,
             what="Celery Beat to start")
    assert beat.alive(), beat.log()
    return beat


@pytest.fixture(scope="session")
def flower(settings: Settings, services: Services, celery_worker: Service) -> tuple[Service, str]:
    """Flower as the Procfile runs it, on a free port; its HTTP API open, as tests need it."""
    port = free_port()
    service = services.start("flower", settings, env={
        "FLOWER_PORT": str(port), "FLOWER_ADDRESS": "127.0.0.1", "FLOWER_UNAUTHENTICATED_API": "true",
    })
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert service.alive(), service.log()
        return requests.get(f"{url}/healthcheck", timeout=2).ok

    wait_for(answering, 40, what="Flower to answer")
    return service, url


@pytest.fixture
async def client(aiohttp_client, settings: Settings, tmp_path):
    """The application in this process, for tests of its HTTP behaviour (on the test vhost)."""
    own = dataclasses.replace(settings, task_counter_path=str(tmp_path / "task_counter"))
    return await aiohttp_client(create_app(own))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()
