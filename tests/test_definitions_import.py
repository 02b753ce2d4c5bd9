"""rmq/definitions*.json, imported into the real broker, match what the services declare.

Each committed document (classic queues, and the cluster's quorum queues) is imported with
``rabbitmqctl import_definitions`` (the code path of the boot-time import) into a scratch vhost,
under a scratch user that keeps the committed password hash. Then clients declare the topology of ``common.topology`` there: a mismatch in any argument
would close their channel with PRECONDITION_FAILED.

``rabbitmqctl`` must be allowed to talk to the local node: as root, or through ``sudo -n`` as
``rmq/start-native.sh`` does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import pika.exceptions
import pytest
import requests

from common import topology
from common.settings import Settings
from consumer.consumer import declare_topology
from rmq.definitions import PATHS
from runner.broker import management_url, rabbitmqctl
from runner.polling import wait_for
from runner.services import demo_settings

# The committed hash is of the course's default password, whatever RMQ_URL says on this machine.
COURSE_PASSWORD = Settings().rmq_password
PRECONDITION_FAILED = 406


@dataclasses.dataclass(frozen=True)
class ScratchBroker:
    """Where the imported definitions live; ``settings`` points any client or service there."""

    vhost: str
    user: str
    settings: Settings

    @property
    def queues(self) -> tuple[topology.Queue, ...]:
        return topology.queues(self.settings.rmq_queue_type)


def with_credentials(rmq_url: str, user: str, password: str, vhost: str) -> str:
    parts = urlsplit(rmq_url)
    host = parts.hostname or "localhost"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + quote(vhost, safe="")))


def moved_to(document: dict[str, Any], vhost: str, user: str) -> dict[str, Any]:
    """The same definitions for another vhost and user name; hash and topology unchanged."""
    moved = copy.deepcopy(document)
    moved["vhosts"] = [{"name": vhost}]
    for entry in moved["users"]:
        entry["name"] = user
    for entry in moved["permissions"]:
        entry.update(user=user, vhost=vhost)
    for section in ("exchanges", "queues", "bindings"):
        for entry in moved[section]:
            entry["vhost"] = vhost
    return moved


class Broker:
    """The management HTTP API of the machine's broker, as the suite's administrator."""

    def __init__(self, session: requests.Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    def get(self, path: str) -> Any:
        response = self.session.get(management_url(self.settings, path), timeout=10)
        response.raise_for_status()
        return response.json()

    def put(self, path: str, body: Any) -> None:
        response = self.session.put(management_url(self.settings, path), json=body, timeout=10)
        response.raise_for_status()

    def delete(self, path: str) -> None:
        response = self.session.delete(management_url(self.settings, path), timeout=30)
        if response.status_code != 404:
            response.raise_for_status()

    def bindings(self, vhost: str) -> set[tuple[str, str, str]]:
        return {
            (binding["source"], binding["destination"], binding["routing_key"])
            for binding in self.get(f"bindings/{quote(vhost, safe='')}")
            if binding["source"]  # the default exchange binds every queue implicitly
        }

    def import_definitions(self, document: dict[str, Any]) -> None:
        # rabbitmqctl reads the file as the rabbitmq user: a world-readable file in a traversable
        # directory, not pytest's private tmp_path.
        with tempfile.TemporaryDirectory(prefix="definitions-") as directory:
            os.chmod(directory, 0o755)
            path = Path(directory) / "definitions.json"
            path.write_text(json.dumps(document), encoding="utf-8")
            path.chmod(0o644)
            rabbitmqctl("import_definitions", str(path))
            # The import goes on in the background after rabbitmqctl returns (3.10), so the file
            # must outlive it: wait here, before the directory goes. Bindings are imported last.
            vhost = document["vhosts"][0]["name"]
            wait_for(
                lambda: len(self.bindings(vhost)) == len(document["bindings"]),
                30,
                what="the import of the definitions",
            )


@pytest.fixture(scope="module")
def broker(management: requests.Session, base_settings: Settings) -> Broker:
    return Broker(management, base_settings)


# Quorum queues work on a single node too (replicated to nobody): the cluster's document and
# the services in quorum mode are checked here on the machine's own broker.
@pytest.fixture(scope="module", params=list(PATHS))
def scratch(
    request: pytest.FixtureRequest, broker: Broker, base_settings: Settings
) -> Iterator[ScratchBroker]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed: no local broker to import into")
    queue_type = request.param
    suffix = uuid.uuid4().hex[:8]
    vhost, user = f"deploy-test-{suffix}", f"deploy-test-{suffix}"
    broker.put(f"vhosts/{quote(vhost, safe='')}", {})
    try:
        document = json.loads(PATHS[queue_type].read_text(encoding="utf-8"))
        broker.import_definitions(moved_to(document, vhost, user))
        rmq_url = with_credentials(base_settings.rmq_url, user, COURSE_PASSWORD, vhost)
        settings = dataclasses.replace(
            base_settings, rmq_url=rmq_url, rmq_queue_type=queue_type
        )
        yield ScratchBroker(vhost, user, settings)
    finally:
        broker.delete(f"vhosts/{quote(vhost, safe='')}")
        broker.delete(f"users/{quote(user, safe='')}")


def connect(url: str) -> pika.BlockingConnection:
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    return pika.BlockingConnection(parameters)


def test_broker_holds_the_topology_of_common(broker: Broker, scratch: ScratchBroker) -> None:
    vhost = quote(scratch.vhost, safe="")
    exchanges = {
        exchange["name"]: exchange
        for exchange in broker.get(f"exchanges/{vhost}")
        if exchange["name"] and not exchange["name"].startswith("amq.")
    }
    queues = {queue["name"]: queue for queue in broker.get(f"queues/{vhost}")}

    assert set(exchanges) == {exchange.name for exchange in topology.EXCHANGES}
    for exchange in topology.EXCHANGES:
        assert exchanges[exchange.name]["type"] == exchange.type
        assert exchanges[exchange.name]["durable"] == exchange.durable
    assert set(queues) == {queue.name for queue in scratch.queues}
    for queue in scratch.queues:
        assert queues[queue.name]["durable"] == queue.durable
        assert queues[queue.name]["arguments"] == queue.arguments
    assert broker.bindings(scratch.vhost) == {
        (binding.exchange, binding.queue, binding.routing_key) for binding in topology.BINDINGS
    }


def test_course_password_logs_in_with_the_committed_hash(scratch: ScratchBroker) -> None:
    connection = connect(scratch.settings.rmq_url)
    try:
        assert connection.is_open
    finally:
        connection.close()
    url = scratch.settings.rmq_url
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(with_credentials(url, scratch.user, "not-the-password", scratch.vhost))


def test_clients_declare_the_imported_topology_without_precondition_failed(
    scratch: ScratchBroker,
) -> None:
    connection = connect(scratch.settings.rmq_url)
    try:
        declare_topology(connection.channel(), scratch.settings.rmq_queue_type)
        # The check has teeth: the same queue declared with other arguments is refused.
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.queue_declare(queue=topology.QUEUE, durable=True, arguments={})
        assert refused.value.reply_code == PRECONDITION_FAILED
    finally:
        connection.close()


def test_services_start_and_serve_on_the_imported_definitions(
    scratch: ScratchBroker, own_services, tmp_path: Path
) -> None:
    """The api (aio-pika), the consumer (pika) and a Celery worker declare on top of the
    imported topology, and serve."""
    settings = demo_settings(scratch.settings, scratch.vhost, tmp_path)
    api = own_services.start_api(settings)
    [consumer] = own_services.start_workers("consumer", settings)
    [celery_worker] = own_services.start_workers("celery_worker", settings)
    tasks = [*api.send("rmq", timeout=0), *api.send("celery", timeout=0)]
    finished = api.wait_final([task["task_num"] for task in tasks])
    assert [task["status"] for task in finished] == ["DONE", "DONE"]
    for log in (api.service.log(), consumer.log(), celery_worker.log()):
        assert "PRECONDITION_FAILED" not in log


@pytest.mark.parametrize("scratch", [topology.QUORUM], indirect=True)
def test_celery_retries_wait_in_the_broker_with_quorum_queues(
    scratch: ScratchBroker, own_services, tmp_path: Path
) -> None:
    """Quorum mode: a countdown retry waits in the broker (Celery's native delayed delivery,
    through topic exchanges), not in a worker's memory, and comes back to run again."""
    settings = demo_settings(scratch.settings, scratch.vhost, tmp_path)
    api = own_services.start_api(settings)
    [celery_worker] = own_services.start_workers("celery_worker", settings)
    [task] = api.send("celery", timeout=0, fail=True)
    # The second try, 2 s after the first: the retry went through the broker and back. (The
    # third and fourth would take the same way, 4 and 8 s later.)
    wait_for(lambda: api.task(task["task_num"])["attempts"] >= 2, 20,
             what="the first retry to come back from the broker")
    assert "Direct exchanges are not supported" not in celery_worker.log()


