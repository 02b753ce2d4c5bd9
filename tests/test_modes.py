"""The course's four modes, end to end: real api, consumer and Celery worker on a real broker."""

from __future__ import annotations

import concurrent.futures
import dataclasses

import pika
import pytest
import requests

from common import topology
from runner.broker import purge, queue_state
from runner.client import ApiClient
from runner.polling import wait_for
from runner.services import free_port


def test_sync_mode_answers_from_the_catalogue(api: ApiClient) -> None:
    response = api.session.get(api.url("/get_sync_data/"), params={"data_id": 12}, timeout=5)
    assert response.status_code == 200
    assert "Стакан" in response.text


@pytest.mark.parametrize(
    ("data_id", "status"),
    [("abc", 400), ("-1", 400), ("", 400), ("1;DROP", 400), ("9", 404), ("17", 404)],
)
def test_sync_mode_explains_a_bad_data_id(api: ApiClient, data_id: str, status: int) -> None:
    response = api.session.get(api.url("/get_sync_data/"), params={"data_id": data_id}, timeout=5)
    assert response.status_code == status
    assert "data_id" in response.text
    assert 'class="error"' in response.text


def _health_during_long_request(api: ApiClient, blocking: str) -> requests.Response | None:
    """Start a long sync request, then ask /healthz while it runs; None if health timed out."""
    marker = "long sync request: waiting"
    seen = api.service.log().count(marker)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        long_request = pool.submit(
            api.session.get,
            api.url("/get_sync_long_data/"),
            params={"data_id": 10, "blocking": blocking},
            timeout=30,
        )
        # The server logs this line just before it starts waiting.
        wait_for(lambda: api.service.log().count(marker) > seen, 5, interval=0.05,
                 what="the server to start the long request")
        try:
            health = requests.get(api.url("/healthz"), timeout=2.5)
        except requests.Timeout:
            health = None
        answer = long_request.result()
    assert answer.status_code == 200
    assert "Тарелка" in answer.text
    return health


def test_blocking_long_request_freezes_the_whole_server(api: ApiClient) -> None:
    assert _health_during_long_request(api, blocking="1") is None


def test_asyncio_sleep_keeps_the_server_answering(api: ApiClient) -> None:
    health = _health_during_long_request(api, blocking="0")
    assert health is not None and health.status_code == 200


def test_rabbitmq_task_runs_to_done(api: ApiClient, consumer) -> None:
    [task] = api.send("rmq", timeout=0.3)
    assert task["status"] == "PENDING"
    [done] = api.wait_final([task["task_num"]])
    assert done["status"] == "DONE"
    assert done["worker_id"].startswith("consumer@")
    assert done["started_at"] <= done["finished_at"]


def test_celery_task_runs_to_done(api: ApiClient, celery_worker) -> None:
    [task] = api.send("celery", timeout=0.3)
    [done] = api.wait_final([task["task_num"]])
    assert done["status"] == "DONE"
    assert done["worker_id"].startswith("celery@")
    assert done["celery_id"]
    assert wait_for(lambda: api.task(task["task_num"])["celery_state"] == "SUCCESS", 10,
                    what="Celery to report SUCCESS")


def test_failed_rabbitmq_task_is_dead_lettered(api: ApiClient, consumer, settings) -> None:
    purge(settings.rmq_url, topology.DEAD_LETTER_QUEUE)
    [task] = api.send("rmq", timeout=0, fail=True)
    [failed] = api.wait_final([task["task_num"]])
    assert failed["status"] == "ERROR"
    wait_for(lambda: queue_state(settings.rmq_url, topology.DEAD_LETTER_QUEUE)[0] == 1, 10,
             what="the message in the dead-letter queue")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"this is not json", "body: is not JSON"),
        (b'{"task_num": 7}', "timeout: is missing"),
        (b'{"task_num": 7, "timeout": 99999}', "timeout: must be between"),
        (b'{"task_num": -7, "timeout": 1}', "task_num: must be a positive integer"),
        (b"[" * 5000, "body: is not JSON"),
    ],
)
def test_a_bad_message_is_dead_lettered_with_its_reason_and_the_consumer_lives_on(
    api: ApiClient, consumer, settings, body: bytes, reason: str
) -> None:
    purge(settings.rmq_url, topology.DEAD_LETTER_QUEUE)
    seen = consumer.log().count(reason)
    connection = pika.BlockingConnection(pika.URLParameters(settings.rmq_url))
    try:
        connection.channel().basic_publish(topology.EXCHANGE, "", body)
    finally:
        connection.close()
    wait_for(lambda: queue_state(settings.rmq_url, topology.DEAD_LETTER_QUEUE)[0] == 1, 10,
             what="the bad message in the dead-letter queue")
    assert consumer.log().count(reason) == seen + 1
    assert consumer.alive()
    [task] = api.send("rmq", timeout=0)
    assert api.wait_final([task["task_num"]])[0]["status"] == "DONE"


