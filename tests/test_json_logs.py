"""LOG_FORMAT=json in every process the Procfile starts: each line it prints is a JSON object, and
a task's lines carry its number as a field.

The demo runs in a vhost of its own, each process as the Procfile starts it; Beat ticks every
second, so that its line and its task are in the logs too.
"""

from __future__ import annotations

import dataclasses
import json

import requests

from common import topology
from common.settings import JSON_LOGS, Settings
from runner.polling import wait_for
from runner.services import Service, Services, free_port

SECRET = "callback-s3cret"


def parsed(service: Service) -> list[dict]:
    """Every line the service printed, as JSON: one that is not fails the test, named."""
    objects = []
    for line in service.log().splitlines():
        try:
            objects.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{service.name} printed a line that is not JSON: {line!r}") from None
        assert isinstance(objects[-1], dict), line
        assert {"time", "level", "logger", "message"} <= objects[-1].keys(), line
    return objects


def test_every_process_prints_json_lines_with_the_task_as_a_field(
    fresh_settings: Settings, own_services: Services
) -> None:
    settings = dataclasses.replace(fresh_settings, log_format=JSON_LOGS, beat_interval=1,
                                   callback_token=SECRET)
    api = own_services.start_api(settings)
    [consumer] = own_services.start_workers("consumer", settings)
    [worker] = own_services.start_workers("celery_worker", settings)
    beat = own_services.start("celery_beat", settings)
    port = free_port()
    flower = own_services.start("flower", settings, env={
        "FLOWER_PORT": str(port), "FLOWER_ADDRESS": "127.0.0.1",
    })
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).ok, 40,
             what="Flower to answer")

    [rmq_task] = api.send("rmq", timeout=0.1)
    [celery_task] = api.send("celery", timeout=0.1)
    api.wait_final([rmq_task["task_num"], celery_task["task_num"]])
    wait_for(lambda: "ordered by Celery Beat" in worker.log(), 20, what="a task of Beat's")
    own_services.stop_all()

    logs = {service.name.rpartition("-")[0]: parsed(service)
            for service in (api.service, consumer, worker, beat, flower)}

    def numbered(name: str, task_num: int) -> list[str]:
        return [line["message"] for line in logs[name] if line.get("task_num") == task_num]

    rmq_num, celery_num = rmq_task["task_num"], celery_task["task_num"]
    assert f"task {rmq_num}: published to {topology.EXCHANGE}" in numbered("api", rmq_num)
    assert f"task {rmq_num}: working 0.1 s, worker={consumer_id(logs)}" in numbered(
        "consumer", rmq_num)
    assert any(message.startswith(f"task {celery_num}: done") for message in
               numbered("celery_worker", celery_num))
    # The DONE the API recorded, with the worker that reported it as a field of its own.
    [done] = [line for line in logs["api"] if line.get("task_num") == celery_num
              and line["message"] == f"task {celery_num}: DONE, worker={line.get('worker_id')}"]
    assert done["worker_id"].startswith("celery@")
    # Celery's own lines are JSON too, and so are Beat's and Flower's.
    assert any(line["message"].startswith(f"Task {topology.PROCESS_TASK}[")
               and line["message"].endswith("received")
               for line in logs["celery_worker"]), logs["celery_worker"]
    assert any("Scheduler: Sending due task" in line["message"] for line in logs["celery_beat"])
    assert logs["flower"], "Flower printed nothing"
    for name, lines in logs.items():
        assert SECRET not in json.dumps(lines), name
        assert settings.rmq_password not in json.dumps(lines), name


def consumer_id(logs: dict[str, list[dict]]) -> str:
    return next(line["worker_id"] for line in logs["consumer"] if "worker_id" in line)
