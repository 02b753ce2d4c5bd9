"""SECURE=1 end to end: the TLS-only broker node, the generated credentials, every service over
TLS, and what is refused (plain AMQP, a wrong certificate authority, the course's login, a
request without a token, one past the rate limit).

The node is rmq/secure-node.sh's, with the files `python -m secure` keeps in .secure/ (made here
when missing, never rotated): a `SECURE=1 make dev` running on this machine keeps working. A node
this module started is stopped at its end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import kombu.exceptions
import pika
import pika.exceptions
import pytest
import requests

import secure
from api.management import ManagementClient, ManagementUnavailable
from celery_config import create_celery_app
from common import routes, topology
from common.settings import Settings
from common.tls import client_context, pika_parameters
from runner.broker import management_session, management_url
from runner.client import ApiClient
from runner.polling import wait_for
from runner.procfile import ROOT
from runner.services import QUICK_START, Services, free_port
from tests.test_token_rate_metrics import samples


@pytest.fixture(scope="module")
def secure_node() -> Iterator[Path]:
    """The node running with .secure/'s files; the directory."""
    was_running = secure.node_running()
    secure.ensure(secure.SECURE_DIR)
    secure.start_node(secure.SECURE_DIR)
    yield secure.SECURE_DIR
    if not was_running:
        secure.stop_node()


@pytest.fixture(scope="module")
def secure_settings(secure_node: Path, tmp_path_factory) -> Settings:
    """`make dev`'s secure settings, on a free port with a counter of their own."""
    port = free_port()
    settings = Settings.from_env(secure.read_env(secure_node / "secure.env"))
    return dataclasses.replace(
        settings, api_host="127.0.0.1", api_port=port,
        callback_url=f"http://127.0.0.1:{port}{routes.CALLBACK}",
        task_counter_path=str(tmp_path_factory.mktemp("secure") / "task_counter"),
        # Beat orders often, so that the end-to-end test soon sees one of its tasks.
        beat_interval=3,
    )


@dataclasses.dataclass(frozen=True)
class SecureDemo:
    api: ApiClient
    services: Services
    flower_url: str


@pytest.fixture(scope="module")
def demo(secure_settings: Settings, tmp_path_factory) -> Iterator[SecureDemo]:
    """Every service of the Procfile over TLS: api, consumer, Celery worker, Beat, Flower."""
    started = Services(tmp_path_factory.mktemp("secure-logs"), extra_args=QUICK_START)
    try:
        api = started.start_api(secure_settings)
        started.start_workers("consumer", secure_settings)
        started.start_workers("celery_worker", secure_settings)
        started.start("celery_beat", secure_settings)
        flower_port = free_port()
        started.start("flower", secure_settings, env={
            "FLOWER_PORT": str(flower_port), "FLOWER_ADDRESS": "127.0.0.1",
            "FLOWER_BASIC_AUTH": secure.read_env(secure.SECURE_DIR / "secure.env")["FLOWER_BASIC_AUTH"],
        })
        yield SecureDemo(api, started, f"http://127.0.0.1:{flower_port}")
    finally:
        started.stop_all()


def test_every_service_works_over_tls_end_to_end(
    demo: SecureDemo, secure_settings: Settings
) -> None:
    api, started = demo.api, demo.services
    tasks = api.send("rmq", 0.2) + api.send("celery", 0.2)

    finished = api.wait_final([task["task_num"] for task in tasks])

    assert [task["status"] for task in finished] == ["DONE", "DONE"]
    # Beat's order reaches the API with API_TOKEN and runs on the worker.
    wait_for(lambda: any(task["source"] == "beat" and task["status"] == "DONE"
                         for task in api.session.get(api.url(routes.TASKS)).json()["tasks"]),
             30, interval=0.5, what="a task of Celery Beat to finish")
    # The queues panel reads the management API over HTTPS.
    queues = api.session.get(api.url(routes.QUEUES), timeout=10).json()
    assert queues["available"] and queues["statistics_error"] is None
    # Every connection the broker holds is TLS: the API's, the consumer's, Celery's, Flower's.
    # The management API lists a new connection a few seconds after it opens.
    connections = wait_for(
        lambda: [c for c in management_get(secure_settings, "connections")
                 if c.get("client_properties")] or None,
        30, interval=0.5, what="the broker to list the services' connections")
    assert all(connection["ssl"] for connection in connections)
    for service in started.started:
        assert service.alive(), service.log()