@pytest.mark.parametrize("scratch", [topology.QUORUM], indirect=True)
def test_quorum_queue_dead_letters_a_message_delivered_too_often(scratch: ScratchBroker) -> None:
    """x-delivery-limit: a message requeued again and again (its consumers keep dying) ends in
    the dead letters instead of looping forever. A classic queue does not count deliveries."""
    connection = connect(scratch.settings.rmq_url)
    try:
        channel = connection.channel()
        channel.basic_publish(topology.EXCHANGE, "", b"poison")
        deliveries = []

        def deliver_and_requeue() -> bool:
            """One more delivery given back, as by a consumer that died; True once dead."""
            dead = channel.queue_declare(topology.DEAD_LETTER_QUEUE, passive=True).method
            if dead.message_count:
                return True
            method, _, _ = channel.basic_get(topology.QUEUE)
            if method is not None:
                deliveries.append(method.delivery_tag)
                channel.basic_nack(method.delivery_tag, requeue=True)
            return False

        wait_for(deliver_and_requeue, 10, interval=0.05, what="the message to be dead-lettered")
        # The first delivery and DELIVERY_LIMIT redeliveries; the next would be one too many.
        assert len(deliveries) == topology.DELIVERY_LIMIT + 1
        method, properties, body = channel.basic_get(topology.DEAD_LETTER_QUEUE, auto_ack=True)
        assert body == b"poison"
        assert properties.headers["x-death"][0]["reason"] == "delivery_limit"
    finally:
        connection.close()
