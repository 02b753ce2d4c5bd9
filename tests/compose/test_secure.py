"""The compose secure override (docker-compose.secure.yml) booted as a user runs it, in a
project of its own beside the plain one: every service over TLS with generated credentials, the
broker's plain ports closed, the course's login and a request without a token refused, and no
secret in any container's log."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
import requests

import secure
from common import routes, topology
from common.settings import Settings
from common.tls import pika_parameters
from containers import engine
from runner.broker import management_session, management_url
from runner.client import ApiClient
from runner.polling import wait_for
from tests.compose.conftest import PROJECT, boot
from tests.compose.stack import Stack

pytestmark = pytest.mark.compose

HEALTHY = ("rmq", "redis", "api", "proxy")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The secure mode's files, made for this test: never the user's own .secure/."""
    directory = tmp_path_factory.mktemp("secure")
    secure.ensure(directory)
    return directory


@pytest.fixture(scope="module")
def demo(podman_api: engine.ApiService, stack: Stack, files: Path, figures: dict,
         tmp_path_factory) -> Iterator[Stack]:
    """The override over the same images as the plain project (``stack`` built them)."""
    options = ("--env-file", str(files / "compose.env"),
               "-f", "docker-compose.yml", "-f", "docker-compose.secure.yml")
    project = Stack(podman_api, f"{PROJECT}-secure", tmp_path_factory.mktemp("secure-logs"),
                    options)
    # Beat's orders come soon enough to be seen.
    project.env["BEAT_INTERVAL"] = "3"
    project.compose("down", "--volumes", "--remove-orphans")
    figures["secure_boot_seconds"] = boot(project, healthy=HEALTHY)
    yield project
    project.save_logs()
    project.compose("down", "--volumes", "--timeout", "5")


@pytest.fixture(scope="module")
def settings(demo: Stack, files: Path) -> Settings:
    """What a client on this machine uses: the generated login, the published TLS ports."""
    found = secure.Secrets(**json.loads((files / "secrets.json").read_text()))
    return Settings(
        rmq_url=f"amqps://{secure.RMQ_USER}:{found.rmq_password}@127.0.0.1:"
                f"{demo.ports['RMQ_TLS_HOST_PORT']}/",
        rmq_management_url=f"https://127.0.0.1:{demo.ports['RMQ_MANAGEMENT_TLS_HOST_PORT']}/",
        rmq_ca_file=str(files / "ca.pem"), api_token=found.api_token,
        callback_token=found.callback_token,
    )


@pytest.fixture(scope="module")
def api(demo: Stack, settings: Settings) -> ApiClient:
    return ApiClient(demo.url("API_HOST_PORT"), token=settings.api_token)


def management(settings: Settings, path: str) -> requests.Response:
    """``GET /api/<path>`` of the broker's management API, as ``settings`` log in."""
    with management_session(settings) as session:
        return session.get(management_url(settings, path), timeout=10)


def test_every_service_works_over_tls(demo: Stack, api: ApiClient, settings: Settings) -> None:
    # Healthy means the api and the broker answer; the five Python services still boot for some
    # seconds, and on two cores the API's first Celery sends then miss its deadline (503, "try
    # again"). Wait until both kinds of worker consume and a send goes through.
    wait_for(lambda: all(queue["consumers"] for queue in
                         api.session.get(api.url(routes.QUEUES), timeout=10).json()["queues"]
                         if queue["name"] in (topology.QUEUE, topology.CELERY_QUEUE)),
             120, interval=1.0, what="the consumer and the Celery worker to consume over TLS")
    wait_for(lambda: api.session.post(api.url(routes.TASKS), json={"method": "celery",
                                                                   "timeout": 0},
                                      timeout=30).status_code == 202,
             60, interval=1.0, what="the API's first Celery send over TLS")
    tasks = api.send("rmq", 0.2) + api.send("celery", 0.2)

    assert [task["status"] for task in api.wait_final([t["task_num"] for t in tasks], 60)] \
        == ["DONE", "DONE"]
    wait_for(lambda: any(task["source"] == "beat" and task["status"] == "DONE"
                         for task in api.session.get(api.url(routes.TASKS)).json()["tasks"]),
             60, interval=1.0, what="a task of Celery Beat to finish")
    queues = api.session.get(api.url(routes.QUEUES), timeout=10).json()
    assert queues["available"] and queues["statistics_error"] is None
    # The API, the consumer, the Celery worker, Beat and Flower: every connection is TLS.
    connections = wait_for(lambda: [c for c in management(settings, "connections").json()
                                    if c.get("client_properties")] or None,
                           30, interval=1.0, what="the broker to list the connections")
    assert all(connection["ssl"] for connection in connections)


def test_the_broker_speaks_tls_only_and_refuses_the_course_login(settings: Settings) -> None:
    overview = management(settings, "overview").json()

    assert {listener["protocol"] for listener in overview["listeners"]} == {
        "amqp/ssl", "https", "clustering"}
    course = dataclasses.replace(settings, rmq_url=settings.rmq_url.replace(
        f"{settings.rmq_user}:{settings.rmq_password}@", "student:qwerty@", 1))
    assert management(course, "whoami").status_code == 401
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika_parameters(course.rmq_url, course.rmq_ca_file))


def test_without_the_token_the_api_answers_401(demo: Stack) -> None:
    anonymous = ApiClient(demo.url("API_HOST_PORT"))
    report = {"task_num": 1, "task_status": "DONE", "worker_id": "someone"}

    for path, body in [(routes.TASKS, {"method": "rmq", "timeout": 0}), (routes.CALLBACK, report)]:
        answer = anonymous.session.post(anonymous.url(path), json=body, timeout=10)
        assert answer.status_code == 401, (path, answer.text)


def test_no_container_writes_a_secret_to_its_log(demo: Stack, api: ApiClient,
                                                 settings: Settings) -> None:
    api.wait_final([task["task_num"] for task in api.send("celery", 0)], 60)
    logs = demo.compose("logs", "--no-color", timeout=120)

    assert logs
    for secret in (settings.rmq_password, settings.api_token, settings.callback_token):
        assert secret not in logs
