"""Celery as the course sells it, against the real broker and Redis: retries you can watch,
Celery's own state beside ours, Beat, chain / group / chord, Flower and `celery inspect`."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from celery.app.task import Context
from celery.signals import task_retry

from celery_config import create_celery_app, fail_retry_pauses
from celery_tasks import process_task
from common import topology
from common.settings import Settings
from runner.client import ApiClient
from runner.polling import wait_for
from runner.services import Service, Services


def post_workflow(api: ApiClient, **body) -> requests.Response:
    return api.session.post(api.url("/api/workflows"), json=body, timeout=30)


def send_workflow(api: ApiClient, **body) -> list[int]:
    response = post_workflow(api, **body)
    assert response.status_code == 202, response.text
    answer = response.json()
    tasks = answer["tasks"]
    assert {task["workflow_id"] for task in tasks} == {answer["workflow_id"]}
    return [task["task_num"] for task in tasks]


# ---------------------------------------------------------------- retries and Celery's own state


def test_a_failing_task_shows_each_retry_and_ends_with_the_attempts_used(
    api: ApiClient, celery_worker
) -> None:
    [task] = api.send("celery", timeout=0, fail=True)
    seen: list[dict] = []

    def waiting_retry() -> bool:
        current = api.task(task["task_num"])
        if current["next_try_at"] is not None:
            seen.append(current)
        return current["status"] == "ERROR"

    wait_for(waiting_retry, 40, interval=0.2, what="the task to fail for good")
    final = api.task(task["task_num"])
    assert (final["attempts"], final["max_attempts"], final["next_try_at"]) == (4, 4, None)
    assert final["celery_state"] == "FAILURE" and "fail=true" in final["celery_result"]
    # While a retry waited, the record said which try comes next and when; Celery said RETRY.
    assert {entry["attempts"] for entry in seen} >= {1, 2, 3}
    assert any(entry["celery_state"] == "RETRY" for entry in seen)
    # Exponential backoff: the next try 2 s, 4 s, 8 s after the failed one started, exactly the
    # pauses the page's help quotes (celery_app.fail_retry_pauses).
    waits = sorted({round(e["next_try_at"] - e["started_at"]) for e in seen})
    assert waits == fail_retry_pauses() == [2, 4, 8]
    assert celery_worker.log().count(f"task {task['task_num']}: attempt") == 3


def test_a_task_cancelled_on_a_lost_broker_connection_is_no_retry_to_report() -> None:
    # What Celery sends when the broker connection drops under a running acks_late task
    # (Request.cancel): task_retry without a reason. Found by make chaos, where the handler
    # raised TypeError with a traceback at every broker restart.
    responses = task_retry.send(process_task, request=Context(kwargs={"task_num": 7}), einfo=None)
    assert [response for _, response in responses] == [None]


async def test_the_celery_card_quotes_the_retries_the_worker_makes(client) -> None:
    # What the task above shows live: the second try of four comes 2 s after the first failed.
    page = " ".join((await (await client.get("/")).text()).split())
    assert "«попытка 2 из 4, следующая через 2 с», и паузы растут: 2, 4, 8 с" in page


def test_a_done_task_shows_celery_state_and_return_value(api: ApiClient, celery_worker) -> None:
    [task] = api.send("celery", timeout=0)
    api.wait_final([task["task_num"]])
    # The task reports DONE from inside its body; Celery stores SUCCESS a moment later, once
    # the body has returned: the two views differ for that moment.
    final = wait_for(lambda: (t := api.task(task["task_num"]))["celery_state"] != "STARTED" and t,
                     10, what="Celery to store the result")

    assert final["status"] == "DONE" and (final["attempts"], final["max_attempts"]) == (1, 4)
    assert (final["celery_state"], final["celery_result"]) == ("SUCCESS", "done")
    assert final["source"] == "api"


def test_a_sent_task_is_subscribed_to_only_once_someone_waits_for_its_result(
    settings: Settings, api: ApiClient, celery_worker
) -> None:
    # The stock Redis backend would subscribe at send time, while the result is still held.
    celery = create_celery_app(settings)
    try:
        # A task number the API never gave out: the worker skips it (and returns "skipped").
        sent = celery.send_task(topology.PROCESS_TASK, kwargs={"task_num": 10**9, "timeout": 0})
        subscribed_at_send = set(celery.backend.result_consumer.subscribed_to)
        # Only now, after the worker may well have stored the result, does anyone wait for it.
        assert sent.get(timeout=20) == "skipped"
    finally:
        celery.close()
    assert subscribed_at_send == set()


# ---------------------------------------------------------------- canvas


def test_a_chain_runs_its_tasks_one_after_another(api: ApiClient, celery_worker) -> None:
    numbers = send_workflow(api, kind="chain", count=3, timeout=0.5)

    tasks = api.wait_final(numbers)

    assert [task["status"] for task in tasks] == ["DONE"] * 3
    assert [task["parent"] for task in tasks] == [None, numbers[0], numbers[1]]
    for before, after in zip(tasks, tasks[1:], strict=False):
        assert after["started_at"] >= before["finished_at"]


def test_a_group_runs_its_tasks_side_by_side(api: ApiClient, celery_worker) -> None:
    numbers = send_workflow(api, kind="group", count=3, timeout=1.5)

    tasks = api.wait_final(numbers)

    assert [task["status"] for task in tasks] == ["DONE"] * 3
    # Three pool processes: every task started before any of them finished.
    assert max(t["started_at"] for t in tasks) < min(t["finished_at"] for t in tasks)


def test_a_chords_summary_runs_after_the_last_member(api: ApiClient, celery_worker) -> None:
    numbers = send_workflow(api, kind="chord", count=3, timeout=0.5)

    *members, summary = api.wait_final(numbers)

    assert summary["role"] == "summary" and {m["role"] for m in members} == {"member"}
    assert summary["started_at"] >= max(member["finished_at"] for member in members)
    assert (summary["status"], summary["celery_result"]) == ("DONE", 3)  # three succeeded


def test_a_failed_member_ends_the_rest_of_its_workflow(api: ApiClient, celery_worker) -> None:
    chain = send_workflow(api, kind="chain", count=3, timeout=0, fail_member=2)
    chord = send_workflow(api, kind="chord", count=2, timeout=0, fail_member=1)

    first, failed, never = api.wait_final(chain, timeout=60)
    *_, summary = api.wait_final(chord, timeout=60)

    assert (first["status"], failed["status"], failed["attempts"]) == ("DONE", "ERROR", 4)
    assert never["status"] == "ERROR" and "предыдущая" in never["note"]
    assert never["started_at"] is None  # Celery never ran it
    assert summary["status"] == "ERROR" and "аккорда" in summary["note"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "pipeline", "count": 2, "timeout": 1}, "kind"),
        ({"kind": "chain", "count": 1, "timeout": 1}, "count"),
        ({"kind": "chain", "count": 11, "timeout": 1}, "count"),
        ({"kind": "chain", "count": True, "timeout": 1}, "count"),
        ({"kind": "group", "count": 2, "timeout": -1}, "timeout"),
        ({"kind": "group", "count": 2, "timeout": 1, "fail_member": 3}, "fail_member"),
        ({"kind": "group", "count": 2, "timeout": 1, "fail_member": 0}, "fail_member"),
        ({"count": 2, "timeout": 1}, "kind"),
    ],
)
async def test_a_bad_workflow_is_a_400_naming_the_field(client, body: dict, field: str) -> None:
    response = await client.post("/api/workflows", json=body)

    assert response.status == 400
    assert (await response.json())["field"] == field


# ---------------------------------------------------------------- Beat, Flower, inspect


def test_beat_orders_one_task_per_interval(
    settings: Settings, api: ApiClient, celery_worker, own_services: Services
) -> None:
    beat = own_services.start("celery_beat", dataclasses.replace(settings, beat_interval=2))

    def beat_tasks() -> list[dict]:
        tasks = api.session.get(api.url("/api/tasks"), params={"limit": 1000}, timeout=10).json()
        return [task for task in tasks["tasks"] if task["source"] == "beat"]

    wait_for(lambda: len([t for t in beat_tasks() if t["status"] == "DONE"]) >= 3, 30,
             what="three ticks of Beat to run to DONE")
    beat.stop()
    created = sorted(task["created_at"] for task in beat_tasks())
    gaps = [later - earlier for earlier, later in zip(created, created[1:], strict=False)]
    assert all(1.0 <= gap <= 4.0 for gap in gaps), gaps


def test_flower_shows_our_worker(flower: tuple[Service, str], celery_worker: Service) -> None:
    _, url = flower

    def workers() -> list[str]:
        return list(requests.get(f"{url}/api/workers", timeout=10).json())

    names = wait_for(workers, 30, what="Flower to see the worker")
    assert f"celery_worker-{celery_worker.pid}@" in " ".join(names)


def test_celery_inspect_sees_the_registered_tasks(settings: Settings, celery_worker) -> None:
    environ = {**os.environ, **settings.to_env()}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "celery"), "-A", "celery_app", "inspect",
         "registered", "--timeout", "10"],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for task in ("celery_tasks.process_task", "celery_tasks.summarize", "celery_tasks.beat_tick"):
        assert task in result.stdout


# ---------------------------------------------------------------- rpc:// still does the basics


def test_the_rpc_backend_runs_the_basic_mode_but_no_chord(fresh_settings, own_services) -> None:
    rpc = dataclasses.replace(fresh_settings, result_backend="rpc://")
    api = own_services.start_api(rpc)
    own_services.start_workers("celery_worker", rpc)

    [task] = api.send("celery", timeout=0)
    [final] = api.wait_final([task["task_num"]])
    refused = post_workflow(api, kind="chord", count=2, timeout=0)

    assert (final["status"], final["celery_state"]) == ("DONE", "SUCCESS")
    assert refused.status_code == 400 and refused.json()["field"] == "kind"
