"""`docker compose up --build` as a student runs it, proven through the ports it publishes.

The tests run in file order on one boot of the single-node demo: each leaves it running and
whole for the next.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from api.catalogue import LONG_REQUEST_SECONDS
from common import topology
from runner.broker import queue_state
from runner.client import ApiClient
from runner.polling import wait_for
from tests.compose.conftest import boot
from tests.compose.stack import COURSE_PASSWORD, COURSE_USER, Stack

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

HEALTHY = ("rmq", "redis", "api")


@pytest.fixture(scope="module")
def demo(stack: Stack, figures: dict) -> Iterator[Stack]:
    figures["boot_seconds"] = boot(stack, healthy=HEALTHY)
    yield stack
    stack.save_logs()
    stack.compose("down", "--volumes", "--timeout", "5")


@pytest.fixture
def api(demo: Stack) -> ApiClient:
    return demo.api()


def hosts(tasks: list[dict]) -> set[str]:
    """The containers that ran the tasks: worker ids read ``consumer@<hostname>:<pid>``."""
    return {task["worker_id"].split("@", 1)[1].rsplit(":", 1)[0] for task in tasks}


def test_every_service_runs_and_the_checked_ones_are_healthy(demo: Stack) -> None:
    containers = {c["Service"]: c for c in demo.containers()}
    assert set(containers) == {"rmq", "redis", "api", "consumer", "celery_worker", "celery_beat",
                               "flower"}
    for service in HEALTHY:
        assert containers[service]["Health"] == "healthy", containers[service]
    assert all(c["State"] == "running" for c in containers.values()), containers


def test_the_sync_modes_answer_the_short_one_at_once_the_long_one_after_its_wait(
    api: ApiClient,
) -> None:
    short = api.session.get(api.url("/get_sync_data/"), params={"data_id": 12}, timeout=10)
    assert short.status_code == 200 and "Стакан" in short.text
    started = time.monotonic()
    long = api.session.get(api.url("/get_sync_long_data/"), params={"data_id": 10}, timeout=30)
    assert long.status_code == 200 and "Тарелка" in long.text
    # A lower bound only: the lesson is that the answer waits this long.
    assert time.monotonic() - started >= LONG_REQUEST_SECONDS


def test_both_async_modes_finish_and_a_failing_task_is_dead_lettered(
    demo: Stack, api: ApiClient
) -> None:
    sent = api.send("rmq", timeout=0.5) + api.send("celery", timeout=0.5)
    done = api.wait_final([task["task_num"] for task in sent], timeout=60)
    assert [task["status"] for task in done] == ["DONE", "DONE"], done
    assert done[0]["worker_id"].startswith("consumer@")
    assert done[1]["worker_id"].startswith("celery@")

    [failing] = api.send("rmq", timeout=0, fail=True)
    [failed] = api.wait_final([failing["task_num"]], timeout=60)
    assert failed["status"] == "ERROR"
    wait_for(lambda: queue_state(demo.amqp_url(), topology.DEAD_LETTER_QUEUE)[0] == 1, 20,
             what="the failed message in the dead-letter queue")


def test_flower_lists_the_worker_and_the_management_ui_takes_the_course_login(
    demo: Stack,
) -> None:
    [worker] = demo.containers("celery_worker")
    # Celery names the node after the container's hostname, its short id.
    wait_for(lambda: worker["ID"][:12] in requests.get(demo.url("FLOWER_HOST_PORT") + "/workers",
                                                      timeout=10).text,
             60, interval=1.0, what="Flower to list the Celery worker")
    management = demo.url("RMQ_MANAGEMENT_HOST_PORT") + "/api/whoami"
    whoami = requests.get(management, auth=(COURSE_USER, COURSE_PASSWORD), timeout=10)
    assert whoami.status_code == 200 and whoami.json()["name"] == COURSE_USER
    assert requests.get(management, auth=(COURSE_USER, "wrong"), timeout=10).status_code == 401


def test_scaled_workers_share_a_batch(demo: Stack, api: ApiClient) -> None:
    demo.compose("up", "--detach", "--scale", "celery_worker=3", "--scale", "consumer=2")
    # Every replica has its connection and its consumer on the queue before the batch goes out.
    wait_for(lambda: queue_state(demo.amqp_url(), topology.QUEUE)[1] == 2, 120, interval=1.0,
             what="two consumers on the queue")
    wait_for(lambda: queue_state(demo.amqp_url(), topology.CELERY_QUEUE)[1] == 3, 120,
             interval=1.0, what="three Celery workers on their queue")
    # More tasks than one replica's prefetch (3), each long enough to keep it busy.
    sent = api.send("rmq", timeout=1, count=12) + api.send("celery", timeout=1, count=18)
    done = api.wait_final([task["task_num"] for task in sent], timeout=120)
    assert {task["status"] for task in done} == {"DONE"}
    assert len(hosts(done[:12])) == 2, done[:12]
    assert len(hosts(done[12:])) >= 2, done[12:]
    demo.compose("up", "--detach", "--scale", "celery_worker=1", "--scale", "consumer=1")


@pytest.mark.parametrize(("service", "method"), [("consumer", "rmq"), ("celery_worker", "celery")])
def test_a_worker_killed_mid_task_is_restarted_by_its_policy_and_the_task_finishes(
    demo: Stack, api: ApiClient, service: str, method: str
) -> None:
    [container] = demo.wait_running(service, 1)
    [task] = api.send(method, timeout=5)
    wait_for(lambda: api.task(task["task_num"])["status"] == "IN_PROGRESS", 60,
             what="the task to start")
    killed = demo.kill_process(container["Name"])
    # The same container comes back (restart: unless-stopped) with a new process.
    wait_for(lambda: demo.containers(service)[0]["State"] == "running"
             and demo.process_pid(container["Name"]) != killed,
             60, interval=0.5, what=f"{service} restarted by its policy")
    [done] = api.wait_final([task["task_num"]], timeout=120)
    assert done["status"] == "DONE", done


def test_a_broker_restart_with_tasks_queued_loses_none(demo: Stack, api: ApiClient) -> None:
    sent = api.send("rmq", timeout=0.2, count=100) + api.send("celery", timeout=0.2, count=30)
    assert queue_state(demo.amqp_url(), topology.QUEUE)[0] > 0, "the tasks were drained already"
    demo.compose("restart", "rmq")
    done = api.wait_final([task["task_num"] for task in sent], timeout=240)
    assert {task["status"] for task in done} == {"DONE"}, [t for t in done if t["status"] != "DONE"]


def test_down_and_up_keep_the_waiting_messages_and_the_task_counter(
    demo: Stack, api: ApiClient
) -> None:
    demo.compose("stop", "consumer")
    waiting = api.send("rmq", timeout=0.1, count=5)
    wait_for(lambda: queue_state(demo.amqp_url(), topology.QUEUE)[0] == 5, 20,
             what="five messages waiting")
    demo.compose("down")
    # Back without its consumers, so the messages stay where down left them.
    demo.compose("up", "--detach", "--scale", "consumer=0")
    demo.wait_running("api", 1, timeout=180)
    assert queue_state(demo.amqp_url(), topology.QUEUE)[0] == 5
    [after] = demo.api().send("rmq", timeout=0.1)
    assert after["task_num"] == waiting[-1]["task_num"] + 1
    demo.compose("up", "--detach", "--scale", "consumer=1")
