"""The demo a chaos run hits: ``make dev`` from code, with two processes of each service, in a
vhost of its own, its tasks and Celery's results in a Redis of its own; all removed afterwards."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import requests

from chaos.schedule import COPIES
from common import routes, topology
from common.settings import URL_SEPARATOR, Settings, split_urls
from runner import cluster as rmq_cluster
from runner.broker import queue_state, scratch_vhost
from runner.client import ApiClient
from runner.polling import wait_for
from runner.redis_server import RedisServer
from runner.services import demo_settings
from runner.supervisor import Supervised

log = logging.getLogger(__name__)

# Two of each, so that a fault on one leaves the other serving (schedule.COPIES).
SCALE = {name: COPIES for name in ("api", "consumer", "celery_worker")}
# Not under test: Beat would order tasks of its own, and Flower watches. Two cores are few.
IDLE = ("celery_beat", "flower")
READY_WITHIN = 120.0  # seconds: six services starting at once on two cores


@dataclasses.dataclass
class Stand:
    settings: Settings
    demo: Supervised
    redis: RedisServer
    api: ApiClient

    def programs(self) -> list[str]:
        """Every process under test, as supervisor names them: ``consumer:consumer-1``."""
        return [f"{name}:{name}-{n}" for name, count in SCALE.items() for n in range(count)]

    def running(self) -> set[str]:
        """The programs supervisor reports RUNNING."""
        lines = self.demo.ctl("status").stdout.splitlines()
        return {line.split()[0] for line in lines if line.split()[1:2] == ["RUNNING"]}

    def connected(self) -> bool:
        """Every API process answers that it has the broker (the port's owner changes with each
        new connection, so a few answers in a row)."""
        return all(
            requests.get(self.api.url(routes.HEALTHZ), timeout=2).json()["broker"] == "connected"
            for _ in range(4)
        )

    def consuming(self) -> bool:
        """Both queues have both of their workers."""
        return all(queue_state(self.settings.rmq_url, queue)[1] >= SCALE[kind]
                   for queue, kind in ((topology.QUEUE, "consumer"),
                                       (topology.CELERY_QUEUE, "celery_worker")))

    def ready(self) -> bool:
        return set(self.programs()) <= self.running() and self.connected() and self.consuming()


def with_heartbeat(rmq_url: str, seconds: int) -> str:
    """Each node's URL asking for a heartbeat of ``seconds`` (pika, aio-pika and kombu read it)."""
    return URL_SEPARATOR.join(f"{url}?heartbeat={seconds}" for url in split_urls(rmq_url))


@contextlib.contextmanager
def _broker(base: Settings, management: requests.Session, cluster: bool
            ) -> Iterator[tuple[Settings, str]]:
    """The broker's settings and a vhost of the run's own: the native node, or the cluster
    (started for the run unless it runs already, and then left running)."""
    if not cluster:
        with scratch_vhost(base, management) as vhost:
            yield base, vhost
        return
    started_here = not rmq_cluster.any_node_listening()
    rmq_cluster.script("start", env={"RMQ_USER": base.rmq_user, "RMQ_PASSWORD": base.rmq_password})
    try:
        with rmq_cluster.scratch_vhost(base.rmq_user) as vhost:
            yield rmq_cluster.on_cluster(base), vhost
    finally:
        if started_here:
            rmq_cluster.script("stop")


@contextlib.contextmanager
def stand(base: Settings, management: requests.Session, state_dir: Path, cluster: bool,
          heartbeat: int) -> Iterator[Stand]:
    """The demo, ready: every process running, connected and consuming."""
    redis_dir = state_dir / "redis"
    redis_dir.mkdir(parents=True)
    redis = RedisServer(redis_dir)
    redis.start()
    try:
        with _broker(base, management, cluster) as (broker, vhost):
            settings = demo_settings(broker, vhost, state_dir)
            settings = dataclasses.replace(
                settings, rmq_url=with_heartbeat(settings.rmq_url, heartbeat),
                task_store=redis.url, result_backend=redis.url,
                # Every task of the run stays in the store until the ledger has read it.
                task_store_limit=10_000_000,
            )
            log.info("demo in vhost %s, api on :%s, redis on :%s, logs in %s",
                     vhost, settings.api_port, redis.port, state_dir / "make-dev.log")
            demo = Supervised(settings, state_dir, SCALE)
            try:
                demo.ctl("stop", *IDLE)
                api = ApiClient(f"http://127.0.0.1:{settings.api_port}")
                found = Stand(settings, demo, redis, api)
                wait_for(found.ready, READY_WITHIN, interval=1.0,
                         what="every service to run, connect and consume")
                yield found
            finally:
                demo.stop()
    finally:
        redis.stop()
