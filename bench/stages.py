"""The bench's stages: each starts what it measures in a vhost of its own and stops it again.

A stage returns plain data (for ``latest.json``). Processes and vhosts are cleaned up in
``finally`` blocks, so a failure or Ctrl-C in the middle leaves nothing running on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import redis
import requests

from api.redis_store import RedisTaskStore
from bench import raw, wrk
from bench.report import ideal_rate
from common import routes, topology
from common.settings import LOCAL_REDIS_STORE, MAX_RATE, TEXT_LOGS, Settings
from common.statuses import TaskStatus
from common.tasks import Method
from runner import proc
from runner.broker import purge, scratch_vhost
from runner.client import ApiClient
from runner.polling import wait_for
from runner.services import QUICK_START, Service, Services, demo_settings, free_port, service_env

log = logging.getLogger(__name__)

@dataclasses.dataclass
class Demo:
    settings: Settings
    services: Services
    api: ApiClient

    def start_workers(self, kind: str, count: int) -> list[Service]:
        return self.services.start_workers(kind, self.settings, count)


@dataclasses.dataclass
class Bench:
    """The run: the machine's broker, and every scratch vhost made so far (to check cleanup)."""

    base: Settings
    management: requests.Session
    vhosts: list[str] = dataclasses.field(default_factory=list)

    @contextlib.contextmanager
    def demo(self, **changes: Any) -> Iterator[Demo]:
        """A fresh api in a vhost of its own; ``changes`` replace some of its settings."""
        with tempfile.TemporaryDirectory() as state, \
                scratch_vhost(self.base, self.management) as vhost:
            self.vhosts.append(vhost)
            log.info("demo in vhost %s", vhost)
            settings = dataclasses.replace(demo_settings(self.base, vhost, Path(state)), **changes)
            services = Services(Path(state), extra_args=QUICK_START)
            try:
                yield Demo(settings, services, services.start_api(settings))
            finally:
                services.stop_all()


@contextlib.contextmanager
def bare_handler() -> Iterator[tuple[str, int]]:
    """The minimal aiohttp app (``bench/bare.py``) on a free port: its base URL and pid."""
    port = free_port()
    with tempfile.TemporaryDirectory() as logs:
        service = Service("bare", [sys.executable, "-m", "bench.bare", str(port)],
                          service_env({}), Path(logs))
        try:
            url = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                assert service.alive(), service.log()
                return requests.get(f"{url}{routes.HEALTHZ}", timeout=2).ok

            wait_for(ready, 20, what="the bare handler to listen")
            yield url, service.pid
        finally:
            service.stop()


def task_body(method: Method, timeout: float = 0, count: int = 1) -> dict[str, Any]:
    return {"method": method, "timeout": timeout, "count": count}


def is_final(task: dict[str, Any]) -> bool:
    return TaskStatus(task["status"]).is_final


def checked(result: wrk.LoadResult, what: str) -> dict[str, float]:
    """A load result as data; a run with errors (a 503, a refused connection) means nothing."""
    if result.errors:
        raise RuntimeError(f"{what}: {result.errors} of {result.requests} requests failed")
    log.info("%s: %.0f req/s, p50 %.1f ms, p99 %.1f ms",
             what, result.rate, result.p50_ms, result.p99_ms)
    return {"rate": result.rate, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms}


def load(url: str, body: str, pids: Sequence[int], what: str, connections: int, seconds: float,
         store_pid: int | None = None,
         headers: dict[str, str] | None = None) -> dict[str, float]:
    """wrk against ``url``, and the CPU that the server's processes ``pids`` spent per request
    meanwhile: the figure neighbours on a shared machine disturb least. With ``store_pid``, the
    task store's (Redis's) CPU per request too."""

    def cpu(of: Sequence[int]) -> float:
        return sum(proc.cpu_seconds(pid) for pid in of)

    before, store_before = cpu(pids), cpu([store_pid] if store_pid else [])
    result = wrk.run(url, body, connections=connections, seconds=seconds, headers=headers)
    figures = checked(result, what)
    figures["cpu_ms"] = (cpu(pids) - before) / result.requests * 1000
    log.info("%s: %.3f ms CPU per request", what, figures["cpu_ms"])
    if store_pid:
        figures["store_cpu_ms"] = (cpu([store_pid]) - store_before) / result.requests * 1000
        log.info("%s: %.3f ms of Redis's CPU per request", what, figures["store_cpu_ms"])
    return figures