def test_every_log_line_is_json_and_holds_no_secret(demo: SecureDemo, secure_settings: Settings) -> None:
    api, started = demo.api, demo.services
    api.wait_final([task["task_num"] for task in api.send("celery", 0)])
    secrets = [secure_settings.rmq_password, secure_settings.api_token,
               secure_settings.callback_token, flower_login()[1]]

    for service in started.started:
        log = service.log()
        assert log, service.name
        assert not [secret for secret in secrets if secret in log], service.name
        # LOG_FORMAT=json (secure.env): one JSON object per line, every line.
        for line in log.splitlines():
            assert isinstance(json.loads(line), dict), (service.name, line)


def test_flower_asks_for_its_login(demo: SecureDemo) -> None:
    url = f"{demo.flower_url}/workers"

    wait_for(lambda: requests.get(url, auth=flower_login(), timeout=5).ok, 40,
             what="Flower to answer")
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, auth=(flower_login()[0], "wrong"), timeout=5).status_code == 401


def flower_login() -> tuple[str, str]:
    login = secure.read_env(secure.SECURE_DIR / "secure.env")["FLOWER_BASIC_AUTH"]
    user, _, password = login.partition(":")
    return user, password


def test_the_broker_listens_for_tls_only(secure_node: Path, secure_settings: Settings) -> None:
    overview = management_get(secure_settings, "overview")
    protocols = {listener["protocol"] for listener in overview["listeners"]}

    assert protocols == {"amqp/ssl", "https", "clustering"}
    # The TLS port does not speak plain AMQP: the handshake goes nowhere.
    plain = pika.URLParameters(secure_settings.rmq_url.replace("amqps://", "amqp://", 1))
    plain.socket_timeout = plain.blocked_connection_timeout = 5
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(plain)


