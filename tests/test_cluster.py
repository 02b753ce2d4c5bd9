"""The three-node cluster of rmq/cluster.sh: one cluster, quorum queues replicated on every node,
and a queue that keeps all its messages when the node leading it is killed.

The services are not involved here: pika talks to the nodes directly, and rabbitmqctl says who
leads what. The nodes start once for every test marked ``cluster``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from common.settings import Settings
from runner import cluster as rmq_cluster
from runner.broker import connect
from runner.cluster import Node
from runner.polling import wait_for

pytestmark = pytest.mark.cluster

MESSAGES = 200
# Measured here, the survivors elect a new leader about a second after the leader dies.
ELECTION_TIMEOUT = 30.0


@contextlib.contextmanager
def channel_on(node: Node, settings: Settings) -> Iterator[BlockingChannel]:
    connection = connect(node.url(settings.rmq_user, settings.rmq_password))
    try:
        yield connection.channel()
    finally:
        connection.close()


@pytest.fixture
def quorum_queue(cluster: tuple[Node, ...], base_settings: Settings) -> Iterator[str]:
    """A quorum queue of this test's own, declared through the first node, deleted afterwards
    through whichever node then runs."""
    name = f"test-quorum-{uuid.uuid4().hex[:8]}"
    with channel_on(cluster[0], base_settings) as channel:
        channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name
    survivor = rmq_cluster.running_nodes(cluster[-1])[0]
    with channel_on(survivor, base_settings) as channel:
        channel.queue_delete(name)


def test_the_three_nodes_form_one_cluster(cluster: tuple[Node, ...]) -> None:
    for asked in cluster:
        assert rmq_cluster.members(asked) == list(cluster), asked.name
        assert rmq_cluster.running_nodes(asked) == list(cluster), asked.name


def test_a_quorum_queue_has_a_leader_and_a_replica_on_every_node(
    cluster: tuple[Node, ...], quorum_queue: str
) -> None:
    info = rmq_cluster.queue_info(quorum_queue, cluster[1])
    assert info["type"] == "quorum"
    assert rmq_cluster.node(info["leader"]) in cluster
    assert sorted(map(rmq_cluster.node, info["members"]), key=cluster.index) == list(cluster)
    assert sorted(map(rmq_cluster.node, info["online"]), key=cluster.index) == list(cluster)


def test_killing_the_leader_loses_no_message_and_the_node_rejoins(
    cluster: tuple[Node, ...], quorum_queue: str, base_settings: Settings
) -> None:
    bodies = {f"message {i}".encode() for i in range(MESSAGES)}
    with channel_on(cluster[0], base_settings) as channel:
        # With confirms, each publish returns once a majority of the replicas has the message.
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish("", quorum_queue, body,
                                  pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))

    leader = rmq_cluster.leader_of(quorum_queue, cluster[0])
    survivor = next(node for node in cluster if node != leader)
    rmq_cluster.kill_node(leader)
    try:
        wait_for(lambda: leader not in rmq_cluster.running_nodes(survivor), ELECTION_TIMEOUT,
                 what="the cluster to notice the loss")

        def elected() -> Node | None:
            current = rmq_cluster.leader_of(quorum_queue, survivor)
            return current if current != leader else None

        new_leader = wait_for(elected, ELECTION_TIMEOUT, what=f"a new leader of {quorum_queue}")
        assert new_leader in cluster

        # A passive declare on a surviving node counts exactly, now; the management API lags.
        def counted() -> int:
            with channel_on(survivor, base_settings) as channel:
                return channel.queue_declare(quorum_queue, passive=True).method.message_count

        assert wait_for(counted, ELECTION_TIMEOUT, what=f"{quorum_queue} to answer") == MESSAGES
        with channel_on(survivor, base_settings) as channel:
            got = set()
            while (message := channel.basic_get(quorum_queue, auto_ack=True))[0] is not None:
                got.add(message[2])
        assert got == bodies
    finally:
        rmq_cluster.restart_node(leader)
    assert rmq_cluster.running_nodes(survivor) == list(cluster)
    # Its replica of the queue runs again and catches up from the leader's log.
    wait_for(lambda: leader.erlang_name in rmq_cluster.queue_info(quorum_queue, leader)["online"],
             ELECTION_TIMEOUT, what=f"{leader.name}'s replica of {quorum_queue}")


def test_a_node_whose_app_stops_drops_its_clients_and_stays_a_member(
    cluster: tuple[Node, ...], base_settings: Settings
) -> None:
    stopped, asked = cluster[-1], cluster[0]
    client = connect(stopped.url(base_settings.rmq_user, base_settings.rmq_password))
    [mine] = [c for c in rmq_cluster.connections(asked) if c.node == stopped]
    rmq_cluster.stop_app(stopped)
    try:
        assert mine not in rmq_cluster.connections(asked)
        assert rmq_cluster.running_nodes(asked) == list(cluster[:-1])
        assert rmq_cluster.members(asked) == list(cluster)
    finally:
        rmq_cluster.start_app(stopped)
        with contextlib.suppress(pika.exceptions.AMQPError):
            client.close()  # the node has closed it already
    assert rmq_cluster.running_nodes(asked) == list(cluster)
