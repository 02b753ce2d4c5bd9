"""The demo on the three-node cluster: a node is lost with work in flight, and nothing is lost.

The api, a consumer and a Celery worker get all three nodes in RMQ_URL and quorum queues. With
hundreds of tasks in flight, one node goes: killed with SIGKILL (the leader of ``test_direct``),
or stopped cleanly (the node the API publishes through). Meanwhile a client keeps sending; each
answer must be a 202 or a clear 503, never a hang or a 500. Then every accepted task must end
DONE, none done twice, and the node must rejoin.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from common import topology
from common.settings import URL_SEPARATOR, Settings
from runner import cluster as rmq_cluster
from runner.client import ApiClient
from runner.cluster import Node
from runner.polling import wait_for
from runner.services import Service, Services, demo_settings

pytestmark = pytest.mark.cluster
log = logging.getLogger(__name__)

RMQ_TASKS = 300
CELERY_TASKS = 60
# Short work: the tasks are still in flight when the node goes, and all end within a minute.
WORK = 0.1
# A hang is an answer slower than this; the API's own limits (a publish waits 5 s for its
# confirm, a Celery send 5 s) keep every answer well inside it.
ANSWER_TIMEOUT = 15.0
DONE_LINE = re.compile(r"task (\d+): done, worker=")


@dataclasses.dataclass
class Answer:
    method: str
    status: int  # 0: no answer within ANSWER_TIMEOUT
    elapsed: float
    at: float
    body: dict


class Traffic:
    """A client sending one task at a time, alternately to RabbitMQ and to Celery, until stopped.

    It records every answer, so that the test can say what the API answered during the outage.
    """

    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic")
        self.answers: list[Answer] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        session = requests.Session()
        methods = ("rmq", "celery")
        while not self._stop.is_set():
            method = methods[len(self.answers) % 2]
            started = time.monotonic()
            try:
                response = session.post(
                    self._api.url("/api/tasks"),
                    json={"method": method, "timeout": WORK},
                    timeout=ANSWER_TIMEOUT,
                )
                status, body = response.status_code, response.json()
            except requests.Timeout:
                status, body = 0, {}
            self.answers.append(Answer(method, status, time.monotonic() - started, started, body))
            self._stop.wait(0.05)

    def accepted(self) -> list[int]:
        return [task["task_num"]
                for answer in self.answers if answer.status == 202
                for task in answer.body["tasks"]]

    def refusals(self) -> dict[str, tuple[float, set[str]]]:
        """Per method: how long it answered 503 (first to last), and the errors it gave."""
        found = {}
        for method in ("rmq", "celery"):
            refused = [a for a in self.answers if a.method == method and a.status == 503]
            if refused:
                span = refused[-1].at + refused[-1].elapsed - refused[0].at
                found[method] = (round(span, 1), {a.body.get("error") for a in refused})
        return found


@pytest.fixture
def cluster_settings(
    cluster: tuple[Node, ...], base_settings: Settings, tmp_path: Path
) -> Iterator[Settings]:
    """The demo on all three nodes, in a vhost of its own (quorum queues need a fresh one)."""
    with rmq_cluster.scratch_vhost(base_settings.rmq_user) as vhost:
        yield demo_settings(rmq_cluster.on_cluster(base_settings), vhost, tmp_path)


def node_of_api(api: ApiClient) -> Node:
    """The node the API publishes through, as its /healthz says."""
    health = api.session.get(api.url("/healthz"), timeout=5).json()
    port = int(health["node"].rpartition(":")[2])
    [node] = [node for node in rmq_cluster.NODES if node.amqp_port == port]
    return node


def done_counts(*workers: Service) -> Counter[int]:
    """How many DONE reports of each task the API recorded, from the workers' own logs (a
    DONE the API answers with 409 logs "already recorded" instead)."""
    return Counter(
        int(number) for worker in workers for number in DONE_LINE.findall(worker.log())
    )


def lose_a_node_under_load(
    settings: Settings,
    consumer_settings: Settings,
    services: Services,
    choose: Callable[[ApiClient], Node],
    lose: Callable[[Node], None],
    bring_back: Callable[[Node], None],
) -> None:
    # The consumer starts first, so test_direct's leader is the first node of its list.
    [consumer] = services.start_workers("consumer", consumer_settings)
    api = services.start_api(settings)
    [celery_worker] = services.start_workers("celery_worker", settings)
    in_flight = [task["task_num"] for task in api.send("rmq", timeout=WORK, count=RMQ_TASKS)]
    in_flight += [task["task_num"] for task in api.send("celery", timeout=WORK, count=CELERY_TASKS)]
    node = choose(api)
    traffic = Traffic(api)
    traffic.start()
    lost_at = time.monotonic()
    lose(node)
    try:
        api.wait_final(in_flight, timeout=120)
        all_done_after = time.monotonic() - lost_at
        # Tasks are accepted again, and go through the surviving nodes.
        wait_for(lambda: any(a.status == 202 and a.at > lost_at + 1 for a in traffic.answers),
                 30, what="a task accepted after the loss")
    finally:
        traffic.stop()
        bring_back(node)
    accepted = in_flight + traffic.accepted()
    finished = api.wait_final(accepted, timeout=60)

    assert Counter(task["status"] for task in finished) == {"DONE": len(accepted)}
    answers = Counter(answer.status for answer in traffic.answers)
    assert set(answers) <= {202, 503}, answers  # never a hang (0) or a 500
    for answer in traffic.answers:
        if answer.status == 503:
            assert answer.body.get("error"), answer
    # No task was recorded DONE twice. (Not every task has its line: a report whose answer was
    # lost is sent again by urllib3's retry and then hears 409, "already recorded".)
    twice = {task: n for task, n in done_counts(consumer, celery_worker).items() if n > 1}
    assert not twice, f"recorded DONE more than once: {twice}"
    wait_for(lambda: rmq_cluster.running_nodes(node) == list(rmq_cluster.NODES),
             rmq_cluster.NODE_TIMEOUT, what=f"{node.name} to run in the cluster again")
    # The figures of docs/cluster.md ("Цифры из теста"): pytest -m cluster -o log_cli=true
    log.info(
        "%s lost: %d tasks in flight and %d sent meanwhile, all DONE %.1f s after the loss;"
        " answers %s; 503s (seconds, errors) %s; slowest answer %.2f s",
        node.name, len(in_flight), len(traffic.accepted()), all_done_after, dict(answers),
        traffic.refusals(), max(answer.elapsed for answer in traffic.answers),
    )


def test_killing_the_leader_of_test_direct_loses_no_task(
    cluster_settings: Settings, own_services: Services
) -> None:
    """The hardest case: every client is on the node that leads test_direct. A new leader is
    elected, and every client moves to another node."""

    def leader(api: ApiClient) -> Node:
        found = rmq_cluster.leader_of(topology.QUEUE, vhost=cluster_settings.rmq_vhost)
        assert found == node_of_api(api)
        return found

    lose_a_node_under_load(
        cluster_settings, cluster_settings, own_services, leader,
        rmq_cluster.kill_node, rmq_cluster.restart_node,
    )


def test_stopping_the_node_of_the_api_loses_no_task(
    cluster_settings: Settings, own_services: Services
) -> None:
    """The API's node stops cleanly while another node leads test_direct (the consumer's list
    starts with the second node): the API moves, the queue keeps its leader."""
    urls = cluster_settings.rmq_urls
    consumer_first = dataclasses.replace(
        cluster_settings, rmq_url=URL_SEPARATOR.join(urls[1:] + urls[:1])
    )

    def api_node_not_leading(api: ApiClient) -> Node:
        found = node_of_api(api)
        assert found != rmq_cluster.leader_of(topology.QUEUE, vhost=cluster_settings.rmq_vhost)
        return found

    lose_a_node_under_load(
        cluster_settings, consumer_first, own_services, api_node_not_leading,
        rmq_cluster.stop_app, rmq_cluster.start_app,
    )
