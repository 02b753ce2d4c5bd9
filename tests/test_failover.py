"""RMQ_URL and RMQ_MANAGEMENT_URL listing several nodes: every client skips one that is down.

The node that is down is a free local port nobody listens on; the next node of the list is the
machine's real broker. The cluster itself, with a node killed under load, is tests/test_cluster.py.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import requests

from common import topology
from common.settings import URL_SEPARATOR, Settings, address
from runner.broker import management_url, queue_state
from runner.polling import wait_for
from runner.services import Services, free_port


def down_first(settings: Settings) -> Settings:
    """``settings`` with a node that does not answer put first in both lists of URLs."""
    dead = free_port()
    [url] = settings.rmq_urls
    [management] = settings.rmq_management_urls
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    dead_url = urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{dead}"))
    return dataclasses.replace(
        settings,
        # Spaces around the separator, as a user may type them: every client must cope.
        rmq_url=f" {URL_SEPARATOR} ".join([dead_url, url]),
        rmq_management_url=URL_SEPARATOR.join([f"http://127.0.0.1:{dead}/", management]),
    )


@pytest.mark.parametrize("queue_type", topology.QUEUE_TYPES)
def test_every_service_skips_a_node_that_is_down(
    fresh_settings: Settings, own_services: Services, queue_type: str
) -> None:
    settings = dataclasses.replace(down_first(fresh_settings), rmq_queue_type=queue_type)
    assert len(settings.rmq_urls) == 2
    api = own_services.start_api(settings)
    own_services.start_workers("consumer", settings)
    [celery_worker] = own_services.start_workers("celery_worker", settings)

    health = api.session.get(api.url("/healthz"), timeout=5).json()
    live_node = address(settings.rmq_urls[1])
    assert (health["broker"], health["node"]) == ("connected", live_node)

    tasks = [*api.send("rmq", timeout=0), *api.send("celery", timeout=0)]
    finished = api.wait_final([task["task_num"] for task in tasks])
    assert [task["status"] for task in finished] == ["DONE", "DONE"]

    # The queues panel: counts from the publisher's connection, statistics from the second
    # management URL once the first refused.
    def panel() -> dict | None:
        answer = api.session.get(api.url("/api/queues"), timeout=10).json()
        return answer if answer["available"] and answer["statistics_error"] is None else None

    answer = wait_for(panel, 20, what="the queues panel with statistics")
    consumers = {row["name"]: row["consumers"] for row in answer["queues"] if row["exists"]}
    assert consumers["test_direct"] == 1
    assert queue_state(settings.rmq_url, "test_direct") == (0, 1)
    # Quorum mode: the worker sets up native delayed delivery through its own node only, not
    # retrying the node that is down (celery_app.DelayedDeliveryOnce).
    assert "Retrying delayed delivery setup" not in celery_worker.log()


def limit_test_direct(settings: Settings, management: requests.Session, places: int) -> str:
    """A policy that lets test_direct hold ``places`` messages and nacks the rest; its URL.

    Returns once the queue has it: policies apply in the background."""
    vhost = quote(settings.rmq_vhost, safe="")
    policy = management_url(settings, f"policies/{vhost}/refuse-past-{places}")
    management.put(policy, json={
        "pattern": f"^{topology.QUEUE}$",
        "definition": {"max-length": places, "overflow": "reject-publish"},
        "apply-to": "queues",
    }, timeout=10).raise_for_status()
    queue = management_url(settings, f"queues/{vhost}/{topology.QUEUE}")
    wait_for(lambda: management.get(queue, timeout=10).json().get("policy") == f"refuse-past-{places}",
             10, what="the policy to apply to test_direct")
    return policy


def test_a_refused_publish_is_a_503_and_the_next_channel_is_taken(
    fresh_settings: Settings, own_services: Services, management: requests.Session
) -> None:
    """A nack (here: a policy that lets test_direct hold one message) is a clear 503; once the queue
    takes messages again, so does the API, through the new channel it opened after the nack."""
    api = own_services.start_api(fresh_settings)
    policy = limit_test_direct(fresh_settings, management, places=1)

    def post() -> requests.Response:
        return api.session.post(api.url("/api/tasks"), json={"method": "rmq", "timeout": 0},
                                timeout=10)

    # The first task fills the queue's one place; a Response of a 503 is falsy, hence .json().
    refused = wait_for(lambda: (r := post()).status_code == 503 and r.json(), 10,
                       what="the policy to refuse publishes")
    assert "nack" in refused["error"]
    management.delete(policy, timeout=10).raise_for_status()
    wait_for(lambda: post().status_code == 202, 10, what="publishes to be taken again")
    assert "publishing through a new channel" in api.service.log()


def test_a_batch_the_broker_takes_only_part_of_is_a_503_listing_the_tasks_it_took(
    fresh_settings: Settings, own_services: Services, management: requests.Session
) -> None:
    """A request's tasks go out together; those the broker refuses are forgotten, and the answer
    lists those it took, which workers will run."""
    api = own_services.start_api(fresh_settings)
    limit_test_direct(fresh_settings, management, places=2)

    answer = api.session.post(api.url("/api/tasks"), json={"method": "rmq", "timeout": 0,
                                                            "count": 5}, timeout=10)

    assert answer.status_code == 503
    refused = answer.json()
    assert "nack" in refused["error"] and "2 из 5" in refused["message_ru"]
    took = [task["task_num"] for task in refused["tasks"]]
    listed = [task["task_num"] for task in api.session.get(api.url("/api/tasks"), timeout=10)
              .json()["tasks"]]
    assert len(took) == 2 and sorted(listed) == took
    # They went out in order: the queue's two places went to the first two tasks.
    assert f"task {took[1] + 1}: not sent via rmq" in api.service.log()
    assert "(3 of the request's 5 tasks not sent)" in api.service.log()
    assert queue_state(fresh_settings.rmq_url, topology.QUEUE) == (2, 0)
