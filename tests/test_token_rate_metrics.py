"""API_TOKEN, RATE_LIMIT and GET /metrics: each on its own, and nothing changed while unset."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.app_keys import store_key
from api.auth import COOKIE
from api.model import StatusReport
from common.statuses import TaskStatus
from common.tasks import Method
from runner.client import ApiClient
from tests.test_security import raw_post

TOKEN = "s3cret-api-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

# Every route that changes state, with a request it accepts and the status of that acceptance.
STATE_CHANGING = [
    ("/api/tasks", {"method": "rmq", "timeout": 0}, 202),
    ("/api/workflows", {"kind": "chain", "count": 2, "timeout": 0}, 202),
    ("/api/queues/test_direct/purge", None, 200),
    ("/api/dead-letters/replay", None, 200),
    ("/api/dead-letters/purge", None, 200),
]
PAGE_FORMS = ["/send_rmq_direct/", "/send_celery_task/"]
# Reading stays open whatever API_TOKEN says.
OPEN_READS = ["/api/tasks", "/api/queues", "/api/dead-letters", "/api/sync-data?data_id=12",
              "/healthz", "/metrics", "/login"]


async def app_client(aiohttp_client, settings, tmp_path, **changes):
    own = dataclasses.replace(settings, task_counter_path=str(tmp_path / "task_counter"), **changes)
    return await aiohttp_client(create_app(own))


@pytest.fixture
async def guarded(aiohttp_client, settings, tmp_path):
    return await app_client(aiohttp_client, settings, tmp_path, api_token=TOKEN)


@pytest.fixture
async def limited(aiohttp_client, settings, tmp_path):
    return await app_client(aiohttp_client, settings, tmp_path, rate_limit="3/minute")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape as {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def growth(before: dict, after: dict, name: str, **labels: str) -> float:
    """How much a sample grew between two scrapes (one never seen counts as 0)."""
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


async def scrape(client) -> dict:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(await response.text())


# ------------------------------------------------------------------------------ API_TOKEN


@pytest.mark.parametrize(("path", "body", "accepted"), STATE_CHANGING)
@pytest.mark.parametrize(
    ("headers", "says"),
    [({}, "needs the API token"), ({"Authorization": "Bearer wrong"}, "not the API's"),
     ({"Authorization": TOKEN}, "not the API's"), ({"Authorization": f"Bearer {TOKEN}x"}, "not")],
)
async def test_a_state_changing_route_without_the_token_is_401(
    guarded, path, body, accepted, headers, says
) -> None:
    response = await guarded.post(path, json=body, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    error = await response.json()
    assert "API_TOKEN" in error["error"] and says in error["error"]
    assert "API_TOKEN" in error["message_ru"]


@pytest.mark.parametrize(("path", "body", "accepted"), STATE_CHANGING)
async def test_a_state_changing_route_with_the_token_is_accepted(
    guarded, path, body, accepted
) -> None:
    response = await guarded.post(path, json=body, headers=BEARER)
    assert response.status == accepted, await response.text()


@pytest.mark.parametrize("path", PAGE_FORMS)
async def test_the_page_forms_need_the_token_too(guarded, path) -> None:
    form = {"processing_timeout": "0", "count": "1"}
    refused = await guarded.post(path, data=form, allow_redirects=False)
    assert refused.status == 401
    assert "API_TOKEN" in (await refused.json())["error"]
    sent = await guarded.post(path, data=form, headers=BEARER, allow_redirects=False)
    assert sent.status == 303


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_the_live_stream_without_the_token_is_401(guarded, headers) -> None:
    response = await guarded.get("/api/events", headers=headers)
    assert response.status == 401
    assert "API_TOKEN" in (await response.json())["error"]


async def test_the_live_stream_with_the_token_streams(guarded) -> None:
    async with guarded.get("/api/events", headers=BEARER) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"


@pytest.mark.parametrize("path", OPEN_READS)
async def test_reading_stays_open(guarded, path) -> None:
    response = await guarded.get(path)
    assert response.status == 200, await response.text()


async def test_the_page_sends_a_browser_to_the_login_form(guarded) -> None:
    for path in ("/", "/get_sync_data/?data_id=12"):
        response = await guarded.get(path, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/login"
    form = await (await guarded.get("/login")).text()
    assert 'name="token"' in form and 'type="password"' in form


async def test_a_wrong_token_in_the_login_form_is_refused(guarded) -> None:
    response = await guarded.post("/login", data={"token": "wrong"}, allow_redirects=False)
    assert response.status == 401
    assert COOKIE not in response.cookies
    assert "Неверный токен" in await response.text()
    assert (await guarded.get("/", allow_redirects=False)).status == 303


async def test_the_login_cookie_opens_the_page_the_forms_and_the_stream(guarded) -> None:
    response = await guarded.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert response.status == 303
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert TOKEN not in cookie.value  # derived from the token, never the token itself
    # The test client keeps the cookie, as a browser does.
    page = await guarded.get("/")
    assert page.status == 200
    assert "Выйти" in await page.text()
    sent = await guarded.post("/send_rmq_direct/", data={"processing_timeout": "0"},
                              allow_redirects=False)
    assert sent.status == 303
    tasks = await guarded.post("/api/tasks", json={"method": "rmq", "timeout": 0})
    assert tasks.status == 202
    async with guarded.get("/api/events") as stream:
        assert stream.status == 200
    # Logged out, the page asks for the token again.
    await guarded.post("/logout")
    assert (await guarded.get("/", allow_redirects=False)).status == 303


async def test_a_cookie_made_for_another_token_is_refused(guarded) -> None:
    guarded.session.cookie_jar.update_cookies({COOKIE: "0" * 64})
    response = await guarded.post("/api/tasks", json={"method": "rmq", "timeout": 0})
    assert response.status == 401
    assert "log in again" in (await response.json())["error"]


@pytest.mark.parametrize(
    "header",
    [b"Cookie: api_login=\xff\xfe", b"Cookie: api_login=" + b"0" * 4000,
     b"Cookie: api_login=\xc3\x28; other=1", b"Authorization: Bearer \xff"],
)
async def test_malformed_credentials_are_401_not_500(guarded, header: bytes) -> None:
    status, answer = await raw_post(guarded, "/api/tasks", header + b"\r\n", b"{}")
    assert status == 401, answer


async def test_a_login_form_of_any_text_is_refused_not_500(guarded) -> None:
    # Percent-encoded as a browser sends them: bytes that are not UTF-8 too.
    for token in ("%FF%FE", "%ED%B3%BF", "%00", TOKEN + "%C3%A9", "x" * 10_000):
        response = await guarded.post(
            "/login", data=f"token={token}".encode(), allow_redirects=False,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status == 401


async def test_without_api_token_nothing_asks_for_it(client) -> None:
    # A stray header is not judged when API_TOKEN is unset: scripts that send one keep working.
    for headers in ({}, {"Authorization": "Bearer anything"}):
        response = await client.post("/api/tasks", json={"method": "rmq", "timeout": 0},
                                     headers=headers)
        assert response.status == 202
    assert (await client.get("/", allow_redirects=False)).status == 200
    # No login form to show: /login sends a browser to the page.
    login = await client.get("/login", allow_redirects=False)
    assert login.status == 303 and login.headers["Location"] == "/"
    assert "Выйти" not in await (await client.get("/")).text()


def test_the_runner_client_sends_the_token(fresh_settings, own_services) -> None:
    settings = dataclasses.replace(fresh_settings, api_token=TOKEN)
    api = own_services.start_api(settings)
    [consumer] = own_services.start_workers("consumer", settings)
    [task] = api.send("rmq", timeout=0)
    assert api.wait_final([task["task_num"]])[0]["status"] == "DONE"
    anonymous = ApiClient(api.base_url)
    response = anonymous.session.post(anonymous.url("/api/tasks"), timeout=10,
                                      json={"method": "rmq", "timeout": 0})
    assert response.status_code == 401
    assert TOKEN not in api.service.log() + consumer.log()


# ------------------------------------------------------------------------------ RATE_LIMIT


async def test_past_the_limit_a_client_gets_429_with_retry_after(limited) -> None:
    body = {"method": "rmq", "timeout": 0}
    for _ in range(3):
        assert (await limited.post("/api/tasks", json=body)).status == 202
    # One limit over every state-changing route of a client, a forwarded address not trusted.
    for path in ("/api/tasks", "/api/dead-letters/purge", "/send_rmq_direct/"):
        refused = await limited.post(path, json=body, headers={"X-Forwarded-For": "10.9.8.7"})
        assert refused.status == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        error = await refused.json()
        assert "RATE_LIMIT" in error["error"] and "3 requests per minute" in error["error"]
        assert "RATE_LIMIT" in error["message_ru"]
        assert error["retry_after"] == int(refused.headers["Retry-After"])


async def test_reading_the_stream_callbacks_and_metrics_are_never_limited(limited) -> None:
    for _ in range(3):
        await limited.post("/api/tasks", json={"method": "rmq", "timeout": 0})
    assert (await limited.post("/api/tasks", json={})).status == 429
    for _ in range(5):
        for path in ("/api/tasks", "/metrics", "/healthz", "/"):
            assert (await limited.get(path)).status == 200, path
        report = {"task_num": 10**9, "task_status": "DONE", "worker_id": "w"}
        assert (await limited.post("/update_task_status_api/", json=report)).status == 404
    async with limited.get("/api/events") as stream:
        assert stream.status == 200


async def test_without_rate_limit_there_is_no_limit(client) -> None:
    for _ in range(20):
        response = await client.post("/api/tasks", json={"method": "rmq", "timeout": 0})
        assert response.status == 202
        assert "Retry-After" not in response.headers


async def test_token_and_limit_together_limit_the_guessing(
    aiohttp_client, settings, tmp_path
) -> None:
    both = await app_client(aiohttp_client, settings, tmp_path, api_token=TOKEN,
                            rate_limit="2/minute")
    statuses = [(await both.post("/login", data={"token": f"guess-{n}"},
                                 allow_redirects=False)).status for n in range(4)]
    assert statuses == [401, 401, 429, 429]


async def limited_behind(aiohttp_client, settings, tmp_path, trusted_proxies: str):
    """The application with RATE_LIMIT=2/minute and the given TRUSTED_PROXIES."""
    return await app_client(aiohttp_client, settings, tmp_path, rate_limit="2/minute",
                            trusted_proxies=trusted_proxies)


async def logins_from(client, *forwarded: str) -> list[int]:
    """The statuses of one POST /login (a limited route) for each X-Forwarded-For value; without
    API_TOKEN the login only sends the browser to the page (303)."""
    return [(await client.post("/login", headers={"X-Forwarded-For": value},
                               allow_redirects=False)).status for value in forwarded]


async def test_behind_a_trusted_proxy_each_client_it_names_has_its_own_limit(
    aiohttp_client, settings, tmp_path
) -> None:
    # The test client connects from 127.0.0.1: here, the proxy.
    behind = await limited_behind(aiohttp_client, settings, tmp_path, "192.0.2.1, 127.0.0.0/8")
    assert await logins_from(behind, "198.51.100.1", "198.51.100.1", "198.51.100.1") == [
        303, 303, 429]
    assert await logins_from(behind, "198.51.100.2") == [303]
    # Only the address the proxy wrote counts, the last: what a client put before it does not.
    assert await logins_from(behind, "203.0.113.9, 198.51.100.1") == [429]
    two_lines = [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "198.51.100.1")]
    assert (await behind.post("/login", headers=two_lines, allow_redirects=False)).status == 429
    # No address there: the client is the peer itself.
    assert await logins_from(behind, "unknown", "198.51.100.3:4711", "unknown") == [303, 303, 429]


async def test_forwarded_for_from_a_peer_not_trusted_names_nobody(
    aiohttp_client, settings, tmp_path
) -> None:
    direct = await limited_behind(aiohttp_client, settings, tmp_path, "192.0.2.1")
    assert await logins_from(direct, "198.51.100.1", "198.51.100.2", "198.51.100.3") == [
        303, 303, 429]


async def test_a_proxy_named_by_host_name_is_trusted_once_looked_up(
    aiohttp_client, settings, tmp_path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="api.forwarded")
    named = await limited_behind(aiohttp_client, settings, tmp_path, "localhost")
    # The first request from a peer not known yet counts as the peer's own (127.0.0.1) and
    # starts the lookup in the background.
    assert await logins_from(named, "198.51.100.1") == [303]
    async with asyncio.timeout(10):
        while not any("127.0.0.1" in record.getMessage() for record in caplog.records):
            await asyncio.sleep(0.01)
    assert await logins_from(named, "198.51.100.1", "198.51.100.1", "198.51.100.1",
                             "198.51.100.2") == [303, 303, 429, 303]


# ------------------------------------------------------------------------------ /metrics


async def test_metrics_count_requests_tasks_and_accept_time(client) -> None:
    before = await scrape(client)
    response = await client.post("/api/tasks", json={"method": "rmq", "timeout": 0, "count": 3})
    assert response.status == 202
    await client.post("/api/tasks", json={"method": "nope"})
    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return growth(before, after, name, **labels)

    assert grew("api_tasks_accepted_total", method="rmq") == 3
    assert grew("api_tasks_accepted_total", method="celery") == 0
    assert grew("api_requests_total", route="api.create_tasks", status="202") == 1
    assert grew("api_requests_total", route="api.create_tasks", status="400") == 1
    assert grew("api_task_accept_seconds_count") == 1
    assert grew("api_requests_total", route="metrics", status="200") == 1
    assert after[("api_broker_connected", ())] == 1
    assert ("api_queue_messages_ready", (("queue", "test_direct"),)) in after


async def test_metrics_show_how_long_the_oldest_task_of_each_method_has_waited(client) -> None:
    def oldest(samples: dict, method: str) -> float:
        return samples[("api_oldest_pending_task_age_seconds", (("method", method),))]

    before = await scrape(client)
    assert (oldest(before, "rmq"), oldest(before, "celery")) == (0, 0)
    # Accepted, and no worker has reported on it: it waits (straight in the store, so that no
    # worker of another test takes it).
    store = client.app[store_key]
    task = await store.create(Method.RMQ, 1)
    await asyncio.sleep(0.05)

    waiting = await scrape(client)
    assert 0.05 <= oldest(waiting, "rmq") < 5
    assert oldest(waiting, "celery") == 0
    await store.update_status(StatusReport(task.task_num, TaskStatus.IN_PROGRESS, "w"))
    assert oldest(await scrape(client), "rmq") == 0


async def test_metrics_count_the_open_live_streams(client) -> None:
    assert (await scrape(client))[("api_live_streams", ())] == 0
    async with client.get("/api/events") as stream:
        assert stream.status == 200
        assert (await scrape(client))[("api_live_streams", ())] == 1


async def test_metrics_count_refusals_and_stay_open_with_a_token(guarded) -> None:
    await guarded.post("/api/tasks", json={"method": "rmq", "timeout": 0})
    scraped = await scrape(guarded)  # no token needed
    assert scraped[("api_requests_total", (("route", "api.create_tasks"), ("status", "401")))] == 1
    assert ("api_tasks_accepted_total", (("method", "rmq"),)) not in scraped


def test_the_scrape_shows_the_tasks_just_made_and_how_they_ended(
    fresh_settings, own_services
) -> None:
    # A demo of its own: no task of another test finishes between the two scrapes.
    api = own_services.start_api(fresh_settings)
    own_services.start_workers("consumer", fresh_settings)
    own_services.start_workers("celery_worker", fresh_settings)

    def scraped() -> dict:
        response = api.session.get(api.url("/metrics"), timeout=10)
        assert response.status_code == 200
        return samples(response.text)

    before = scraped()
    tasks = (api.send("rmq", timeout=0, count=3) + api.send("celery", timeout=0, count=2)
             + api.send("rmq", timeout=0, count=1, fail=True))
    # The store counts a task as it takes its final report: done waiting, done counting.
    api.wait_final([task["task_num"] for task in tasks])
    after = scraped()

    expected = {
        ("api_tasks_accepted_total", "rmq"): 4,
        ("api_tasks_accepted_total", "celery"): 2,
        ("api_tasks_finished_total", "rmq", "DONE"): 3,
        ("api_tasks_finished_total", "rmq", "ERROR"): 1,
        ("api_tasks_finished_total", "celery", "DONE"): 2,
        ("api_tasks_finished_total", "celery", "ERROR"): 0,
        ("api_task_accept_seconds_count",): 3,
    }
    names = ("method", "status")
    assert {
        key: growth(before, after, key[0], **dict(zip(names, key[1:], strict=False)))
        for key in expected
    } == expected
    assert after[("api_queue_consumers", (("queue", "test_direct"),))] == 1
    assert after[("api_queue_consumers", (("queue", "celery"),))] >= 1