def accept(bench: Bench, connections: int, seconds: float) -> dict[str, Any]:
    """``POST /api/tasks`` with one zero-work task per request, beside a bare aiohttp handler and
    beside publishing alone. No workers run: the stage measures accepting, nothing else."""
    figures = {}
    with bare_handler() as (url, pid):
        figures["bare"] = load(f"{url}{routes.TASKS}", json.dumps(task_body(Method.RMQ)), [pid],
                               "bare handler", connections, seconds)
    # Unfinished tasks are never dropped: room for all of them, or the store would answer 503.
    with bench.demo(task_store_limit=10_000_000) as demo:
        published = asyncio.run(raw.publish_alone(
            demo.settings.rmq_url, count=int(2500 * seconds), in_flight=connections
        ))
        figures["publish"] = dataclasses.asdict(published)
        log.info("publishing alone: %.0f msg/s, p50 %.1f ms, p99 %.1f ms",
                 published.rate, published.p50_ms, published.p99_ms)
        for method in Method:
            figures[method] = load(demo.api.url(routes.TASKS), json.dumps(task_body(method)),
                                   [demo.api.service.pid], f"accept {method}", connections, seconds)
    return figures


def stores(bench: Bench, connections: int, seconds: float) -> dict[str, dict[str, float]]:
    """The accept path with the tasks in Redis (TASK_STORE): one API process, then two sharing
    the port. With the memory store it is the accept stage's ``rmq``."""
    figures = {}
    body = json.dumps(task_body(Method.RMQ))
    with redis.Redis.from_url(LOCAL_REDIS_STORE) as client:
        redis_pid = int(client.info("server")["process_id"])
    with bench.demo(task_store=LOCAL_REDIS_STORE, task_store_limit=10_000_000) as demo:
        try:
            url, first = demo.api.url(routes.TASKS), demo.api.service.pid
            figures["one"] = load(url, body, [first], "accept rmq, redis store, 1 api",
                                  connections, seconds, store_pid=redis_pid)
            # The same port (reuse_port): the kernel spreads the connections over both.
            second = demo.services.start_api(demo.settings).service.pid
            figures["two"] = load(url, body, [first, second], "accept rmq, redis store, 2 apis",
                                  connections, seconds, store_pid=redis_pid)
        finally:
            asyncio.run(_clear(RedisTaskStore(demo.settings)))
    return figures


def secure_mode(bench: Bench, connections: int, seconds: float) -> dict[str, dict[str, float]]:
    """The accept path with the production checklist on (SECURE=1): TLS to the broker of
    rmq/secure-node.sh, the API token on every request, the rate limit counted (set far above
    the load, so that nothing is refused) and JSON log lines; then, for rmq, TLS alone and the
    guards alone (token, limit, JSON lines on the plain broker), to tell which costs what. The
    accept stage, earlier in the same run, is the same path with all of it off."""
    # Here, not at the top: the node and its files exist on this machine only, and the Docker
    # image, which leaves rmq/ out, still runs `python -m bench --help`.
    import secure

    secure.ensure(secure.SECURE_DIR)
    was_running = secure.node_running()
    secure.start_node(secure.SECURE_DIR)
    full = dataclasses.replace(
        Settings.from_env(secure.read_env(secure.SECURE_DIR / "secure.env")),
        task_store_limit=10_000_000, rate_limit=f"{MAX_RATE}/second",
    )
    guards = {name: getattr(full, name) for name in ("api_token", "rate_limit", "log_format")}
    bearer = {"Authorization": f"Bearer {full.api_token}"}
    figures = {}
    try:
        with _api_on_a_free_port(full) as api:
            for method in Method:
                figures[method] = load(api.url(routes.TASKS), json.dumps(task_body(method)),
                                       [api.service.pid], f"accept {method}, secure mode",
                                       connections, seconds, headers=bearer)
        tls_only = dataclasses.replace(full, secure=False, api_token="", rate_limit="",
                                       log_format=TEXT_LOGS)
        with _api_on_a_free_port(tls_only) as api:
            figures["tls_only"] = load(api.url(routes.TASKS), json.dumps(task_body(Method.RMQ)),
                                       [api.service.pid], "accept rmq, TLS alone",
                                       connections, seconds)
    finally:
        # No worker ran: the tasks accepted wait in the node's queues.
        purge(full.rmq_url, topology.QUEUE, topology.CELERY_QUEUE, ca_file=full.rmq_ca_file)
        if not was_running:
            secure.stop_node()
    with bench.demo(task_store_limit=10_000_000, **guards) as demo:
        figures["guards_only"] = load(demo.api.url(routes.TASKS),
                                      json.dumps(task_body(Method.RMQ)), [demo.api.service.pid],
                                      "accept rmq, token, limit and JSON lines alone",
                                      connections, seconds, headers=bearer)
    return figures


