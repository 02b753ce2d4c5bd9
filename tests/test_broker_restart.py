"""The broker goes away with hundreds of tasks in flight, and comes back: nothing accepted is lost.

This stops the whole RabbitMQ application (`rabbitmqctl stop_app`), so it needs the local node
that `make test` runs; every other vhost on it is interrupted for a few seconds too.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import requests

from runner.broker import rabbitmqctl
from runner.polling import wait_for
from runner.services import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None, reason="needs the local RabbitMQ node's rabbitmqctl"
)


def broker_state(api) -> str:
    return api.session.get(api.url("/healthz"), timeout=5).json()["broker"]


def test_every_accepted_task_ends_done_after_a_broker_restart(fresh_settings, own_services) -> None:
    api = own_services.start_api(fresh_settings)
    [consumer] = own_services.start_workers("consumer", fresh_settings)
    [worker] = own_services.start_workers("celery_worker", fresh_settings)
    accepted = api.send("rmq", timeout=0.1, count=150) + api.send("celery", timeout=0.1, count=150)

    rabbitmqctl("stop_app")
    try:
        wait_for(lambda: broker_state(api) == "disconnected", 20, what="/healthz to see the outage")
        # While the broker is down the API answers at once: a 503, never a hang, never a 500.
        for method in ("rmq", "celery"):
            response = api.session.post(
                api.url("/api/tasks"), json={"method": method, "timeout": 0}, timeout=10
            )
            assert response.status_code == 503, response.text
            assert "broker" in response.json()["error"]
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")

    wait_for(lambda: broker_state(api) == "connected", 60, interval=0.5,
             what="the API to reconnect by itself")
    accepted += api.send("rmq", timeout=0, count=10) + api.send("celery", timeout=0, count=10)
    finished = api.wait_final([t["task_num"] for t in accepted], timeout=180)
    not_done = [t for t in finished if t["status"] != "DONE"]
    assert not not_done, not_done[:5]
    # Every process is still the one started above: they reconnected, nobody restarted them.
    assert consumer.alive() and worker.alive() and api.service.alive()
    # An outage is told once, by each service's own lines: no library ERRORs and tracebacks.
    for service in (api.service, consumer):
        assert " ERROR " not in service.log() and "Traceback" not in service.log(), service.log()


def test_healthz_answers_json_even_when_it_cannot_reach_the_broker(fresh_settings, own_services) -> None:
    nowhere = dataclasses.replace(
        fresh_settings, rmq_url=f"amqp://student:qwerty@127.0.0.1:{free_port()}/"
    )
    service = own_services.start("api", nowhere)
    url = f"http://127.0.0.1:{nowhere.api_port}"
    health = wait_for(lambda: requests.get(f"{url}/healthz", timeout=2).json(), 20,
                      what="the API to serve without a broker")
    assert health["broker"] == "disconnected"
    response = requests.post(f"{url}/api/tasks", json={"method": "rmq", "timeout": 0}, timeout=10)
    assert response.status_code == 503
    assert service.alive()