def test_two_consumers_share_the_work(api: ApiClient, consumer, settings, own_services) -> None:
    own_services.start_workers("consumer", settings)
    tasks = api.send("rmq", timeout=1, count=12)
    finished = api.wait_final([t["task_num"] for t in tasks], timeout=40)
    assert {t["status"] for t in finished} == {"DONE"}
    assert len({t["worker_id"] for t in finished}) == 2


@pytest.mark.parametrize(("path", "method"), [("/send_rmq_direct/", "rmq"),
                                              ("/send_celery_task/", "celery")])
def test_page_forms_send_tasks(api: ApiClient, consumer, celery_worker, path, method) -> None:
    response = api.session.post(
        api.url(path), data={"processing_timeout": "0.2", "count": "2"}, allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 303
    location = response.headers["Location"]
    assert f"sent={method}" in location
    page = api.session.get(api.url(location), timeout=5)
    assert "Отправлено через" in page.text
    newest = api.session.get(api.url("/api/tasks"), params={"limit": 2}, timeout=5).json()["tasks"]
    assert {t["method"] for t in newest} == {method}
    finished = api.wait_final([t["task_num"] for t in newest])
    assert {t["status"] for t in finished} == {"DONE"}


@pytest.mark.parametrize("value", ["abc", "-3", "", "1e400", "99999"])
def test_page_forms_show_a_bad_timeout_back(api: ApiClient, value: str) -> None:
    response = api.session.post(
        api.url("/send_rmq_direct/"), data={"processing_timeout": value, "routing_key": "<b>x"},
        allow_redirects=False, timeout=10,
    )
    assert response.status_code == 400
    assert "Время обработки" in response.text
    # What the user typed comes back escaped, never as markup.
    assert "&lt;b&gt;x" in response.text and "<b>x" not in response.text


def test_task_numbers_never_repeat_across_api_restarts(settings, own_services, tmp_path) -> None:
    own = dataclasses.replace(settings, task_counter_path=str(tmp_path / "counter"))
    numbers = []
    for _ in range(2):
        client = own_services.start_api(dataclasses.replace(own, api_port=free_port()))
        numbers += [t["task_num"] for t in client.send("rmq", timeout=0, count=2)]
        client.service.stop()
    assert numbers == sorted(numbers) and len(set(numbers)) == 4


def test_celery_state_is_found_behind_a_big_backlog_of_results(fresh_settings, own_services) -> None:
    """600 tasks leave 1200 results (STARTED, SUCCESS) in the API's rpc:// reply queue: more
    than Celery reads in one go, and the first task's result is the deepest."""
    api = own_services.start_api(fresh_settings)
    own_services.start_workers("celery_worker", fresh_settings)
    tasks = [t for _ in range(6) for t in api.send("celery", timeout=0, count=100)]
    # The list, not /api/tasks/<n>: asking for one task's state would read the backlog early.
    wait_for(lambda: all(t["status"] == "DONE" for t in api.session.get(
        api.url("/api/tasks"), params={"limit": 600}, timeout=10).json()["tasks"]), 60,
        what="all 600 tasks to finish")
    assert api.task(tasks[0]["task_num"])["celery_state"] == "SUCCESS"