@contextlib.contextmanager
def _api_on_a_free_port(settings: Settings) -> Iterator[ApiClient]:
    """An api with ``settings`` on a port of its own, with a task counter of its own."""
    with tempfile.TemporaryDirectory() as state:
        port = free_port()
        own = dataclasses.replace(
            settings, api_host="127.0.0.1", api_port=port,
            callback_url=f"http://127.0.0.1:{port}{routes.CALLBACK}",
            task_counter_path=str(Path(state) / "task_counter"),
        )
        services = Services(Path(state), extra_args=QUICK_START)
        try:
            yield services.start_api(own)
        finally:
            services.stop_all()


async def _clear(store: RedisTaskStore) -> None:
    await store.clear()
    await store.close()


async def send_tasks(base_url: str, method: Method, timeout: float, total: int, batch: int,
                     in_flight: int = 8) -> list[int]:
    """``total`` tasks in requests of ``batch``, ``in_flight`` requests at a time; their numbers."""
    slots = asyncio.Semaphore(in_flight)
    numbers: list[int] = []

    async def one(session: aiohttp.ClientSession, count: int) -> None:
        async with slots, session.post(f"{base_url}{routes.TASKS}",
                                       json=task_body(method, timeout, count)) as response:
            assert response.status == 202, await response.text()
            numbers.extend(task["task_num"] for task in (await response.json())["tasks"])

    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
        for start in range(0, total, batch):
            group.create_task(one(session, min(batch, total - start)))
    return sorted(numbers)


