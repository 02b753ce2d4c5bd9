"""Faults the course teaches about, done for real: killed workers, a restarted API, slow work.

Each test runs a demo of its own in a vhost of its own (``fresh_settings``), so that it can kill
and count processes without the shared ones taking its messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import aiohttp

from api.app import create_app
from api.app_keys import store_key
from common import topology
from common.statuses import TaskStatus
from common.tasks import Method
from runner.broker import queue_state
from runner.polling import wait_for


def worker_of(service) -> str:
    """The worker id a consumer process reports under (see callback_client.make_worker_id)."""
    return f"consumer@{socket.gethostname()}:{service.pid}"


def test_killed_consumer_messages_go_to_another_consumer(fresh_settings, own_services) -> None:
    api = own_services.start_api(fresh_settings)
    [doomed] = own_services.start_workers("consumer", fresh_settings)
    tasks = api.send("rmq", timeout=3, count=3)
    numbers = [t["task_num"] for t in tasks]
    # The only consumer has taken all three (prefetch 3) and is working on them.
    wait_for(lambda: all(api.task(n)["worker_id"] == worker_of(doomed) for n in numbers), 10,
             what="the first consumer to start all three tasks")
    survivor_services = own_services.start_workers("consumer", fresh_settings)
    doomed.kill()
    finished = api.wait_final(numbers, timeout=30)
    assert {t["status"] for t in finished} == {"DONE"}
    assert {t["worker_id"] for t in finished} == {worker_of(survivor_services[0])}


def test_killed_celery_worker_task_is_redelivered(fresh_settings, own_services) -> None:
    api = own_services.start_api(fresh_settings)
    [doomed] = own_services.start_workers("celery_worker", fresh_settings)
    [task] = api.send("celery", timeout=4)
    first = wait_for(lambda: api.task(task["task_num"])["worker_id"], 15,
                     what="the first worker to start the task")
    doomed.kill()  # the main process and its pool children, mid-task
    own_services.start_workers("celery_worker", fresh_settings)
    [finished] = api.wait_final([task["task_num"]], timeout=40)
    assert finished["status"] == "DONE"
    assert finished["worker_id"] != first


def test_consumer_rides_out_an_api_restart(fresh_settings, own_services) -> None:
    api = own_services.start_api(fresh_settings)
    [consumer] = own_services.start_workers("consumer", fresh_settings)
    tasks = api.send("rmq", timeout=1, count=6)
    numbers = [t["task_num"] for t in tasks]
    api.service.kill()
    # The consumer's reports now fail; it gives up on each after a few retries and goes on.
    wait_for(lambda: "report failed" in consumer.log(), 20, what="a failed report")
    restarted = own_services.start_api(fresh_settings)
    # Every message is settled: done while the API was away, or skipped as unknown after.
    wait_for(lambda: all(f"task {n}: done" in consumer.log() or f"task {n}: skipped" in consumer.log()
                         for n in numbers), 60, what="the consumer to settle every message")
    wait_for(lambda: queue_state(fresh_settings.rmq_url, topology.QUEUE)[0] == 0, 10,
             what="an empty queue")
    # The consumer is not wedged: a new task through the restarted API runs to DONE.
    [task] = restarted.send("rmq", timeout=0)
    assert task["task_num"] > max(numbers)
    assert restarted.wait_final([task["task_num"]])[0]["status"] == "DONE"


def test_work_longer_than_the_heartbeat_keeps_its_connection(fresh_settings, own_services) -> None:
    settings = dataclasses.replace(fresh_settings, rmq_url=fresh_settings.rmq_url + "?heartbeat=2")
    api = own_services.start_api(settings)
    [consumer] = own_services.start_workers("consumer", settings)
    [worker] = own_services.start_workers("celery_worker", settings)
    tasks = api.send("rmq", timeout=10) + api.send("celery", timeout=10)
    finished = api.wait_final([t["task_num"] for t in tasks], timeout=40)
    assert {t["status"] for t in finished} == {"DONE"}
    # One connection each, all along: no reconnect was needed.
    assert consumer.log().count("consuming test_direct") == 1
    assert "broker unavailable" not in consumer.log()
    assert "Connection to broker lost" not in worker.log()
    assert "Reconnecting" not in api.service.log()


def test_late_callback_never_moves_a_task_backwards(fresh_settings, own_services) -> None:
    api = own_services.start_api(fresh_settings)  # no workers: the test plays the worker
    [task] = api.send("rmq", timeout=0)
    callback = api.url("/update_task_status_api/")

    def report(status: str) -> int:
        body = {"task_num": task["task_num"], "task_status": status, "worker_id": "test@here:1"}
        return api.session.post(callback, json=body, timeout=5).status_code

    assert [report(s) for s in ("IN_PROGRESS", "DONE", "IN_PROGRESS", "DONE", "ERROR")] == [
        200, 200, 409, 409, 409,
    ]
    assert api.task(task["task_num"])["status"] == "DONE"


def test_sigterm_stops_the_consumer_and_hands_its_work_back(fresh_settings, own_services) -> None:
    api = own_services.start_api(fresh_settings)
    [consumer] = own_services.start_workers("consumer", fresh_settings)
    [task] = api.send("rmq", timeout=30)
    wait_for(lambda: api.task(task["task_num"])["status"] == "IN_PROGRESS", 10,
             what="the consumer to start the task")
    # What `docker stop` does: SIGTERM. The consumer stops at once, without waiting 30 s.
    assert consumer.stop(timeout=10) == 0
    assert "interrupted by shutdown" in consumer.log()
    # The unacked message went back to the queue for the next consumer.
    assert queue_state(fresh_settings.rmq_url, topology.QUEUE) == (1, 0)


async def test_a_full_store_refuses_new_work_and_keeps_the_running_task(
    aiohttp_client, fresh_settings
) -> None:
    # The probe: one task IN_PROGRESS, then batch after batch. No workers: the test reports.
    client = await aiohttp_client(create_app(dataclasses.replace(fresh_settings,
                                                                 task_store_limit=10)))

    async def send(count: int) -> aiohttp.ClientResponse:
        return await client.post("/api/tasks", json={"method": "rmq", "timeout": 0, "count": count})

    async def report(task_num: int, status: str) -> int:
        body = {"task_num": task_num, "task_status": status, "worker_id": "test@here:1"}
        return (await client.post("/update_task_status_api/", json=body)).status

    [running] = (await (await send(1)).json())["tasks"]
    assert await report(running["task_num"], "IN_PROGRESS") == 200
    assert (await send(9)).status == 202
    for count in (10, 1):
        refused = await send(count)
        assert refused.status == 503
        error = await refused.json()
        assert "store full" in error["error"] and error["message_ru"] and error["tasks"] == []
    page = await client.post("/send_rmq_direct/", data={"processing_timeout": "0"},
                             allow_redirects=False)
    assert page.status == 503 and "TASK_STORE_LIMIT" in await page.text()

    # Nothing was lost: the running task's result is accepted, and then there is room again.
    assert await report(running["task_num"], "DONE") == 200
    assert (await send(1)).status == 202


def test_a_celery_task_sent_while_redis_is_away_waits_and_runs_once_it_is_back(
    fresh_settings, own_services, own_redis
) -> None:
    settings = dataclasses.replace(fresh_settings, result_backend=own_redis.url)
    api = own_services.start_api(settings)
    [worker] = own_services.start_workers("celery_worker", settings)
    [warm] = api.send("celery", timeout=0)
    api.wait_final([warm["task_num"]])
    own_redis.stop()
    [task] = api.send("celery", timeout=0)
    # Celery stores STARTED before the task's body: the worker waits for Redis right there.
    wait_for(lambda: "Failed operation _store_result" in worker.log(), 30,
             what="the worker to wait for Redis")
    waiting = api.task(task["task_num"])
    assert waiting["status"] == "PENDING"
    assert "result backend" in waiting["celery_error"]
    own_redis.start()
    [done] = api.wait_final([task["task_num"]], timeout=60)
    assert done["status"] == "DONE" and worker.alive()
    # Each retry is one line with its reason, not a traceback every few seconds.
    assert "Traceback" not in worker.log()


async def test_a_purge_amid_publishing_forgets_exactly_the_tasks_it_took_from_the_queue(
    aiohttp_client, fresh_settings, tmp_path
) -> None:
    own = dataclasses.replace(fresh_settings, task_counter_path=str(tmp_path / "task_counter"))
    client = await aiohttp_client(create_app(own))

    async def send() -> None:
        response = await client.post("/api/tasks", json={"method": "rmq", "timeout": 1,
                                                         "count": 20})
        assert response.status == 202, await response.text()

    async def purge() -> None:
        response = await client.post(f"/api/queues/{topology.QUEUE}/purge")
        assert response.status == 200, await response.text()

    # No worker in this vhost: every task the API still knows as PENDING must have its message
    # waiting in the queue, and every waiting message a task the API knows.
    await asyncio.gather(*[purge() if turn % 4 == 2 else send() for turn in range(16)])
    waiting = [task for task in await client.app[store_key].recent(10_000)
               if task.method is Method.RMQ and task.status is TaskStatus.PENDING]
    assert len(waiting) == queue_state(own.rmq_url, topology.QUEUE)[0]