def test_a_client_with_the_wrong_certificate_authority_is_refused(
    secure_node: Path, secure_settings: Settings, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca"
    subprocess.run([str(secure.MAKE_CERTS), str(other)], check=True, capture_output=True)
    wrong = dataclasses.replace(secure_settings, rmq_ca_file=str(other / "ca.pem"))

    # pika (the consumer), aio-pika (the API), py-amqp (Celery, Beat, Flower), aiohttp (the
    # queues panel): each refuses the broker's certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        pika.BlockingConnection(pika_parameters(wrong.rmq_url, wrong.rmq_ca_file))
    with pytest.raises(aio_pika.exceptions.AMQPConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(aio_pika_connect(wrong))
    with pytest.raises(kombu.exceptions.OperationalError, match="CERTIFICATE_VERIFY_FAILED"), \
            create_celery_app(wrong).connection_for_write() as connection:
        connection.ensure_connection(max_retries=0)
    with pytest.raises(ManagementUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(management_read(wrong))
    # The right authority, for contrast.
    pika.BlockingConnection(pika_parameters(secure_settings.rmq_url,
                                            secure_settings.rmq_ca_file)).close()


def test_the_course_login_is_refused(secure_node: Path, secure_settings: Settings) -> None:
    course = dataclasses.replace(secure_settings, rmq_url=secure_settings.rmq_url.replace(
        f"{secure.RMQ_USER}:{secure_settings.rmq_password}@", "student:qwerty@", 1))

    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika_parameters(course.rmq_url, course.rmq_ca_file))
    with management_session(course) as session:
        assert session.get(management_url(course, "overview"), timeout=10).status_code == 401


def test_rotated_credentials_replace_the_old_ones(
    secure_node: Path, secure_settings: Settings, tmp_path: Path
) -> None:
    rotated_dir = tmp_path / "rotated"
    shutil.copytree(secure_node, rotated_dir)
    rotated = secure.ensure(rotated_dir, rotate=True)
    try:
        secure.start_node(rotated_dir)

        new = Settings.from_env(secure.read_env(rotated_dir / "secure.env"))
        assert new.rmq_password == rotated.rmq_password != secure_settings.rmq_password
        assert new.api_token != secure_settings.api_token
        pika.BlockingConnection(pika_parameters(new.rmq_url, new.rmq_ca_file)).close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(pika_parameters(secure_settings.rmq_url,
                                                    secure_settings.rmq_ca_file))
    finally:
        secure.start_node(secure_node)
    pika.BlockingConnection(pika_parameters(secure_settings.rmq_url,
                                            secure_settings.rmq_ca_file)).close()


def test_without_credentials_state_changes_and_the_stream_are_401(demo: SecureDemo) -> None:
    api = demo.api
    anonymous = requests.Session()
    task = {"task_num": 1, "task_status": "DONE", "worker_id": "someone"}

    for method, path, body in [
        ("POST", routes.TASKS, {"method": "rmq", "timeout": 0}),
        ("POST", routes.CALLBACK, task),
        ("GET", routes.EVENTS, None),
    ]:
        answer = anonymous.request(method, api.url(path), json=body, timeout=10)
        assert answer.status_code == 401, (path, answer.text)
        assert answer.json()["error"]


def test_the_rate_limit_answers_429_and_the_metrics_count_the_tasks(
    demo, secure_settings: Settings
) -> None:
    api = demo.api
    before = samples(requests.get(api.url(routes.METRICS), timeout=10).text)
    requests_allowed = secure_settings.rate_limit_parts[0]

    answers = [api.session.post(api.url(routes.TASKS), json={"method": "rmq", "timeout": 0},
                                timeout=10) for _ in range(requests_allowed + 1)]

    statuses = [answer.status_code for answer in answers]
    assert statuses[-1] == 429 and int(answers[-1].headers["Retry-After"]) > 0
    accepted = statuses.count(202)
    assert accepted and set(statuses) == {202, 429}
    after = samples(requests.get(api.url(routes.METRICS), timeout=10).text)
    key = ("api_tasks_accepted_total", (("method", "rmq"),))
    assert after[key] - before.get(key, 0) == accepted


def management_get(settings: Settings, path: str) -> list | dict:
    """``GET /api/<path>`` of the secure node's management API, decoded."""
    with management_session(settings) as session:
        answer = session.get(management_url(settings, path), timeout=10)
    answer.raise_for_status()
    return answer.json()


async def aio_pika_connect(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.rmq_url, timeout=10,
                                        ssl_context=client_context(settings.rmq_ca_file))
    await connection.close()


async def management_read(settings: Settings) -> None:
    client = ManagementClient(settings)
    await client.open()
    try:
        await client.unacknowledged([topology.QUEUE])
    finally:
        await client.close()


# ------------------------------------------------------------------- the compose override

COMPOSE_FILES = ("-f", "docker-compose.yml", "-f", "docker-compose.secure.yml")
PYTHON_SERVICES = ("api", "consumer", "celery_worker", "celery_beat", "flower")


def compose_config(*options: str) -> subprocess.CompletedProcess[str]:
    """``docker compose config`` of the override (Compose alone, no engine needed)."""
    compose = Path(sys.executable).with_name("docker-compose")
    env = {name: value for name, value in os.environ.items()
           if name not in Settings.env_names()}
    return subprocess.run([str(compose), *options, *COMPOSE_FILES, "config", "--format", "json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_the_override_without_its_env_file_stops_compose_and_says_what_to_run() -> None:
    result = compose_config()

    assert result.returncode != 0
    assert "run make secure, then docker compose --env-file .secure/compose.env" in result.stderr


def test_the_override_closes_the_plain_ports_and_gives_each_service_the_checklist(
    tmp_path: Path,
) -> None:
    secure.ensure(tmp_path)
    result = compose_config("--env-file", str(tmp_path / "compose.env"))
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]

    assert {port["target"] for port in services["rmq"]["ports"]} == {5671, 15671}
    # A volume of its own: the plain broker's data still knows the course's student.
    assert {volume["source"] for volume in services["rmq"]["volumes"]
            if volume["target"] == "/var/lib/rabbitmq"} == {"rmq_secure_data"}
    for name in PYTHON_SERVICES:
        service = services[name]
        # SECURE=1 refuses to build settings without the whole checklist (the file named by
        # RMQ_CA_FILE exists only in the container).
        settings = Settings.from_env({**service["environment"], "RMQ_CA_FILE": ""})
        assert settings.secure and urlsplit(settings.rmq_url).hostname == "rmq", name
        mounted = {volume["target"]: volume["source"] for volume in service["volumes"]}
        assert mounted[service["environment"]["RMQ_CA_FILE"]] == str(tmp_path / "ca.pem"), name