def wait_finished(api: ApiClient, numbers: list[int], timeout: float) -> list[dict]:
    """Wait until every task is DONE or ERROR; return them all.

    While waiting it asks about one task at a time, the oldest not yet seen finished, so that
    the polling costs the API next to nothing; then it reads every task once.
    """
    # Tasks finish roughly in the order they were sent: step over each finished one.
    step = max(1, len(numbers) // 50)
    watched = [*numbers[step - 1::step], numbers[-1]]

    def all_finished() -> list[dict] | None:
        while watched and is_final(api.task(watched[0])):
            watched.pop(0)
        if watched:
            return None
        tasks = [api.task(number) for number in numbers]
        # One of the steps' neighbours still running: watch those too.
        watched.extend(task["task_num"] for task in tasks if not is_final(task))
        return None if watched else tasks

    return wait_for(all_finished, timeout, interval=0.1, what=f"{len(numbers)} tasks to finish")


def completion_rate(tasks: list[dict]) -> float:
    """Tasks per second from the first accepted to the last finished, by the API's own clock."""
    first = min(task["created_at"] for task in tasks)
    last = max(task["finished_at"] for task in tasks)
    return len(tasks) / (last - first)


def run_tasks(demo: Demo, method: Method, timeout: float, total: int, batch: int,
              wait: float) -> float:
    """Send ``total`` tasks and wait for them all; their completion rate."""
    numbers = asyncio.run(send_tasks(demo.api.base_url, method, timeout, total, batch))
    return completion_rate(wait_finished(demo.api, numbers, wait))


def end_to_end(bench: Bench, tasks: int, in_flight: int) -> dict[str, float]:
    """Zero-work tasks through one consumer and one Celery worker, beside the broker alone."""
    figures = {}
    with bench.demo() as demo:
        figures["raw"] = asyncio.run(raw.round_trip(demo.settings.rmq_url, tasks, in_flight))
        log.info("broker round trip without the API: %.0f msg/s", figures["raw"])
        demo.start_workers("consumer", 1)
        figures[Method.RMQ] = run_tasks(demo, Method.RMQ, 0, tasks, batch=100, wait=300)
        log.info("end to end rmq, 1 consumer: %.0f tasks/s", figures[Method.RMQ])
    with bench.demo() as demo:
        demo.start_workers("celery_worker", 1)
        figures[Method.CELERY] = run_tasks(demo, Method.CELERY, 0, tasks, batch=100, wait=300)
        log.info("end to end celery, 1 worker: %.0f tasks/s", figures[Method.CELERY])
    return figures


def scaling(bench: Bench, rounds: int, counts: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """One-second tasks through 1, 2, 4 workers: ``rounds`` tasks for every slot, so that the
    last, partly filled round is a small part of the whole."""
    figures: dict[str, dict[str, float]] = {}
    for method, kind in ((Method.RMQ, "consumer"), (Method.CELERY, "celery_worker")):
        figures[method] = {}
        with bench.demo() as demo:
            running = 0
            for workers in counts:
                demo.start_workers(kind, workers - running)
                running = workers
                total = int(ideal_rate(workers) * rounds)
                rate = run_tasks(demo, method, 1, total, batch=total, wait=rounds * 10 + 60)
                figures[method][str(workers)] = rate
                log.info("scaling %s, %s workers: %.2f tasks/s (ideal %g)",
                         method, workers, rate, ideal_rate(workers))
    return figures


async def worst_healthz(base_url: str, blocking: bool) -> float:
    """The slowest ``/healthz`` answer (ms) while a 7-second long request is being served."""
    latencies = []
    async with aiohttp.ClientSession() as session:
        long_url = f"{base_url}{routes.SYNC_LONG_DATA}?data_id=12&blocking={int(blocking)}"
        long_request = asyncio.create_task(session.get(long_url))
        while not long_request.done():
            started = time.perf_counter()
            async with session.get(f"{base_url}{routes.HEALTHZ}") as response:
                assert response.status == 200
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
        (await long_request).release()
    return max(latencies)


def healthz(bench: Bench) -> dict[str, float]:
    """The blocking lesson in figures: ``time.sleep`` stalls everybody, ``asyncio.sleep`` nobody."""
    with bench.demo() as demo:
        figures = {
            "asyncio": asyncio.run(worst_healthz(demo.api.base_url, blocking=False)),
            "blocking": asyncio.run(worst_healthz(demo.api.base_url, blocking=True)),
        }
    log.info("/healthz worst: %.0f ms during asyncio.sleep, %.0f ms during time.sleep",
             figures["asyncio"], figures["blocking"])
    return figures


def memory(bench: Bench, total: int, batch: int) -> dict[str, float]:
    """The API's memory after ``total`` accepted tasks: the store keeps at most its limit.

    No worker runs, so every task stays PENDING and the store fills; each time it is full, the
    teacher's reset (purging test_direct) forgets the waiting tasks and makes room again.
    """
    with bench.demo() as demo:
        limit = demo.settings.task_store_limit
        pid = demo.api.service.pid
        figures = {"store_limit": limit, "accepted": total, "started_mib": proc.memory_mib(pid)}
        purge_url = demo.api.url(routes.PURGE_QUEUE.format(queue=topology.QUEUE))
        sent = 0
        while sent < total:
            fill = min(limit, total - sent)
            asyncio.run(send_tasks(demo.api.base_url, Method.RMQ, 0, fill, batch, in_flight=4))
            sent += fill
            if sent == limit:
                figures["full_mib"] = proc.memory_mib(pid)
            if sent < total:
                demo.api.session.post(purge_url, timeout=30).raise_for_status()
        figures["after_mib"] = proc.memory_mib(pid)
    log.info("api memory: %.0f MiB at start, %.0f MiB with the store full, %.0f MiB after %s"
             " tasks", figures["started_mib"], figures.get("full_mib", 0), figures["after_mib"],
             total)
    return figures
