"""Bad input gets a clear 4xx that names the field: never a 5xx, a hang or a crash."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from runner.broker import scratch_vhost
from runner.procfile import ROOT
from runner.services import Services, demo_settings, service_env

GOOD = {"method": "rmq", "timeout": 1}


def with_(**changes) -> dict:
    return {**GOOD, **changes}


def without(name: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != name}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (without("method"), "method"),
        (with_(method="kafka"), "method"),
        (with_(method=None), "method"),
        (with_(method=["rmq"]), "method"),
        (without("timeout"), "timeout"),
        (with_(timeout="abc"), "timeout"),
        (with_(timeout=-3), "timeout"),
        (with_(timeout=None), "timeout"),
        (with_(timeout=10**6), "timeout"),
        (with_(timeout=True), "timeout"),
        (with_(count=0), "count"),
        (with_(count=-1), "count"),
        (with_(count=10**9), "count"),
        (with_(count=1.5), "count"),
        (with_(count=1000, timeout=3600), "count"),  # 1000 hours of work: over MAX_WORK
        (with_(fail="yes"), "fail"),
        (with_(fail=1), "fail"),
        (with_(routing_key=5), "routing_key"),
        (with_(routing_key="k" * 256), "routing_key"),
        ([GOOD], "body"),
        ("rmq", "body"),
        (None, "body"),
    ],
)
async def test_create_task_rejects_a_bad_field(client, body, field: str) -> None:
    response = await client.post("/api/tasks", json=body)
    assert response.status == 400
    error = await response.json()
    assert error["field"] == field
    assert field in error["error"]
    assert error["message_ru"]  # what the page shows, in Russian


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"\xff\xfe{}", b"NaN", b"[" * 100_000, b'{"timeout": 1e999}'],
)
async def test_create_task_rejects_a_body_that_is_not_a_usable_object(client, raw: bytes) -> None:
    response = await client.post(
        "/api/tasks", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["error"]


async def test_a_body_over_one_mebibyte_is_refused(client) -> None:
    body = json.dumps(with_(routing_key="x" * (1024 * 1024))).encode()
    response = await client.post("/api/tasks", data=io.BytesIO(body))
    assert response.status == 413
    assert "error" in await response.json()


@pytest.mark.parametrize(("path", "status"), [
    ("/api/tasks/abc", 400), ("/api/tasks/-1", 400), ("/api/tasks/0", 400),
    ("/api/tasks/1.5", 400), ("/api/tasks/" + "9" * 5000, 400), ("/api/tasks/987654321", 404),
    ("/api/nothing-here", 404),
])
async def test_task_lookup_answers_json_errors(client, path: str, status: int) -> None:
    response = await client.get(path)
    assert response.status == status
    assert (await response.json())["error"]


async def test_wrong_method_is_a_json_405(client) -> None:
    response = await client.delete("/api/tasks")
    assert response.status == 405
    assert "error" in await response.json()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"task_num": 1, "task_status": "FINISHED", "worker_id": "w"}, 400),
        ({"task_status": "DONE", "worker_id": "w"}, 400),
        ({"task_num": "1", "task_status": "DONE", "worker_id": "w"}, 400),
        ({"task_num": True, "task_status": "DONE", "worker_id": "w"}, 400),
        ({"task_num": 1, "task_status": "DONE", "worker_id": "w\nforged log line"}, 400),
        ({"task_num": 1, "task_status": "DONE", "redelivered": "yes"}, 400),
        ({"task_num": 1, "task_status": "DONE", "worker_id": ""}, 400),
        ({"task_num": 987654321, "task_status": "DONE", "worker_id": "w"}, 404),
    ],
)
async def test_callback_rejects_bad_reports(client, body, status: int) -> None:
    response = await client.post("/update_task_status_api/", json=body)
    assert response.status == status
    assert (await response.json())["error"]


async def test_callback_rejects_a_body_that_is_not_json(client) -> None:
    response = await client.post("/update_task_status_api/", data=b"task_num=1")
    assert response.status == 400


@pytest.mark.parametrize("data_id", ["abc", "-1", "", "1;DROP", "9" * 5000, "١٢"])
async def test_sync_pages_show_a_bad_data_id_back(client, data_id: str) -> None:
    for path in ("/get_sync_data/", "/get_sync_long_data/"):
        response = await client.get(path, params={"data_id": data_id})
        assert response.status == 400
        assert "data_id" in await response.text()


@pytest.mark.parametrize("value", ["abc", "-3", "", "1e400", "99999", "nan"])
async def test_forms_show_a_bad_processing_timeout_back(client, value: str) -> None:
    for path in ("/send_celery_task/", "/send_rmq_direct/"):
        response = await client.post(path, data={"processing_timeout": value},
                                     allow_redirects=False)
        assert response.status == 400
        text = await response.text()
        assert re.search(r"Время обработки: [а-яё0-9]", text), text  # said in Russian


async def test_user_text_is_escaped_in_the_page(client) -> None:
    response = await client.post(
        "/send_rmq_direct/",
        data={"processing_timeout": "abc", "routing_key": '"><script>alert(1)</script>'},
    )
    text = await response.text()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;" in text


# Property-based: whatever JSON arrives, the answer is never a 5xx. A demo of its own in a vhost
# of its own and without workers: valid bodies create real tasks that nobody has to run.

@pytest.fixture(scope="module")
def fuzz_api(base_settings, management, tmp_path_factory):
    with scratch_vhost(base_settings, management) as vhost:
        state = tmp_path_factory.mktemp("fuzz")
        services = Services(state)
        settings = dataclasses.replace(demo_settings(base_settings, vhost, state), log_level="WARNING")
        try:
            yield services.start_api(settings)
        finally:
            services.stop_all()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
field_values = json_values | st.sampled_from(["rmq", "celery", 0, 0.5, 3600, 1000, "DONE", "ERROR"])
task_bodies = st.dictionaries(
    st.sampled_from(["method", "timeout", "count", "fail", "routing_key", "extra"]),
    field_values,
) | json_values
callback_bodies = st.dictionaries(
    st.sampled_from(["task_num", "task_status", "worker_id", "extra"]),
    field_values | st.sampled_from(["IN_PROGRESS", 1, 2, "w"]),
) | json_values

FUZZ = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True, database=None,
)


def post_never_5xx(api, path: str, body) -> None:
    response = api.session.post(api.url(path), data=json.dumps(body), timeout=30)
    assert response.status_code < 500, (body, response.text)
    assert response.headers["Content-Type"].startswith("application/json")


@FUZZ
@given(body=task_bodies)
def test_random_json_to_create_task_is_never_a_5xx(fuzz_api, body) -> None:
    if isinstance(body, dict) and isinstance(body.get("count"), int) and body["count"] > 20:
        body["count"] = 20  # keep valid bodies cheap: the property is about answers, not volume
    post_never_5xx(fuzz_api, "/api/tasks", body)


@FUZZ
@given(body=callback_bodies)
def test_random_json_to_the_callback_is_never_a_5xx(fuzz_api, body) -> None:
    post_never_5xx(fuzz_api, "/update_task_status_api/", body)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes_are_never_a_5xx(fuzz_api, raw: bytes) -> None:
    for path in ("/api/tasks", "/update_task_status_api/"):
        response = fuzz_api.session.post(fuzz_api.url(path), data=raw, timeout=30)
        assert response.status_code < 500, (raw, response.text)


@pytest.mark.parametrize("path", ["/api/tasks", "/api/dead-letters"])
@pytest.mark.parametrize("limit", ["0", "-1", "abc", "١٢", "9" * 5000, "100000"])
async def test_list_endpoints_reject_a_bad_limit(client, path: str, limit: str) -> None:
    response = await client.get(path, params={"limit": limit})
    assert response.status == 400
    assert (await response.json())["field"] == "limit"


# ------------------------------------------------------------------ bad configuration

PROCFILE_SERVICES = ["api", "consumer", "celery_worker", "celery_beat", "flower"]


@pytest.mark.parametrize("service", PROCFILE_SERVICES)
@pytest.mark.parametrize(("variable", "value"), [("API_PORT", "0"), ("SECURE", "maybe"),
                                                  ("RMQ_CA_FILE", "README.md")])
def test_a_service_given_a_bad_setting_ends_with_one_line_naming_it(
    service: str, variable: str, value: str, tmp_path
) -> None:
    """Started as the Procfile starts it: no traceback, nothing left running."""
    command = Services(tmp_path).command(service)
    env = {**service_env({}), variable: value}

    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().startswith(f"configuration error: {variable} ")
