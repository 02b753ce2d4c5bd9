"""`docker compose --profile cluster up`: three RabbitMQ nodes, quorum queues, and the demo on them.

Run in file order on one boot of the cluster's services: the faults at the end leave the cluster
whole again for whatever follows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from common import topology
from runner.client import ApiClient
from runner.polling import wait_for
from tests.compose.conftest import boot
from tests.compose.load import Load
from tests.compose.stack import COURSE_PASSWORD, COURSE_USER, Stack

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

log = logging.getLogger(__name__)

NODES = ("rmq-1", "rmq-2", "rmq-3")
# The cluster's demo and what it needs; the single-node demo's services stay down.
SERVICES = (*NODES, "api-cluster", "consumer-cluster", "celery_worker-cluster")
PARTITION_SECONDS = 30.0


@pytest.fixture(scope="module")
def cluster(stack: Stack, figures: dict) -> Iterator[Stack]:
    figures["cluster_boot_seconds"] = boot(
        stack, *SERVICES, profile="cluster", healthy=(*NODES, "api-cluster")
    )
    yield stack
    stack.save_logs()
    # Prometheus too, if a test started it: the network goes only once no container is on it.
    stack.compose("--profile", "cluster", "--profile", "monitoring", "down", "--volumes",
                  "--timeout", "5")


@pytest.fixture
def api(cluster: Stack) -> ApiClient:
    return cluster.api("CLUSTER_API_HOST_PORT")


def management(cluster: Stack, path: str, node: int = 1) -> object:
    url = cluster.url(f"RMQ_{node}_MANAGEMENT_HOST_PORT") + "/api" + path
    response = requests.get(url, auth=(COURSE_USER, COURSE_PASSWORD), timeout=10)
    response.raise_for_status()
    return response.json()


def test_three_nodes_form_one_cluster(cluster: Stack) -> None:
    def running() -> set[str]:
        return {node["name"] for node in management(cluster, "/nodes") if node["running"]}

    wait_for(lambda: running() == {f"rabbit@{name}" for name in NODES}, 120, interval=2.0,
             what="three running nodes in one cluster")


@pytest.mark.parametrize("queue", [topology.QUEUE, topology.CELERY_QUEUE])
def test_quorum_queues_have_a_member_on_every_node(cluster: Stack, queue: str) -> None:
    def members() -> list[str]:
        info = management(cluster, f"/queues/{quote('/', safe='')}/{queue}")
        assert info["type"] == topology.QUORUM, info
        return sorted(info.get("members", []))

    wait_for(lambda: members() == [f"rabbit@{name}" for name in NODES], 180, interval=3.0,
             what=f"{queue} replicated on three nodes")


def test_the_cluster_demo_completes_tasks(api: ApiClient) -> None:
    sent = api.send("rmq", timeout=0.2, count=3) + api.send("celery", timeout=0.2, count=3)
    done = api.wait_final([task["task_num"] for task in sent], timeout=60)
    assert {task["status"] for task in done} == {"DONE"}, done


def test_prometheus_scrapes_the_cluster_demo_when_both_profiles_run(cluster: Stack) -> None:
    # Prometheus alone: it depends on nothing, and the single-node demo stays down.
    cluster.compose("--profile", "monitoring", "up", "--detach", "prometheus")
    cluster.wait_running("prometheus", 1)
    expected = {("api-cluster", f"{address}:8080") for address in cluster.addresses("api-cluster")}
    # Up: the cluster's api only. The single node's api resolves to nothing (no target) and its
    # Flower, a fixed name, is a target that is down; this module starts no flower-cluster.
    wait_for(lambda: cluster.scraped() == expected, 60, interval=1.0,
             what="Prometheus to scrape the cluster's api")
    [series] = cluster.prometheus("query", query='up{job="api-cluster"}')["result"]
    assert series["metric"]["demo"] == "cluster", series


def test_stopping_a_node_under_200_tasks_loses_none(cluster: Stack, api: ApiClient) -> None:
    sent = api.send("rmq", timeout=0.2, count=100) + api.send("celery", timeout=0.2, count=100)
    cluster.compose("--profile", "cluster", "stop", "rmq-1")
    done = api.wait_final([task["task_num"] for task in sent], timeout=300)
    assert {task["status"] for task in done} == {"DONE"}, [t for t in done if t["status"] != "DONE"]
    cluster.compose("--profile", "cluster", "start", "rmq-1")
    cluster.wait_running("rmq-1", 1, timeout=180)


def test_the_apis_node_partitioned_for_30_s_under_load_loses_no_accepted_task(
    cluster: Stack, api: ApiClient
) -> None:
    network = f"{cluster.project}_default"
    # The node the API publishes through: the partition cuts its publishing and consuming path.
    health = api.session.get(api.url("/healthz"), timeout=10).json()
    service = health["node"].split(":", 1)[0]
    [node] = cluster.containers(service)
    log.info("partitioning %s, the API's node", service)
    with Load(api) as load:
        wait_for(lambda: len(load.accepted) >= 10, 30, what="the load to be accepted")
        cluster.disconnect(network, node["Name"])
        try:
            # The fault's length, not a wait for something to happen: the load runs meanwhile.
            time.sleep(PARTITION_SECONDS)
        finally:
            cluster.reconnect(network, node["Name"])
        healed, healed_at = len(load.accepted), time.monotonic()
        wait_for(lambda: len(load.accepted) >= healed + 10, 180,
                 what="the demo to accept tasks after the partition")
        log.info("accepting again %.0f s after the partition healed",
                 time.monotonic() - healed_at)
    log.info("during the partition: %s accepted, %s refused (%s)", len(load.accepted),
             len(load.refused), load.refused[:3])
    started = time.monotonic()
    done = api.wait_final(load.accepted, timeout=420)
    log.info("every accepted task final %.0f s after the load stopped; the longest took %.1f s",
             time.monotonic() - started, max(t["finished_at"] - t["created_at"] for t in done))
    assert {task["status"] for task in done} == {"DONE"}, [t for t in done if t["status"] != "DONE"]
