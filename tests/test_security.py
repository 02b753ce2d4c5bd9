"""The callback token, and no secret in any log line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from urllib.parse import quote

import pytest

from api.app import create_app
from celery_config import create_celery_app
from common import topology
from runner.polling import wait_for
from task_lifecycle import REFUSED_PAUSE

TOKEN = "s3cret-callback-token"


@pytest.fixture
async def guarded(aiohttp_client, settings, tmp_path):
    own = dataclasses.replace(
        settings, callback_token=TOKEN, task_counter_path=str(tmp_path / "task_counter")
    )
    return await aiohttp_client(create_app(own))


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}],
)
async def test_callback_without_the_right_token_is_401(guarded, headers) -> None:
    body = {"task_num": 1, "task_status": "DONE", "worker_id": "w"}
    response = await guarded.post("/update_task_status_api/", json=body, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization" in (await response.json())["error"]


async def test_callback_with_the_token_is_accepted(guarded) -> None:
    created = await guarded.post("/api/tasks", json={"method": "rmq", "timeout": 0})
    [task] = (await created.json())["tasks"]
    body = {"task_num": task["task_num"], "task_status": "IN_PROGRESS", "worker_id": "w"}
    response = await guarded.post(
        "/update_task_status_api/", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status == 200


def test_workers_send_the_token_and_no_log_shows_a_secret(fresh_settings, own_services) -> None:
    settings = dataclasses.replace(fresh_settings, callback_token=TOKEN)
    api = own_services.start_api(settings)
    [consumer] = own_services.start_workers("consumer", settings)
    [worker] = own_services.start_workers("celery_worker", settings)
    tasks = api.send("rmq", timeout=0, count=2) + api.send("celery", timeout=0, count=2)
    finished = api.wait_final([t["task_num"] for t in tasks])
    assert {t["status"] for t in finished} == {"DONE"}
    for service in (api.service, consumer, worker):
        log = service.log()
        assert TOKEN not in log
        assert f":{settings.rmq_password}@" not in log
        assert settings.rmq_url not in log


def test_a_worker_whose_token_is_refused_says_so_and_loses_nothing(
    fresh_settings, own_services
) -> None:
    # The probe: CALLBACK_TOKEN set on the API only. The workers' reports all get 401.
    api = own_services.start_api(dataclasses.replace(fresh_settings, callback_token=TOKEN))
    [consumer] = own_services.start_workers("consumer", fresh_settings)
    [worker] = own_services.start_workers("celery_worker", fresh_settings)
    tasks = api.send("rmq", timeout=0, count=2) + api.send("celery", timeout=0, count=2)
    numbers = [task["task_num"] for task in tasks]

    def told(service) -> list[str]:
        """The worker ids (processes) that logged the ERROR naming the token, once each."""
        return [line.rpartition("worker=")[2] for line in service.log().splitlines()
                if "ERROR" in line and "CALLBACK_TOKEN" in line]

    wait_for(lambda: told(consumer) and told(worker), 20, what="both workers to name the token")
    # Refused and retried for a while: said once (a minute has not passed), nothing done.
    wait_for(lambda: f"task {numbers[0]}: redelivered" in consumer.log(), 20,
             what="the consumer to get its task back from the queue")
    # Said once per process (Celery's pool has three), not once per task or attempt.
    assert len(told(consumer)) == 1
    assert len(told(worker)) == len(set(told(worker))) <= 3
    assert {api.task(number)["status"] for number in numbers} == {"PENDING"}
    assert f"task {numbers[0]}: done" not in consumer.log()

    # The token is fixed: workers with it take over, and every task is done.
    consumer.stop()
    worker.stop()
    fixed = dataclasses.replace(fresh_settings, callback_token=TOKEN)
    own_services.start_workers("consumer", fixed)
    own_services.start_workers("celery_worker", fixed)
    assert {task["status"] for task in api.wait_final(numbers, timeout=60)} == {"DONE"}


def test_a_refused_celery_task_is_held_no_longer_than_the_consumers_pause(
    fresh_settings, own_services
) -> None:
    # Until its countdown ends, a retried task waits unacked in the worker that retried it: the
    # countdown is all the time the task is out of every other worker's reach.
    api = own_services.start_api(dataclasses.replace(fresh_settings, callback_token=TOKEN))
    [worker] = own_services.start_workers("celery_worker", fresh_settings)
    [task] = api.send("celery", timeout=0)
    # Celery's own line for each retry: "Task ...[id] retry: Retry in 5s: ReportNotRecorded(...)".
    retry = re.compile(r"retry: Retry in (\d+(?:\.\d+)?)s: ReportNotRecorded")

    def countdowns() -> list[float]:
        return [float(seconds) for seconds in retry.findall(worker.log())]

    # A growing backoff would pass REFUSED_PAUSE by the third retry.
    wait_for(lambda: len(countdowns()) >= 3, 60, interval=0.5, what="three refused retries")
    assert max(countdowns()) <= REFUSED_PAUSE, countdowns()
    assert api.task(task["task_num"])["status"] == "PENDING"


@pytest.mark.parametrize("path", ["/api/tasks", "/send_rmq_direct/", "/update_task_status_api/"])
async def test_a_post_from_another_site_is_refused(client, path: str) -> None:
    response = await client.post(
        path, data=b'{"method": "rmq", "timeout": 0}', headers={"Origin": "http://evil.example"}
    )
    assert response.status == 403
    assert "Origin" in (await response.json())["error"]


async def test_a_post_from_the_page_itself_is_accepted(client) -> None:
    origin = f"http://{client.server.host}:{client.server.port}"
    response = await client.post(
        "/api/tasks", json={"method": "rmq", "timeout": 0}, headers={"Origin": origin}
    )
    assert response.status == 202


async def test_a_dns_rebinding_page_is_refused_and_told_which_setting_to_change(client) -> None:
    # evil.example resolves to the API's address: the browser sends that name as Host too.
    site = f"evil.example:{client.server.port}"
    response = await client.post("/api/tasks", json={"method": "rmq", "timeout": 0},
                                 headers={"Host": site, "Origin": f"http://{site}"})
    assert response.status == 403
    error = await response.json()
    assert "ALLOWED_HOSTS" in error["error"] and "ALLOWED_HOSTS" in error["message_ru"]
    assert "evil.example" in error["error"]


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:8080", "http://LOCALHOST:1", "https://127.0.0.1", "http://[::1]:8081",
     "http://api:8080"],
)
async def test_the_local_names_are_allowed_on_any_port(client, origin: str) -> None:
    response = await client.post(
        "/api/tasks", json={"method": "rmq", "timeout": 0}, headers={"Origin": origin}
    )
    assert response.status == 202, await response.text()


@pytest.mark.parametrize(
    "origin", ["null", "http://[::1", "http://localhost.evil.example", "http://127.0.0.2:8080", ""]
)
async def test_an_origin_that_names_no_allowed_host_is_refused(client, origin: str) -> None:
    response = await client.post(
        "/api/tasks", json={"method": "rmq", "timeout": 0}, headers={"Origin": origin}
    )
    assert response.status == 403


async def test_a_teacher_on_a_lan_allows_the_machines_address(
    aiohttp_client, settings, tmp_path
) -> None:
    lan = dataclasses.replace(settings, allowed_hosts="localhost,192.168.1.10,teacher.local",
                              task_counter_path=str(tmp_path / "counter"))
    client = await aiohttp_client(create_app(lan))
    for origin, status in [("http://192.168.1.10:8080", 202), ("http://teacher.local:8080", 202),
                           ("http://127.0.0.1:8080", 403)]:
        response = await client.post(
            "/api/tasks", json={"method": "rmq", "timeout": 0}, headers={"Origin": origin}
        )
        assert response.status == status, origin


async def raw_post(guarded, path: str, headers: bytes, body: bytes) -> tuple[int, bytes]:
    """A request written byte by byte: headers no HTTP client library would send."""
    reader, writer = await asyncio.open_connection(guarded.server.host, guarded.server.port)
    writer.write(
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n" + headers
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    answer = await reader.read()
    writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xff\xfe", b"Bearer " + TOKEN.encode() + b"\xe9", b"\xc3\x28", b"Bearer",
     b"Bearer  " + TOKEN.encode(), b"bearer " + TOKEN.encode(), b"Bearer " + b"x" * 4000],
)
async def test_a_malformed_authorization_header_is_401_not_500(guarded, authorization) -> None:
    body = json.dumps({"task_num": 1, "task_status": "DONE", "worker_id": "w"}).encode()
    status, answer = await raw_post(
        guarded, "/update_task_status_api/", b"Authorization: " + authorization + b"\r\n", body
    )
    assert status == 401, answer
    assert "Authorization" in json.loads(answer)["error"]


# What a client tries to slip into a log: a line of its own, dated and leveled like ours.
FORGED = "2099-01-01 00:00:00,000 ERROR forged: the admin password is hunter2"


def test_no_client_can_write_a_line_of_its_own_into_the_logs(fresh_settings, own_services) -> None:
    api = own_services.start_api(fresh_settings)
    [worker] = own_services.start_workers("celery_worker", fresh_settings)
    newline = quote("\n" + FORGED, safe="")
    escape = quote("\x1b[2J", safe="")  # "clear the screen", for whoever tails the log
    session = api.session
    session.post(api.url(f"/api/tasks{newline}{escape}"), headers={"Origin": "http://evil.example"},
                 json={"method": "rmq", "timeout": 0}, timeout=10)
    session.get(api.url(f"/nothing{newline}{escape}"), timeout=10)
    session.post(api.url("/update_task_status_api/"), timeout=10,
                 json={"task_num": 1, "task_status": "DONE", "worker_id": f"w\n{FORGED}"})
    # A Celery task sent around the API, as a shell could, with a task number that is text.
    celery = create_celery_app(fresh_settings)
    try:
        celery.send_task(topology.PROCESS_TASK, kwargs={"task_num": f"1\n{FORGED}", "timeout": 0})
    finally:
        celery.close()
    wait_for(lambda: "failed for good" in worker.log(), 20, what="the worker to refuse the task")
    for service in (api.service, worker):
        log = service.log()
        forged = [line for line in log.splitlines() if line.startswith(FORGED)]
        assert forged == [], f"{service.name} wrote a client's line: {forged}"
        assert "\x1b" not in log


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 200), ("GET", "/api/tasks", 200), ("GET", "/nothing", 404),
     ("GET", "/api/nothing", 404), ("GET", "/get_sync_data/?data_id=x", 400),
     ("POST", "/api/tasks", 400), ("GET", "/healthz", 200)],
)
async def test_every_answer_carries_the_security_headers(client, method, path, status) -> None:
    response = await client.request(method, path)
    assert response.status == status
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_static_files_and_refused_origins_carry_them_too(client) -> None:
    page = await (await client.get("/")).text()
    [script] = re.findall(r'<script type="module" src="([^"]+)"', page)
    for response in (await client.get(script),
                     await client.post("/api/tasks", headers={"Origin": "http://evil.example"})):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Content-Security-Policy" in response.headers


async def test_the_page_needs_nothing_the_policy_forbids(client) -> None:
    # No inline script, style or event handler: the browser tests run under the policy, and a
    # violation there is a console error that fails them.
    page = await (await client.get("/")).text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert re.findall(r"<style|\sstyle=|\son[a-z]+=|javascript:", page, flags=re.IGNORECASE) == []
