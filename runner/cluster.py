"""The three-node cluster of ``rmq/cluster.sh`` as the tests use it: its nodes, who leads a queue,
and the ways a node can fail (SIGKILL of its Erlang VM, a clean ``stop_app``) and come back.

Every question goes to the nodes themselves through ``rabbitmqctl -n``, which answers at once,
unlike the management API, whose statistics lag by seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from common import topology
from common.settings import URL_SEPARATOR, Settings
from runner import proc
from runner.polling import wait_for
from runner.procfile import ROOT

log = logging.getLogger(__name__)

SCRIPT = ROOT / "rmq" / "cluster.sh"
# The host part of the node names: the short host name, as `hostname -s` gives it to the script.
HOST = socket.gethostname().split(".")[0]
# Joining, and booting a node on data it already has, takes up to half a minute on two cores.
NODE_TIMEOUT = 90.0


@dataclasses.dataclass(frozen=True)
class Node:
    name: str  # "rabbit-1", as the script names it
    amqp_port: int
    management_port: int

    @property
    def erlang_name(self) -> str:
        """The name the cluster knows it by: ``rabbit-1@<host>``."""
        return f"{self.name}@{HOST}"

    def url(self, user: str, password: str, vhost: str = "/") -> str:
        return (f"amqp://{quote(user, safe='')}:{quote(password, safe='')}"
                f"@localhost:{self.amqp_port}/{quote(vhost, safe='')}")


NODES = tuple(Node(f"rabbit-{n}", 5680 + n, 15680 + n) for n in (1, 2, 3))


def node(erlang_name: str) -> Node:
    """The node of a name that RabbitMQ reports (``rabbit-2@host``)."""
    [found] = [n for n in NODES if n.erlang_name == erlang_name]
    return found


def urls(user: str, password: str, vhost: str = "/") -> str:
    """All three nodes as one ``RMQ_URL``: Celery's failover list, separated by ``;``."""
    return URL_SEPARATOR.join(n.url(user, password, vhost) for n in NODES)


def on_cluster(base_settings: Settings) -> Settings:
    """The demo on all three nodes, with quorum queues, as the base settings' user."""
    user, password = base_settings.rmq_user, base_settings.rmq_password
    return dataclasses.replace(
        base_settings,
        rmq_url=urls(user, password),
        rmq_management_url=URL_SEPARATOR.join(
            f"http://localhost:{node.management_port}/" for node in NODES
        ),
        rmq_queue_type=topology.QUORUM,
    )


@contextlib.contextmanager
def scratch_vhost(user: str) -> Iterator[str]:
    """A new vhost on the cluster (quorum queues need a fresh one), deleted afterwards through a
    node that runs then."""
    vhost = f"cluster-test-{uuid.uuid4().hex[:8]}"
    ctl(NODES[0], "add_vhost", vhost)
    try:
        ctl(NODES[0], "set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield vhost
    finally:
        survivor = running_nodes(NODES[-1])[0]
        ctl(survivor, "delete_vhost", vhost)


def script(command: str, env: dict[str, str] | None = None) -> str:
    """Run ``rmq/cluster.sh start|stop|status``; its output, or an error carrying it."""
    result = subprocess.run(
        [str(SCRIPT), command], cwd=ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=300, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"rmq/cluster.sh {command}: {result.stdout}{result.stderr}")
    return result.stdout


def any_node_listening() -> bool:
    """Whether a node of the cluster already takes AMQP connections (after `make cluster`, say)."""
    for target in NODES:
        with contextlib.suppress(OSError), socket.create_connection(
            ("localhost", target.amqp_port), timeout=1
        ):
            return True
    return False


def ctl(target: Node, *args: str) -> str:
    """``rabbitmqctl -n <node>``; a node that does not answer raises, so ``wait_for`` polls on."""
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    result = subprocess.run(
        [*as_root, "rabbitmqctl", "-q", "-n", target.erlang_name, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl -n {target.erlang_name} {' '.join(args)}: "
                           f"{result.stdout}{result.stderr}")
    return result.stdout


def _cluster_status(asked: Node) -> dict[str, Any]:
    return json.loads(ctl(asked, "cluster_status", "--formatter", "json"))


def members(asked: Node = NODES[0]) -> list[Node]:
    """The nodes that belong to the cluster, running or not, as ``asked`` sees it."""
    return sorted(map(node, _cluster_status(asked)["disk_nodes"]), key=NODES.index)


def running_nodes(asked: Node = NODES[0]) -> list[Node]:
    """The members whose RabbitMQ application runs (a node after ``stop_app`` is not one)."""
    return sorted(map(node, _cluster_status(asked)["running_nodes"]), key=NODES.index)


def queue_info(queue: str, asked: Node = NODES[0], vhost: str = "/") -> dict[str, Any]:
    """Type, leader, members and online members of one queue, from the cluster's metadata."""
    rows = json.loads(ctl(asked, "list_queues", "-p", vhost, "name", "type", "leader", "members",
                          "online", "--formatter", "json"))
    [row] = [row for row in rows if row["name"] == queue]
    return row


def leader_of(queue: str, asked: Node = NODES[0], vhost: str = "/") -> Node:
    return node(queue_info(queue, asked, vhost)["leader"])


@dataclasses.dataclass(frozen=True)
class Connection:
    node: Node  # the node the client is connected to
    peer: str  # the client's address, "127.0.0.1:33750"
    client_name: str  # what the client calls its connection ("connection_name"), or ""


def connections(asked: Node = NODES[0]) -> list[Connection]:
    """Every client connection of the cluster and the node it is on: which node to stop so that
    a given client loses its broker."""
    rows = json.loads(ctl(asked, "list_connections", "name", "client_properties",
                          "--formatter", "json"))
    found = []
    for row in rows:
        # The name reads "127.0.0.1:33750 -> 127.0.0.1:5682": the client, then the node's port.
        peer, _, local = row["name"].partition(" -> ")
        [target] = [n for n in NODES if local.endswith(f":{n.amqp_port}")]
        properties = {key: value for key, _, value in row["client_properties"]}
        found.append(Connection(target, peer, properties.get("connection_name", "")))
    return found


def pid_of(target: Node) -> int:
    """The OS process id of the node's Erlang VM, as the VM itself reports it."""
    return int(ctl(target, "eval", "os:getpid().").strip().strip('"'))


def _process_gone(pid: int) -> bool:
    try:
        return proc.state(pid) == "Z"  # killed, only not yet reaped by its parent
    except FileNotFoundError:
        return True


def kill_node(target: Node) -> None:
    """SIGKILL the node's Erlang VM: no goodbye to its peers or clients, as in a power cut."""
    pid = pid_of(target)
    os.kill(pid, signal.SIGKILL)
    log.info("killed %s (pid %s)", target.erlang_name, pid)
    wait_for(lambda: _process_gone(pid), 10, what=f"{target.erlang_name} to exit")


def restart_node(target: Node) -> None:
    """Start a killed node again on its data; it rejoins the cluster by itself.

    The script's ``start`` starts whatever is down and waits until all three run again.
    """
    script("start")
    wait_for(lambda: target in running_nodes(target), NODE_TIMEOUT,
             what=f"{target.erlang_name} to rejoin")


def stop_app(target: Node) -> None:
    """Stop RabbitMQ on the node but keep its VM: clients are disconnected, the node stays known."""
    ctl(target, "stop_app")


def start_app(target: Node) -> None:
    ctl(target, "start_app")
    ctl(target, "await_startup", "--timeout", str(int(NODE_TIMEOUT)))
