"""Several API processes on one task store in Redis (TASK_STORE=redis://...): a stateless API.

Every test runs real processes against the real broker, each in a vhost of its own, with a Redis
of its own that the test may kill and start again (tests/conftest.py: own_redis).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from chaos.load import Load
from common import routes
from common.settings import Settings
from common.statuses import TaskStatus
from common.tasks import Method
from runner.client import ApiClient
from runner.polling import wait_for
from runner.procfile import ROOT
from runner.redis_server import RedisServer
from runner.services import Services, free_port, service_env
from runner.supervisor import Supervised


@pytest.fixture
def shared(fresh_settings: Settings, own_redis: RedisServer) -> Settings:
    """A demo whose API keeps its tasks in the test's own Redis."""
    return dataclasses.replace(fresh_settings, task_store=own_redis.url)


def on_port(settings: Settings, port: int) -> Settings:
    return dataclasses.replace(settings, api_port=port)


def reporting_to(settings: Settings, api: ApiClient) -> Settings:
    """Workers that send their status reports to this API process."""
    return dataclasses.replace(settings, callback_url=api.url(routes.CALLBACK))


def test_several_api_processes_with_the_memory_store_are_refused(
    fresh_settings: Settings, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runner.supervisor", "--scale", "api=2", "--write-only",
         "--state-dir", str(tmp_path)],
        cwd=ROOT, env=service_env(fresh_settings.to_env()), capture_output=True, text=True,
        timeout=30, check=False,
    )

    assert result.returncode == 2
    assert "TASK_STORE=redis://" in result.stderr and "shared task store" in result.stderr
    assert not (tmp_path / "supervisord.conf").exists()


async def test_healthz_names_the_task_store(client) -> None:
    response = await client.get(routes.HEALTHZ)
    assert (await response.json())["store"] == "memory"


def test_a_task_made_through_one_process_is_reported_to_another_and_read_from_a_third(
    shared: Settings, own_services: Services
) -> None:
    made, reported, read = (own_services.start_api(on_port(shared, port))
                            for port in (shared.api_port, free_port(), free_port()))
    own_services.start_workers("consumer", reporting_to(shared, reported))

    [task] = made.send("rmq", timeout=0.2)

    [done] = read.wait_final([task["task_num"]])
    assert done["status"] == "DONE" and done["worker_id"].startswith("consumer@")
    # Numbers come from the one store: the next task from another process follows.
    assert reported.send("rmq", timeout=0)[0]["task_num"] == task["task_num"] + 1


def test_an_api_restart_keeps_every_status(shared: Settings, own_services: Services) -> None:
    api = own_services.start_api(shared)
    own_services.start_workers("consumer", shared)
    tasks = api.send("rmq", timeout=0, count=5) + api.send("rmq", timeout=0, fail=True)
    before = api.wait_final([task["task_num"] for task in tasks])

    api.service.stop()
    again = own_services.start_api(shared)

    after = [again.task(task["task_num"]) for task in tasks]
    assert [(t["task_num"], t["status"]) for t in after] == \
        [(t["task_num"], t["status"]) for t in before]
    assert [t["status"] for t in after] == ["DONE"] * 5 + ["ERROR"]


def health(api: ApiClient) -> dict:
    return api.session.get(api.url(routes.HEALTHZ), timeout=5).json()


@pytest.fixture
def two_apis_on_one_port(shared: Settings, tmp_path: Path) -> Iterator[Supervised]:
    """`make dev APIS=2` with one consumer, as supervisor runs them."""
    demo = Supervised(shared, tmp_path, {"api": 2, "consumer": 1})
    api = ApiClient(f"http://127.0.0.1:{shared.api_port}")
    try:
        for name in ("api:api-0", "api:api-1"):
            wait_for(lambda name=name: demo.pid(name), 30, what=f"{name} to run")
        wait_for(lambda: api.session.get(api.url(routes.HEALTHZ), timeout=2).json()["broker"]
                 == "connected", 30, what="the apis under supervisor")
        yield demo
    finally:
        demo.stop()


def test_a_killed_api_process_loses_no_accepted_task(
    two_apis_on_one_port: Supervised, shared: Settings
) -> None:
    demo = two_apis_on_one_port
    api = ApiClient(f"http://127.0.0.1:{shared.api_port}")
    # chaos's load: each request on a new connection, so the kernel spreads them over both.
    load = Load(api.base_url, rate=20, seed=0, methods=(Method.RMQ,), fail_share=0)
    load.start()
    try:
        wait_for(lambda: len(load.accepted()) >= 30, 30, what="tasks accepted under load")
        killed = demo.pid("api:api-0")
        os.kill(killed, signal.SIGKILL)
        # The other process serves the port alone until supervisor brings the first back.
        mark = len(load.accepted())
        wait_for(lambda: demo.pid("api:api-0") not in (0, killed), 15,
                 what="supervisor to restart the killed api")
        wait_for(lambda: len(load.accepted()) >= mark + 30, 30, what="tasks accepted afterwards")
    finally:
        load.stop()

    finished = api.wait_final(sorted(load.accepted()), timeout=90)
    assert {task["status"] for task in finished} == {TaskStatus.DONE.value}


class Stream:
    """A live page's event stream, read in a thread: its lines, and whether the server ended it."""

    def __init__(self, api: ApiClient) -> None:
        self.lines: list[bytes] = []
        self.ended = threading.Event()
        self._response = requests.get(api.url(routes.EVENTS), stream=True, timeout=30)
        assert self._response.status_code == 200, self._response.text
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                self.lines.append(line)
        except requests.RequestException:
            pass
        self.ended.set()

    def close(self) -> None:
        self._response.close()


def test_a_redis_restart_restarts_the_pages_and_leaves_no_task_unfinished(
    shared: Settings, own_services: Services, own_redis: RedisServer
) -> None:
    api = own_services.start_api(shared)
    [consumer] = own_services.start_workers("consumer", shared)
    page = Stream(api)
    try:
        wait_for(lambda: b"event: snapshot" in page.lines, 10, what="the page's snapshot")
        tasks = api.send("rmq", timeout=1, count=3)
        wait_for(lambda: all(api.task(t["task_num"])["status"] == "IN_PROGRESS" for t in tasks),
                 10, what="the tasks to start")

        own_redis.stop()
        # Away past the reports' retries: the results cannot be recorded, the tasks go back to
        # their queue instead of being settled as done.
        wait_for(lambda: "did not record" in consumer.log(), 30,
                 what="a result the API could not record")
        assert health(api)["store"] == "disconnected"
        own_redis.start()

        # Whatever was published meanwhile is lost to the page: it is told to start over (the
        # server ends its stream; a browser reconnects and gets a fresh snapshot).
        wait_for(page.ended.is_set, 30, what="the page's stream to be restarted")
        assert health(api)["store"] == "connected"
    finally:
        page.close()
    finished = api.wait_final([t["task_num"] for t in tasks], timeout=60)
    assert [t["status"] for t in finished] == ["DONE"] * 3
